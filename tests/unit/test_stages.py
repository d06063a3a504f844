"""The image catalog and the rendered KWOK Stages (labkit/cluster/stages.py), without a cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit.cluster import stages
from labkit.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog() -> stages.Catalog:
    return stages.load_catalog([stages.data_file("images.yaml")])


@pytest.fixture(scope="module")
def docs(catalog: stages.Catalog) -> list[dict]:
    return stages.stage_documents(catalog)


@pytest.mark.parametrize(("image", "ref"), [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("library/nginx:1.27", "docker.io/library/nginx:1.27"),
    ("docker.io/nginx:1.27", "docker.io/library/nginx:1.27"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest"),
    ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2"),
    ("registry.k8s.io/e2e-test-images/agnhost:2.40", "registry.k8s.io/e2e-test-images/agnhost:2.40"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/team/app:v1", "localhost:5000/team/app:v1"),
    ("Registry/app", "Registry/app:latest"),  # upper case: a host name, not a Docker Hub user
    ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64),
    ("nginx:1.27@sha256:" + "b" * 64, "docker.io/library/nginx:1.27@sha256:" + "b" * 64),
])
def test_references_are_normalised_as_the_kubelet_does(image: str, ref: str) -> None:
    assert stages.normalise(image).ref == ref


@pytest.mark.parametrize(("word", "words"), [
    ("1.{0..2}", ["1.0", "1.1", "1.2"]),
    ("{a,b}-x", ["a-x", "b-x"]),
    ("{24,25}.{01..03}-py3", ["24.01-py3", "24.02-py3", "24.03-py3", "25.01-py3", "25.02-py3", "25.03-py3"]),
    ("plain", ["plain"]),
    ("{single}", ["{single}"]),
])
def test_brace_expansion(word: str, words: list[str]) -> None:
    assert stages.expand_braces(word) == words


@pytest.mark.parametrize("image", [
    "nginx:1.27", "nginx:1.14.2", "nginx:1.16.1", "nginx", "nginx:1.27-alpine", "nginx:stable-alpine-slim",
    "busybox", "busybox:1.28", "busybox:1.36.1-musl", "httpd:2.4", "registry.k8s.io/busybox:1.27.2",
    "registry.k8s.io/e2e-test-images/agnhost:2.40", "registry.k8s.io/nginx-slim:0.24", "registry.k8s.io/hpa-example",
    "registry.k8s.io/goproxy:0.1", "registry.k8s.io/pause:3.10.1", "nvidia/cuda:12.4.1-base-ubuntu22.04",
    "nvcr.io/nvidia/pytorch:24.05-py3", "nvcr.io/nvidia/tritonserver:24.05-py3",
    "nginx@sha256:" + "c" * 64,
    "ghcr.io/someone/app:v9", "redis:7.2", "myuser/app:1.0",  # repositories the catalog does not know exist
])
def test_images_that_exist(catalog: stages.Catalog, image: str) -> None:
    assert catalog.state(image) == "ok"


@pytest.mark.parametrize(("image", "state"), [
    ("nginx:1.99", "no-tag"),
    ("nginx:1.161", "no-tag"),  # the Kubernetes documentation's stuck rollout
    ("nginx:latest-alpine", "no-tag"),
    ("busybox:9.9", "no-tag"),
    ("registry.k8s.io/e2e-test-images/agnhost:9.99", "no-tag"),
    ("nginx:does-not-exist", "no-tag"),
    ("ghcr.io/someone/app:1.0-nonexistent", "no-tag"),
    ("ngnix:1.27", "no-repo"),
    ("myuser/does-not-exist", "no-repo"),
])
def test_images_that_do_not_exist(catalog: stages.Catalog, image: str, state: str) -> None:
    assert catalog.state(image) == state


def _images_used_by_the_course() -> set[str]:
    pattern = re.compile(r"""(?:image['"]?\s*[:=]\s*['"]?|--image=)"""
                         r"""([a-z0-9][\w./-]*(?::[\w.-]+)?(?:@sha256:[0-9a-f]+)?)""")
    images: set[str] = set()
    for path in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("labkit/**/*.py")]:
        # they use missing images on purpose
        if path.name in {"test_stages.py", "test_kubelet_fidelity.py", "test_kubelet_checks.py", "test_conformance.py"}:
            continue
        text = path.read_text()
        if path.suffix == ".ipynb":  # the sources only, not stored outputs
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        images |= {m.group(1).rstrip(".") for m in pattern.finditer(text)}
    # `image=labkit.kube.rollouts:set_image` in a docstring is a Python name, not an image.
    return {i for i in images if ("/" in i or ":" in i or i in {"nginx", "busybox", "httpd"})
            and not i.startswith("labkit.")}


