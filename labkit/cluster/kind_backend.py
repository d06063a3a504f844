"""The kind backend: real containers in Docker, for learners who have Docker.

GPUs are simulated there too: after creation one worker gets fake ``nvidia.com/gpu`` capacity and the
GPU feature discovery labels, so the real scheduler places GPU pods on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .. import state
from ..errors import LabkitError
from ..i18n import _
from ..paths import kubeconfig_path, state_dir
from ..settings import GPU_RESOURCE
from .topology import gpu_labels

CLUSTER = "labkit"
GPU_WORKER = f"{CLUSTER}-worker2"
FAKE_GPU = {"count": 2, "product": "NVIDIA-H100-80GB-HBM3", "memory_mib": 81559, "family": "hopper",
            "compute_major": 9, "compute_minor": 0}


def default_config() -> Path:
    """kind-config.yaml from the current directory, else the one at the top of the labkit checkout."""
    here = Path.cwd() / "kind-config.yaml"
    return here if here.exists() else Path(__file__).resolve().parents[2] / "kind-config.yaml"


def docker_usable() -> tuple[bool, str]:
    """Whether kind can run here, and why not when it cannot."""
    if not shutil.which("kind"):
        return False, _("`{program}` is not on PATH").format(program="kind")
    if not shutil.which("docker"):
        return False, _("`{program}` is not on PATH").format(program="docker")
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, _("`docker info` failed: {error}").format(error=exc)
    if proc.returncode != 0:
        return False, _("no Docker daemon answers (`docker info` failed)")
    return True, _("kind and Docker {version} are available").format(version=proc.stdout.strip())


def create_command(config: Path) -> list[str]:
    """The kind command labkit runs (the kubeconfig goes to labkit's state, not ~/.kube/config)."""
    return ["kind", "create", "cluster", "--name", CLUSTER, "--config", str(config),
            "--kubeconfig", str(kubeconfig_path()), "--wait", "120s"]


def gpu_patch_commands() -> list[list[str]]:
    """kubectl commands that make one worker look like a GPU node (capacity is status: --subresource)."""
    kc = ["kubectl", "--kubeconfig", str(kubeconfig_path())]
    labels = [f"{k}={v}" for k, v in gpu_labels(FAKE_GPU).items()]
    patch = {"status": {"capacity": {GPU_RESOURCE: str(FAKE_GPU["count"])}}}
    return [
        [*kc, "label", "node", GPU_WORKER, "--overwrite", *labels],
        [*kc, "patch", "node", GPU_WORKER, "--subresource=status", "--type=merge", "-p", json.dumps(patch)],
    ]


def up(*, config: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    ok, why = docker_usable()
    if not ok:
        raise LabkitError(_("the kind backend cannot run: {why}").format(why=why),
                          fix=_("install Docker and kind, or use the embedded cluster: `labkit up --backend kwok`"))
    state_dir().mkdir(parents=True, exist_ok=True)
    existing = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    if CLUSTER in existing:
        progress("reusing the running kind cluster `labkit`")
        subprocess.run(["kind", "export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", str(kubeconfig_path())],
                       check=True)
    else:
        progress(f"creating kind cluster `{CLUSTER}` (one control plane, two workers)")
        subprocess.run(create_command(config or default_config()), check=True)
    for cmd in gpu_patch_commands():
        subprocess.run(cmd, check=True, capture_output=True)
    state.record("kind")
    return kubeconfig_path()


def down(*, progress: Callable[[str], None] = print) -> None:
    subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False)
    kubeconfig_path().unlink(missing_ok=True)
    state.forget()
    progress("kind cluster `labkit` deleted")
