"""The NVIDIA Container Toolkit's start-up check, as the lab's kubelet applies it to a GPU container.

On a GPU node the toolkit's runtime hook runs after runc creates the container and before its process starts:
it mounts the driver's libraries and ``nvidia-smi``, and first checks the container's ``NVIDIA_REQUIRE_*``
environment (the image's, then the pod's ``env``, which wins) against the node's driver. A CUDA image sets
``NVIDIA_REQUIRE_CUDA=cuda>=X.Y``, the CUDA version its toolkit was built for; a driver that supports an older CUDA
fails the hook, runc reports ``StartError`` (exit code 128) and the kubelet backs off as for any start failure.

The grammar is libnvidia-container's: space-separated alternatives, any one of which may hold, each a comma-separated
list of conditions that must all hold; a condition is ``KEY OP VERSION`` with OP one of ``= != < <= > >=``.
``cuda`` is compared with the CUDA version the driver supports (``nvidia-smi``'s "CUDA Version", GPU feature
discovery's ``nvidia.com/cuda.runtime-version.full``), ``driver`` with the driver's version and ``arch`` with the
GPU's compute capability, all from the node's labels; ``brand`` is not known here and never holds.
``NVIDIA_DISABLE_REQUIRE=true`` turns the check off, as it does in the toolkit.

What this does not simulate: the mounts themselves (no container runs) and the CUDA forward-compatibility packages.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

# GPU feature discovery's labels (one source: labkit.cluster.topology writes them from labkit/data/topology.yaml).
DRIVER_LABEL = "nvidia.com/cuda.driver-version.full"
CUDA_LABEL = "nvidia.com/cuda.runtime-version.full"
ARCH_LABELS = ("nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor")

REQUIRE_PREFIX = "NVIDIA_REQUIRE_"
DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"
GPU_RESOURCE_PREFIX = "nvidia.com/"

# What runc says when a prestart hook fails, after containerd's own prefix (kubelet.RUNC_PREFIX).
HOOK_FAILED = ("error running hook #0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as "
               "'legacy'\nnvidia-container-cli: requirement error: unsatisfied condition: {condition}, please update "
               "your driver to a newer version, or use an earlier cuda container: unknown")

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "=": operator.eq, ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(r"^(?P<key>[a-z]+)(?P<op>>=|<=|!=|=|>|<)(?P<value>[0-9A-Za-z.]+)$")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", text))


def requests_gpu(container: Mapping[str, Any]) -> bool:
    """Whether the device plugin hands this container NVIDIA devices (a ``nvidia.com/...`` limit above zero)."""
    limits = (container.get("resources") or {}).get("limits") or {}
    return any(k.startswith(GPU_RESOURCE_PREFIX) and str(v) not in ("0", "") for k, v in limits.items())


def effective_env(image_env: Mapping[str, str], container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the hook reads it: the image's, overridden by the pod's plain ``env`` values."""
    env = dict(image_env)
    env.update({e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e})
    return env


def failed_condition(env: Mapping[str, str], node_labels: Mapping[str, str]) -> str | None:
    """The first condition that fails when no alternative of an ``NVIDIA_REQUIRE_*`` variable holds; else None."""
    if env.get(DISABLE_REQUIRE, "").lower() in ("true", "1", "yes"):
        return None
    facts = {"cuda": node_labels.get(CUDA_LABEL), "driver": node_labels.get(DRIVER_LABEL),
             "arch": ".".join(node_labels[k] for k in ARCH_LABELS) if all(k in node_labels for k in ARCH_LABELS)
             else None}
    for name in sorted(k for k in env if k.startswith(REQUIRE_PREFIX)):
        alternatives = [alt.split(",") for alt in env[name].split()]
        first_failure = None
        for conditions in alternatives:
            failure = next((c for c in conditions if not _holds(c, facts)), None)
            if failure is None:
                break
            first_failure = first_failure or failure
        else:
            if first_failure:
                return first_failure
    return None


def _holds(condition: str, facts: Mapping[str, str | None]) -> bool:
    match = _CONDITION.match(condition.strip())
    if not match or facts.get(match["key"]) is None:
        return False  # brand=..., or a fact the node does not state
    return _OPS[match["op"]](_version(facts[match["key"]] or ""), _version(match["value"]))


def start_problem(container: Mapping[str, Any], image_env: Mapping[str, str],
                  node_labels: Mapping[str, str] | None) -> str | None:
    """runc's words (after containerd's prefix) when the hook refuses this container on that node; else None."""
    if not node_labels or CUDA_LABEL not in node_labels or not requests_gpu(container):
        return None  # no NVIDIA runtime on the node, or no devices handed to the container: the hook does nothing
    condition = failed_condition(effective_env(image_env, container), node_labels)
    return HOOK_FAILED.format(condition=condition) if condition else None
