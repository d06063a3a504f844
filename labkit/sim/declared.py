"""What a container's program says it will use: the load generators of the Kubernetes documentation's resource tasks.

``stress --vm 1 --vm-bytes 250M --vm-hang 1`` (polinux/stress) holds 250 MiB; ``-cpus 2`` (vish/stress) and
``stress --cpu 2`` spin two CPUs. No container runs here, so this is where such a container's usage comes from: the
workload model reports it to metrics-server (``kubectl top``, capped by the CPU limit as the CFS quota caps it) and
the kubelet's checks mark a container whose memory exceeds its limit to be OOMKilled (exit 137), as the kernel would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cluster.stages import normalise
from ..kube.quantity import optional_quantity

# A pod's own declaration of what it uses (labkit/data/kwok-metrics.yaml reads them for idle pods).
KWOK_USAGE_CPU = "kwok.x-k8s.io/usage-cpu"
KWOK_USAGE_MEMORY = "kwok.x-k8s.io/usage-memory"
STRESS = ("stress", "stress-ng")
# stress's own size suffixes are powers of 1024 (B, K, M, G); its --vm-bytes defaults to 256M.
_STRESS_UNITS = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
DEFAULT_VM_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Declared:
    cpu: float | None = None      # cores
    memory: float | None = None   # bytes


def _stress_bytes(text: str) -> float:
    text = text.strip().lower()
    if text and text[-1] in _STRESS_UNITS:
        return float(text[:-1]) * _STRESS_UNITS[text[-1]]
    return float(text)


def declared(container: dict[str, Any]) -> Declared:
    """The CPU and memory ``container``'s program declares (stress, stress-ng, vish/stress); empty for any other."""
    command = [str(w) for w in container.get("command") or []]
    argv = command + [str(w) for w in container.get("args") or []]
    program = command[0].rsplit("/", 1)[-1] if command else normalise(container.get("image", "")).repo.rsplit("/")[-1]
    if program not in STRESS:
        return Declared()
    flags = argv[1:] if command else argv
    cpu = vm = 0.0
    vm_bytes, hang, memory = float(DEFAULT_VM_BYTES), False, None
    try:
        for i, flag in enumerate(flags):
            value = flags[i + 1] if i + 1 < len(flags) else "0"
            if flag in ("--cpu", "-c", "-cpus", "--cpus"):
                cpu += float(value)
            elif flag in ("--vm", "-m"):
                vm = float(value)
            elif flag == "--vm-bytes":
                vm_bytes = _stress_bytes(value)
            elif flag == "--vm-hang":
                hang = True
            elif flag in ("-mem-total", "--mem-total"):
                memory = _stress_bytes(value)
    except ValueError:
        return Declared()  # not what stress would accept either: it exits with a usage message
    if vm:
        memory = (memory or 0.0) + vm * vm_bytes
        cpu += 0.0 if hang else vm  # a --vm worker touches its pages in a loop; with --vm-hang it sleeps
    return Declared(cpu or None, memory)


def limit(container: dict[str, Any], resource: str) -> float | None:
    return optional_quantity(((container.get("resources") or {}).get("limits") or {}).get(resource))


def oom_killed(container: dict[str, Any], annotations: dict[str, str] | None = None) -> bool:
    """Whether the kernel would OOM-kill the container: its program, or its pod's usage annotation, declares more
    memory than its limit."""
    memory = declared(container).memory
    usage = (annotations or {}).get(KWOK_USAGE_MEMORY)
    if memory is None and usage:
        memory = optional_quantity(usage)
    ceiling = limit(container, "memory")
    return memory is not None and ceiling is not None and memory > ceiling
