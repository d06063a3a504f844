"""The project's files agree with each other: environment.yml vs pyproject, kind-config vs kind's schema."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from labkit.cluster import kind_backend, kwok_backend
from labkit.paths import data_file

ROOT = Path(__file__).resolve().parents[2]
# conda-forge spells a few packages differently from PyPI.
CONDA_NAMES = {"kubernetes": "python-kubernetes", "kaleido": "python-kaleido"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].strip().lower()


def test_environment_yml_has_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    missing = {w for w in wanted if CONDA_NAMES.get(w, w) not in conda}
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert "python>=3.11" in env["dependencies"]
    # conda brings the dependencies; pip then installs labkit itself from the checkout.
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip


def test_build_system_is_what_pip_fetches_for_an_editable_install() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    setuptools = next(r for r in build["requires"] if _name(r) == "setuptools")
    # Editable installs through pyproject.toml alone (PEP 660) need setuptools 64 or newer.
    floor = re.search(r">=\s*(\d+)", setuptools)
    assert floor and int(floor.group(1)) >= 64, setuptools


def test_python_dash_m_labkit_runs_the_cli(tmp_path: Path) -> None:
    """The Makefile runs `$(PYTHON) -m labkit`: the CLI of that very Python, not a `labkit` found on PATH."""
    proc = subprocess.run([sys.executable, "-m", "labkit", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: labkit") and "doctor" in proc.stdout


# kind's v1alpha4 Cluster fields (sigs.k8s.io/kind/pkg/apis/config/v1alpha4/types.go).
KIND_CLUSTER_FIELDS = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                       "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
                       "containerdConfigPatchesJSON6902"}
KIND_NODE_FIELDS = {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches",
                    "kubeadmConfigPatchesJSON6902"}
KIND_NETWORKING_FIELDS = {"ipFamily", "apiServerPort", "apiServerAddress", "podSubnet", "serviceSubnet",
                          "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}


def test_kind_config_matches_v1alpha4_schema() -> None:
    cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(cfg) <= KIND_CLUSTER_FIELDS
    assert set(cfg["networking"]) <= KIND_NETWORKING_FIELDS
    assert cfg["networking"]["apiServerAddress"] == "127.0.0.1"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    for node in cfg["nodes"]:
        assert set(node) <= KIND_NODE_FIELDS


def test_kind_commands_are_what_labkit_runs() -> None:
    cmd = kind_backend.create_command(ROOT / "kind-config.yaml")
    assert cmd[:5] == ["kind", "create", "cluster", "--name", "labkit"]
    assert cmd[cmd.index("--config") + 1].endswith("kind-config.yaml")
    assert "--kubeconfig" in cmd  # never touches the learner's ~/.kube/config
    label, patch = kind_backend.gpu_patch_commands()
    assert "labkit-worker2" in label and "nvidia.com/gpu.present=true" in label
    assert "--subresource=status" in patch and '"nvidia.com/gpu": "2"' in patch[-1]


def test_kwokctl_config_binds_loopback_and_uses_local_binaries(tmp_path: Path) -> None:
    paths = {b: tmp_path / b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                                       "etcd", "kwok", "metrics-server")}
    opts = kwok_backend.kwokctl_config(paths)["options"]
    assert opts["bindAddress"] == "127.0.0.1"
    assert opts["runtime"] == "binary"
    for key in ("kubeApiserverBinary", "etcdBinary", "kwokControllerBinary", "metricsServerBinary"):
        assert Path(opts[key]).parent == tmp_path, key
        assert not opts[key].startswith("file://")  # kwokctl does not accept file:// URLs
    assert all(not str(m).startswith("http") for m in opts["metricsServerManifests"])
    assert (data_file("metrics-server") / "kustomization.yaml").exists()


def test_versions_pinned_in_one_place() -> None:
    from labkit import versions

    assert versions.KUBERNETES.startswith("v1.36.")
    assert versions.KUBERNETES_STAGING == "v0." + versions.KUBERNETES[3:]
    assert versions.ETCD.startswith("v3.6.") and versions.KWOK.startswith("v0.8.")
    pinned = re.compile(r'"v\d+\.\d+\.\d+"')
    for path in (ROOT / "labkit").rglob("*.py"):
        if path.name != "versions.py" and "gpu" not in path.parts:
            assert not pinned.search(path.read_text()), f"{path} pins a version; use labkit.versions"


def test_test_files_have_unique_basenames() -> None:
    # pytest imports test modules by basename (no __init__.py in tests/): two with one name stop the whole run.
    names = [p.name for p in Path(__file__).resolve().parents[1].rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_no_file_in_the_repository_names_this_machines_folders() -> None:
    # Stored notebook outputs are where they creep in (a path printed by a cell): they would not exist elsewhere.
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    machine = [str(ROOT), str(Path.home()) + "/"]
    found = [(name, m) for name in tracked if (ROOT / name).is_file()
             for m in machine if m in (ROOT / name).read_text(errors="ignore")]
    assert found == []


def test_every_dependency_has_a_range_and_a_tested_version_inside_it() -> None:
    """pyproject says what may work (a range with an upper bound); constraints.txt what the tests ran with."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip().lower()] = version.strip()
    for req in reqs:
        assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"
        assert req.name.lower() in pinned, f"constraints.txt has no tested version of {req.name}"
        tested = pinned[req.name.lower()]
        assert req.specifier.contains(tested), f"{req.name}=={tested} is outside {req}"
    assert set(pinned) == {r.name.lower() for r in reqs}, "constraints.txt lists something pyproject does not"


def test_the_docs_table_of_binary_sources_is_what_the_code_does() -> None:
    """docs/addons.md's table is `labkit prefetch --list`'s output: a new component or version updates both."""
    from labkit.addons import all_components
    from labkit.cluster.binaries import sources_table

    page = (ROOT / "docs" / "addons.md").read_text()
    table = page.split("<!-- sources: labkit prefetch --list -->\n", 1)[1].split("\n<!-- end sources -->", 1)[0]
    assert table == sources_table(all_components()), "regenerate it with `labkit prefetch --list`"
