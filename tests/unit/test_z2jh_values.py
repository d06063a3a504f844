"""deploy/z2jh: the values validate against the Zero to JupyterHub chart's own schema, and the image and values use
what labkit reads (the extension, the environment, the notebooks' folder)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from labkit import versions
from labkit.course import hub

DEPLOY = Path(__file__).parents[2] / "deploy" / "z2jh"
CHART_ENV = "LABKIT_Z2JH_CHART"
# Where `helm repo add jupyterhub ...` points; `helm pull jupyterhub/jupyterhub --version V` gets this file.
CHART_URL = "https://hub.jupyter.org/helm-chart/jupyterhub-{version}.tgz"


def _chart_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the chart's values.yaml, its values.schema.json) from LABKIT_Z2JH_CHART (the chart's folder or a checkout
    of its repository) or the packaged chart from its repository."""
    folder = os.environ.get(CHART_ENV)
    if folder:
        root = Path(folder)
        root = root / "jupyterhub" if (root / "jupyterhub" / "values.yaml").is_file() else root
        values = yaml.safe_load((root / "values.yaml").read_text())
        json_schema = root / "values.schema.json"
        # A checkout has the schema as YAML; the packaged chart, as JSON (the same document, descriptions dropped).
        schema = json.loads(json_schema.read_text()) if json_schema.is_file() else \
            yaml.safe_load((root / "values.schema.yaml").read_text())
        return values, schema
    url = CHART_URL.format(version=versions.Z2JH_CHART)
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:  # noqa: S310 - a fixed https URL
            packed = answer.read()
    except OSError as exc:
        pytest.skip(f"the Zero to JupyterHub chart {versions.Z2JH_CHART} cannot be had here ({url}: {exc}; no "
                    f"package registry serves it): set {CHART_ENV} to its folder "
                    f"(`helm pull jupyterhub/jupyterhub --version {versions.Z2JH_CHART} --untar`)")
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        read = lambda name: tar.extractfile(f"jupyterhub/{name}").read()  # noqa: E731
        return yaml.safe_load(read("values.yaml")), json.loads(read("values.schema.json"))


def _merge(base: Any, override: Any) -> Any:
    """Helm's merge of a values file over the chart's defaults: maps merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: _merge(base.get(k), override[k]) if k in override else base[k] for k in {*base, *override}}
    return override


def test_the_values_validate_against_the_charts_schema() -> None:
    defaults, schema = _chart_files()
    ours = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    merged = _merge(defaults, ours)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
    # The schema is strict (additionalProperties: false almost everywhere): a misspelt key would have failed above.
    assert schema.get("additionalProperties") is False


def test_the_image_and_values_use_what_labkit_reads() -> None:
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    single = values["singleuser"]
    assert "jupyter server extension enable --sys-prefix labkit.course.jupyter" in dockerfile
    assert single["defaultUrl"].endswith(hub.NOTEBOOKS_FOLDER)
    assert hub.NOTEBOOKS_FOLDER in json.dumps(single["lifecycleHooks"])
    assert single["extraEnv"]["LABKIT_SHARED_CACHE"] in dockerfile
    assert set(hub.lab_environment()) <= set(single["extraEnv"])
    context = values["hub"]["config"]["KubeSpawner"]["container_security_context"]
    assert context["runAsNonRoot"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"] and single["extraPodConfig"]["hostUsers"] is False
    assert values["cull"]["enabled"] and values["cull"]["timeout"] == hub.IDLE_TIMEOUT_S