def test_every_image_the_course_uses_exists_unless_it_says_otherwise(catalog: stages.Catalog) -> None:
    images = _images_used_by_the_course()
    assert {"nginx:1.27", "busybox:1.36", "registry.k8s.io/e2e-test-images/agnhost:2.40"} <= images
    missing = sorted(i for i in images if not catalog.exists(i) and not re.search(catalog.missing_pattern, i))
    assert not missing, f"add these to labkit/data/images.yaml: {missing}"
    # ... and the course's images are in known repositories, so a typo in a tag would fail as on a real cluster.
    assert {stages.normalise(i).repo for i in images} & set(catalog.repositories)


def test_pull_time_and_userland(catalog: stages.Catalog) -> None:
    assert catalog.pull_ms("nginx:1.27") == 400 + 68857691 // 200_000
    assert catalog.pull_ms("nvcr.io/nvidia/pytorch:24.05-py3") == 1600  # capped: lessons stay fast
    assert catalog.userland("busybox:1.36") == "busybox"
    assert catalog.userland("registry.k8s.io/busybox:1.27.2") == "busybox"
    assert catalog.userland("nginx:1.27-alpine") == "busybox"
    assert catalog.userland("nginx:1.27") == "gnu"


def test_tags_written_as_numbers_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "images.yaml"
    bad.write_text("repositories:\n  myapp:\n    tags: [1.20, 1.21]\n")
    with pytest.raises(ManifestError, match="string"):
        stages.load_catalog([bad])


def test_a_learners_catalog_adds_to_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("missing: [myorg/gone]\npreloaded: [myorg/base:1]\n"
                    "repositories:\n  nginx:\n    tags: \"1.99\"\n"
                    "  myorg/app:\n    tags: v1 v{2..3}\n    size_bytes: 1000\n")
    monkeypatch.setenv(stages.IMAGES_ENV, str(mine))
    catalog = stages.load_catalog()
    assert catalog.exists("nginx:1.99") and catalog.exists("nginx:1.27")
    assert catalog.exists("myorg/app:v3") and not catalog.exists("myorg/app:v4")
    assert catalog.state("myorg/gone:1") == "no-repo"
    assert "docker.io/myorg/base:1" in catalog.preloaded
    assert '"docker.io/myorg/app" 1000' in catalog.for_gotpl()


def test_unknown_catalog_keys_and_bad_patterns_are_refused(tmp_path: Path) -> None:
    for text, match in [("repos: {}\n", "unknown"), ("missing_pattern: '('\n", "regular expression"),
                        ("repositories:\n  nginx:1.27:\n    tags: a\n", "without a tag")]:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ManifestError, match=match):
            stages.load_catalog([path])


def test_rendered_documents_are_kwok_stages_with_unique_names(docs: list[dict]) -> None:
    names = [d["metadata"]["name"] for d in docs]
    assert len(names) == len(set(names))
    assert docs[0]["spec"]["resourceRef"]["kind"] == "Node"  # kwok's gate starts kwok when the first one is served
    for d in docs:
        assert d["apiVersion"] == "kwok.x-k8s.io/v1alpha1" and d["kind"] == "Stage", d["metadata"]["name"]
        spec = d["spec"]
        assert spec["resourceRef"]["kind"] in {"Node", "Pod"}
        assert bool(spec.get("next")) != bool(spec.get("steps")), d["metadata"]["name"]
        for step in spec.get("steps") or []:
            assert len(step) == 1 and next(iter(step)) in {"apply", "patch", "delete", "event", "finalizers"}
        for expr in spec["selector"]["matchExpressions"]:
            assert set(expr) == {"jq"} and expr["jq"]["operator"] in {"In", "NotIn", "Exists", "DoesNotExist"}
    assert {"labkit-node-initialize", "labkit-pod-create", "labkit-pod-start", "labkit-pod-image-pull-failed",
            "labkit-pod-image-pull-backoff", "labkit-pod-image-never-pull", "labkit-pod-probe-ready",
            "labkit-pod-liveness-failed", "labkit-pod-crash-restart", "labkit-pod-delete",
            "labkit-pod-complete"} <= set(names)


