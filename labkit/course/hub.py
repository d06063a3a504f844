"""A private embedded lab per student behind JupyterHub on one machine: ``labkit hub --students N``.

Every student gets all thirteen lessons, because each runs their own lab: the embedded cluster needs no container
engine and no privileges. Each student is a system user (made here when missing, with a password written to a
file for the instructor to hand out, as ``labkit classroom`` writes kubeconfigs). JupyterHub logs them in (PAM),
its LocalProcessSpawner starts their single-user server *as that user*, with the labkit server extension
(labkit.course.jupyter) that starts their lab and stops it with the server. Per student: state in their home, API port
``API_PORT_BASE + the hub's user id``, the binary cache of the machine shared read-only (``LABKIT_SHARED_CACHE``).
jupyterhub-idle-culler stops servers idle for an hour; their labs stop with them.

The configuration is ``labkit/data/hub/jupyterhub_config.py``: read it, copy it, change it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import versions
from ..errors import LabkitError
from ..paths import cache_dir, cached_folder, data_file, state_dir

HUB_PORT = 8000
# A student's lab API server listens on 127.0.0.1:(API_PORT_BASE + their user id in the hub's database).
API_PORT_BASE = 17000
# Where the machine's admin puts the binaries every student's lab uses (`LABKIT_CACHE_DIR=... labkit prefetch`).
DEFAULT_SHARED_CACHE = "/var/cache/labkit"
# Servers idle this long are stopped by jupyterhub-idle-culler, and their labs with them.
IDLE_TIMEOUT_S = 3600
# The course, copied into a student's home the first time their server starts.
NOTEBOOKS_FOLDER = "labkit-notebooks"


def hub_dir() -> Path:
    """The hub's database, cookie secret, proxy token and the students' password files."""
    return state_dir() / "hub"


def config_file() -> Path:
    return data_file("hub/jupyterhub_config.py")


def proxy_command(progress: Callable[[str], None] = print) -> Path:
    """configurable-http-proxy (JupyterHub's proxy, a Node.js program), installed once from npm into the cache."""
    from ..cluster.binaries import only_one_getter

    name = f"configurable-http-proxy-{versions.CONFIGURABLE_HTTP_PROXY}"
    folder = cached_folder(name)
    command = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if (folder / ".complete").is_file():
        return command
    npm = shutil.which("npm")
    if npm is None:
        raise LabkitError("JupyterHub's proxy, configurable-http-proxy, is a Node.js program and npm is not installed",
                          fix="install Node.js (Debian: `apt-get install nodejs npm`), then run this again")
    folder = cache_dir() / "bin" / name
    command = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    with only_one_getter("configurable-http-proxy", versions.CONFIGURABLE_HTTP_PROXY, progress):
        if not (folder / ".complete").is_file():
            progress(f"installing configurable-http-proxy {versions.CONFIGURABLE_HTTP_PROXY} with npm (once)")
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--prefer-offline",
                            f"configurable-http-proxy@{versions.CONFIGURABLE_HTTP_PROXY}"], check=True,
                           stdout=subprocess.DEVNULL, timeout=600)
            (folder / ".complete").touch()
    return command


def students_python() -> str:
    """The Python that runs a student's server and lab: this one, which every student must be able to run."""
    return sys.executable


