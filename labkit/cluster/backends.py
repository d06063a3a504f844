"""Choose, start, stop and describe the lab's backend: kwok (embedded), kind, or the current kubeconfig."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from .. import state
from ..errors import ClusterUnreachable
from ..i18n import _
from ..paths import bin_dir
from . import kind_backend, kwok_backend
from .health import api_healthy

BACKENDS = ("auto", "kwok", "kind", "current")


def choose(requested: str) -> tuple[str, str]:
    """Resolve ``auto`` and say why: kind when Docker and kind work, otherwise the embedded kwok backend."""
    if requested != "auto":
        return requested, _("asked for explicitly")
    ok, why = kind_backend.docker_usable()
    if ok:
        return "kind", why
    return "kwok", _("{why}, so the embedded control plane with KWOK nodes is used").format(why=why)


def up(requested: str = "auto", *, progress: Callable[[str], None] = print) -> Path:
    backend, why = choose(requested)
    progress(_("backend: {backend} ({why})").format(backend=backend, why=why))
    if backend == "kwok":
        kubeconfig = kwok_backend.up(progress=progress)
    elif backend == "kind":
        kubeconfig = kind_backend.up(progress=progress)
    else:
        kubeconfig = _use_current(progress)
    return kubeconfig


def _use_current(progress: Callable[[str], None]) -> Path:
    env = os.environ.get("KUBECONFIG")
    path = Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"
    if not path.exists() or not api_healthy(path):
        raise ClusterUnreachable(f"the current kubeconfig ({path}) reaches no healthy API server",
                                 fix="check `kubectl cluster-info`, or use `labkit up --backend kwok`")
    state.record("current", kubeconfig=str(path))
    progress(f"using the cluster of {path}")
    return path


def down(*, progress: Callable[[str], None] = print) -> None:
    backend = state.backend() or "kwok"
    if backend == "kind":
        kind_backend.down(progress=progress)
    elif backend == "current":
        state.forget()
        progress("forgot the current-kubeconfig backend (that cluster was not touched)")
    else:
        kwok_backend.down(progress=progress)
        state.forget()


def env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (else this process's environment) with the lab's kubeconfig and its pinned kubectl first on PATH:
    what ``eval "$(labkit env)"`` gives a shell, for a subprocess."""
    kc = state.lab_kubeconfig()
    if kc is None:
        raise ClusterUnreachable("no lab is running, so there is no kubeconfig to point at", fix="labkit up")
    base = dict(os.environ if base is None else base)
    return {**base, "KUBECONFIG": str(kc), "PATH": f"{bin_dir()}:{base.get('PATH', '')}"}


def env_lines() -> list[str]:
    """Shell lines for ``eval "$(labkit env)"``: the lab's kubeconfig and its pinned kubectl first on PATH."""
    kc = env({})["KUBECONFIG"]
    return [f"export KUBECONFIG={kc}", f'export PATH="{bin_dir()}:$PATH"']