def _strings(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_rendering_fills_in_every_marker_and_the_catalog(docs: list[dict]) -> None:
    text = "\n".join(s for d in docs for s in _strings(d))
    assert "labkit:" not in text and "def catalog: {};" not in text
    assert '"docker.io/library/nginx":{"tags":{' in text  # the jq programs' catalog
    assert re.search(r'\$sizes := dict [^}]*"docker.io/library/busybox" 2222260', text)  # the templates' catalog


def test_events_are_the_kubelets_with_no_simulator_wording(docs: list[dict]) -> None:
    templates = [step["apply"]["template"] for d in docs for step in d["spec"].get("steps") or [] if "apply" in step]
    assert templates and all("kind: Event" in t and "component: kubelet" in t for t in templates)
    text = "\n".join(templates)
    for message in ['"Pulling image %q"',
                    '"Successfully pulled image %q in %s (%s including waiting). Image size: %d bytes."',
                    '"Container created"', '"Container started"', '"Error: ErrImagePull"', '"Error: ImagePullBackOff"',
                    '"Back-off pulling image %q"', '"Failed to pull image %q: %s"',
                    '"Container %s failed liveness probe, will be restarted"',
                    '"Back-off restarting failed container %s in pod %s_%s(%s)"', '"%s probe failed: %s"',
                    '"Container image %q already present on machine and can be accessed by the pod"',
                    '"Container image %q is not present with pull policy of Never"']:
        assert message in text, message
    assert "simulated" not in text.lower()
    # KWOK's own `event` field cannot name a container: no stage uses it.
    assert not any(d["spec"].get("next", {}).get("event") or any("event" in s for s in d["spec"].get("steps") or [])
                   for d in docs)


def test_the_command_prints_applicable_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert stages.main([]) == 0
    out = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in out] == [d["metadata"]["name"] for d in stages.stage_documents()]


# --- the jq programs, run by jq (kwok runs gojq; the two agree on what these programs use)

@pytest.fixture(scope="module")
def pull_next(docs: list[dict]) -> str:
    if not shutil.which("jq"):
        pytest.skip("jq is not installed")
    start = next(d for d in docs if d["metadata"]["name"] == "labkit-pod-start")
    return start["spec"]["selector"]["matchExpressions"][1]["jq"]["key"]


def _pod(*containers: dict, statuses: list[str] | None = None) -> dict:
    statuses = statuses or ["ContainerCreating"] * len(containers)
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": f"c{i}", **c} for i, c in enumerate(containers)]},
            "status": {"phase": "Pending", "startTime": "2030-01-01T00:00:00Z",
                       "containerStatuses": [{"name": f"c{i}", "state": {"waiting": {"reason": r}}}
                                             for i, r in enumerate(statuses)]}}