def closed_to_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter (no ``o+x``), if any."""
    for folder in [*reversed(path.parents), path] if path.is_dir() else reversed(path.parents):
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


def check_reachable() -> None:
    """Refuse to start when students could not run this Python or read labkit (e.g. a Python in root's home)."""
    for what, path in (("this Python", Path(sys.executable).resolve()), ("the Python packages", Path(sys.prefix)),
                       ("labkit", Path(__file__).resolve().parents[1])):
        closed = closed_to_others(path)
        if closed is not None:
            raise LabkitError(
                f"students could not run their servers: {what} ({path}) is inside {closed}, which other users "
                "cannot enter",
                fix="install labkit where every user can read it, e.g. `python3 -m venv /opt/labkit && "
                    "/opt/labkit/bin/pip install 'labkit[hub]'` (or this checkout), then run "
                    "`sudo /opt/labkit/bin/labkit hub ...`")


def lab_environment() -> dict[str, Any]:
    """``Spawner.environment``: what makes a student's lab their own (values called with the spawner)."""
    return {
        "LABKIT_API_PORT": lambda spawner: str(API_PORT_BASE + spawner.user.id),
        "LABKIT_SHARED_CACHE": os.environ.get("LABKIT_SHARED_CACHE", DEFAULT_SHARED_CACHE),
        "LABKIT_LAB_PER_SERVER": "1",
    }


def notebooks_source() -> Path:
    """The course's notebooks a student gets: ``LABKIT_HUB_NOTEBOOKS``, else this checkout's ``notebooks/`` (both
    editions: the Chinese one is its ``zh-CN/`` folder)."""
    return Path(os.environ.get("LABKIT_HUB_NOTEBOOKS", Path(__file__).resolve().parents[2] / "notebooks"))


def copy_notebooks(spawner: Any) -> None:
    """``Spawner.pre_spawn_hook``: the course's notebooks into the student's home, once (their edits are kept)."""
    source = notebooks_source()
    user = pwd.getpwnam(spawner.user.name)
    target = Path(user.pw_dir) / NOTEBOOKS_FOLDER
    if target.exists() or not source.is_dir():
        return
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for path in [target, *target.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def ensure_students(names: list[str], folder: Path) -> list[Path]:
    """A system user per student (``useradd``) with a password (``chpasswd``) in ``folder/NAME.password``.

    A student who has a password file keeps that password; one without (a new student, or a new state folder) gets a
    new one. Homes are kept. Needs root, as JupyterHub's LocalProcessSpawner does.
    """
    if os.geteuid() != 0:
        raise LabkitError("`labkit hub` starts each student's server as their own system user, which needs root",
                          fix="run it with sudo (the students' servers and labs run as the students, not as root)")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for name in names:
        path = folder / f"{name}.password"
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        # Their lab's admin kubeconfig and keys live in their home: no other student may read it.
        Path(pwd.getpwnam(name).pw_dir).chmod(0o700)
        if not path.exists():
            password = secrets.token_urlsafe(9)
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
            path.touch(mode=0o600)
            path.write_text(password + "\n")
        written.append(path)
    return written


def students_file() -> Path:
    """The hub's students, one per line (written by ``labkit hub``; read by ``labkit classroom status --hub``)."""
    return hub_dir() / "students"


def progress_reports(students: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each student's ``progress.json`` from their own lab's state directory (None when they have checked nothing)."""
    import json

    reports: dict[str, dict[str, Any] | None] = {}
    for name in students:
        path = Path(pwd.getpwnam(name).pw_dir) / ".local" / "state" / "labkit" / "progress.json"
        try:
            reports[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            reports[name] = None
    return reports


def run(*, students: list[str], port: int = HUB_PORT) -> int:
    """Run JupyterHub on 127.0.0.1:PORT in the foreground with :func:`config_file` for these students."""
    check_reachable()
    proxy = proxy_command()
    hub_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    students_file().write_text("".join(f"{s}\n" for s in students))
    token = hub_dir() / "api-token"
    if not token.exists():
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
    env = dict(os.environ, LABKIT_HUB_STUDENTS=",".join(students), LABKIT_HUB_PORT=str(port),
               LABKIT_HUB_DIR=str(hub_dir()), LABKIT_HUB_PROXY=str(proxy),
               LABKIT_HUB_API_TOKEN=token.read_text().strip())
    return subprocess.run([sys.executable, "-m", "jupyterhub", "-f", str(config_file())], cwd=hub_dir(), env=env,
                          check=False).returncode