def _run(program: str, pod: dict) -> list[str]:
    out = subprocess.run(["jq", "-c", program], input=json.dumps(pod), capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize(("container", "action"), [
    ({"image": "nginx:1.27", "imagePullPolicy": "IfNotPresent"}, "start-pulled"),
    ({"image": "nginx:1.99", "imagePullPolicy": "IfNotPresent"}, "pull-failed"),
    ({"image": "ngnix:1.27", "imagePullPolicy": "IfNotPresent"}, "pull-failed"),
    ({"image": "nginx:1.27-alpine", "imagePullPolicy": "IfNotPresent"}, "start-pulled"),
    ({"image": "someone/app:v1", "imagePullPolicy": "IfNotPresent"}, "start-pulled"),
    ({"image": "nginx:1.27", "imagePullPolicy": "Never"}, "never-pull"),
    ({"image": "registry.k8s.io/pause:3.10.1", "imagePullPolicy": "Never"}, "start-present"),
    ({"image": "registry.k8s.io/pause:3.10.1", "imagePullPolicy": "Always"}, "start-pulled"),
])
def test_the_pull_program_agrees_with_the_catalog(pull_next: str, catalog: stages.Catalog, container: dict,
                                                 action: str) -> None:
    delay, what = _run(pull_next, _pod(container))
    assert what == action
    if action == "start-pulled":
        assert delay == f"{catalog.pull_ms(container['image'])}ms" or delay.endswith("ms")
    expected_exists = catalog.exists(container["image"])
    assert (what != "pull-failed") == expected_exists


def test_the_pull_program_takes_containers_in_order_and_backs_off(pull_next: str) -> None:
    pod = _pod({"image": "nginx:1.99"}, {"image": "nginx:1.27"}, statuses=["ErrImagePull", "ContainerCreating"])
    assert _run(pull_next, pod)[1] == "start-pulled"  # the next container starts while the first backs off
    pod = _pod({"image": "nginx:1.99"}, statuses=["ErrImagePull"])
    assert _run(pull_next, pod)[1] == "pull-backoff"
    pod = _pod({"image": "nginx:1.99"}, statuses=["ImagePullBackOff"])
    assert _run(pull_next, pod)[1] == "pull-failed"
    pod["status"]["phase"] = "Running"
    assert _run(pull_next, pod) == []


# --- a running container: commands that end, and the OOM mark the kubelet's checks write

@pytest.fixture(scope="module")
def next_event(docs: list[dict]) -> str:
    if not shutil.which("jq"):
        pytest.skip("jq is not installed")
    crash = next(d for d in docs if d["metadata"]["name"] == "labkit-pod-crash")
    return crash["spec"]["delay"]["durationFrom"]["jq"]["expression"]


def _running(container: dict, *, restart: str = "Always", owner: str | None = None,
             annotations: dict | None = None) -> dict:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": annotations or {}},
           "spec": {"restartPolicy": restart, "containers": [{"name": "c", **container}]},
           "status": {"phase": "Running", "containerStatuses": [
               {"name": "c", "ready": True, "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}}
    if owner:
        pod["metadata"]["ownerReferences"] = [{"kind": owner, "name": "x", "uid": "o"}]
    return pod


@pytest.mark.parametrize(("container", "restart", "action"), [
    ({"image": "busybox:1.36", "command": ["sh", "-c", "echo hello"]}, "Never", "complete"),
    ({"image": "busybox:1.36", "command": ["sh", "-c", "echo hello"]}, "Always", "crash"),  # Completed, then back-off
    ({"image": "busybox:1.36"}, "Always", "crash"),                      # busybox's `sh` ends with no terminal
    ({"image": "registry.k8s.io/busybox", "command": ["/bin/sh", "-c", "env"]}, "Never", "complete"),
    ({"image": "busybox:1.28", "args": ["/bin/sh", "-c", 'i=0; while true; do echo "$i"; sleep 1; done']},
     "Always", None),                                                     # the docs' counter runs on
    ({"image": "busybox:1.36", "command": ["sleep", "infinity"]}, "Always", None),
    ({"image": "nginx:1.27"}, "Always", None),                            # a server runs on
    ({"image": "python:3.12", "command": ["python", "app.py"]}, "Never", None),  # unknown program: runs on
])
def test_commands_that_end_exit_zero(next_event: str, container: dict, restart: str, action: str | None) -> None:
    out = _run(next_event, _running(container, restart=restart))
    assert (out[1] if out and out[0] is not None else None) == action


def test_the_oom_mark_kills_the_first_container(next_event: str) -> None:
    stress = {"image": "polinux/stress", "command": ["stress"], "args": ["--vm", "1", "--vm-bytes", "250M"]}
    assert _run(next_event, _running(stress)) == [None, None]  # unmarked: stress runs on
    marked = _running(stress, annotations={stages.OOM_ANNOTATION: "c"})
    assert _run(next_event, marked)[1] == "crash"
    assert _run(next_event, {**marked, "spec": {**marked["spec"], "restartPolicy": "Never"}})[1] == "fail"


def test_every_pod_stage_waits_for_the_kubelets_checks(docs: list[dict]) -> None:
    pod_stages = {d["metadata"]["name"]: d for d in docs if d["spec"]["resourceRef"]["kind"] == "Pod"}
    gate_key = f'.metadata.annotations["{stages.KUBELET_ANNOTATION}"]'

    def gate_values(doc: dict) -> list[str] | None:
        found = [e["jq"] for e in doc["spec"]["selector"]["matchExpressions"] if e["jq"]["key"] == gate_key]
        return found[0]["values"] if found else None

    assert set(stages.UNGATED_STAGES) <= set(pod_stages)
    for name, doc in pod_stages.items():
        if name in stages.UNGATED_STAGES:  # a deleted pod stops and goes whatever the checks said
            assert gate_values(doc) is None, name
        elif name == "labkit-pod-create":  # a held pod still gets its sandbox and IPs
            assert gate_values(doc) == ["passed", "held"]
        else:
            assert gate_values(doc) == ["passed"], name


def test_pull_errors_name_what_a_registry_would(catalog: stages.Catalog) -> None:
    assert stages.pull_error(catalog, "myregistry.internal/team/app:v1").endswith(
        'Head "https://myregistry.internal/v2/team/app/manifests/v1": dial tcp: lookup myregistry.internal: '
        "no such host")
    assert "pull access denied, repository does not exist" in stages.pull_error(catalog, "nginxx:1.27")
    assert stages.pull_error(catalog, "nginx:1.99").endswith("docker.io/library/nginx:1.99: not found")
    assert catalog.state("swr.cn-north-4.myhuaweicloud.com/team/app:v1") == "ok"  # the course's registry
    assert catalog.state("python:3.12") == "ok" and catalog.state("pyhton:3.12") == "no-repo"
