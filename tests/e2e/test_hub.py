"""e2e for `labkit hub`: three students log in to one JupyterHub at once, each gets a server running as their own
system user with their own embedded lab (own API port, state in their home, no capability, the binary cache shared
read-only), code in each student's kernel reaches only that lab, and a server's stop stops its lab.

Runs as root (JupyterHub's LocalProcessSpawner switches to the students). On this kind of machine the Python lives
in root's home, which other users cannot enter: the hub runs in a private mount namespace where root's home is an
empty folder with only the Python installation (and, if there, this checkout) bound into it, read-only. Nothing
else of the machine changes; the students are removed afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from labkit.cluster.ports import free_port, port_free
from labkit.course import hub
from labkit.paths import cache_dir

pytestmark = pytest.mark.e2e

PREFIX = "lkhub"
STUDENTS = [f"{PREFIX}-{i:02d}" for i in (1, 2, 3)]
# In each student's kernel: who runs it, which lab it reaches, what that lab holds.
PROBE = """
import os, json, labkit as lk
lab = lk.connect()
nodes = len(lab.core.list_node().items)
print(json.dumps({"uid": os.getuid(), "server": lab.server, "nodes": nodes, "kubeconfig": str(lab.kubeconfig)}))
"""


def _blocked_ancestor(path: Path) -> Path | None:
    """The first folder above ``path`` that users other than root cannot enter (no o+x), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def _namespace_prelude(shared_cache: Path) -> str:
    """Shell lines, run in a private mount namespace, that let students run this Python and read the binary cache."""
    needed = {Path(p).resolve() for p in (sys.executable, sys.prefix, Path(hub.__file__).parents[2])}
    lines = ["set -e", "mount --make-rprivate /", f"mkdir -p {shared_cache}",
             f"mount --bind -o ro {cache_dir()} {shared_cache}"]
    for blocked in sorted({b for p in needed if (b := _blocked_ancestor(p)) is not None}):
        keep = f"/run/labkit-hub-test{blocked}"
        lines += [f"mkdir -p {keep}", f"mount --bind {blocked} {keep}", f"mount -t tmpfs -o mode=0755 tmpfs {blocked}"]
        for top in sorted({blocked / p.relative_to(blocked).parts[0] for p in needed if blocked in p.parents}):
            lines += [f"mkdir -p {top}", f"mount --bind -o ro {keep}/{top.name} {top}"]
    return "\n".join(lines)


def _remove_students() -> None:
    """Kill the students' processes, wait until none is left, and remove the users with their homes."""
    for name in STUDENTS:
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
        deadline = time.monotonic() + 30
        while _processes_of(uid) and time.monotonic() < deadline:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            time.sleep(0.5)
        subprocess.run(["userdel", "--remove", name], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if os.geteuid() != 0:
        pytest.fail("this test starts JupyterHub's LocalProcessSpawner, which needs root (CI runs as root)")
    for tool in ("bwrap", "npm", "unshare", "useradd"):
        assert shutil.which(tool), f"{tool} is needed (see .ci/run)"
    _remove_students()  # left by an earlier run that was killed
    base = tmp_path_factory.mktemp("hub")
    base.chmod(0o755)
    shared = Path(f"/run/labkit-hub-test-cache-{uuid.uuid4().hex[:6]}")
    port = free_port()
    while not (port_free(port + 1) and port_free(port + 2)):  # the proxy's API and the hub take the next two
        port = free_port()
    env = dict(os.environ, LABKIT_STATE_DIR=str(base / "hub-state"), LABKIT_SHARED_CACHE=str(shared),
               LABKIT_HUB_NOTEBOOKS=str(hub.notebooks_source()))
    for key in ("LABKIT_API_PORT", "LABKIT_KUBECONFIG", "KUBECONFIG", "LABKIT_IN_TEST"):
        env.pop(key, None)
    hub.proxy_command()  # installed (once) before the clock of the hub's start runs
    script = (_namespace_prelude(shared) + f"\nexec {sys.executable} -m labkit hub --students {len(STUDENTS)} "
              f"--prefix {PREFIX} --port {port}\n")
    log = open(base / "hub.log", "w")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(["unshare", "--mount", "bash", "-c", script], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    token_file = base / "hub-state" / "hub" / "api-token"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"labkit hub exited {process.returncode}: {(base / 'hub.log').read_text()[-3000:]}")
        try:
            if token_file.exists() and requests.get(f"{url}/hub/api/", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        time.sleep(1)
    else:
        pytest.fail(f"JupyterHub did not answer on {url} in 120 s: {(base / 'hub.log').read_text()[-3000:]}")
    session = requests.Session()
    session.headers["Authorization"] = f"token {token_file.read_text().strip()}"
    yield {"url": url, "api": session, "base": base, "passwords": base / "hub-state" / "hub" / "passwords",
           "state": base / "hub-state"}
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()
    _remove_students()
    shutil.rmtree(shared, ignore_errors=True)


def _login(url: str, name: str, password: str) -> requests.Session:
    """A student's browser: the hub's login form (PAM checks the password), which starts their server."""
    browser = requests.Session()
    browser.get(f"{url}/hub/login", timeout=30)
    answer = browser.post(f"{url}/hub/login?next=", timeout=60, allow_redirects=False, data={
        "username": name, "password": password, "_xsrf": browser.cookies.get("_xsrf", "")})
    assert answer.status_code == 302, (answer.status_code, answer.text[:500])
    assert browser.get(f"{url}/hub/spawn", timeout=120).ok  # what the browser does next: start my server
    return browser


def _wait_ready(api: requests.Session, url: str, name: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    model: dict[str, Any] = {}
    while time.monotonic() < deadline:
        model = api.get(f"{url}/hub/api/users/{name}", timeout=30).json()
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(1)
    raise AssertionError(f"{name}'s server was not ready in {timeout:.0f} s: {model}")


def _run_in_kernel(api: requests.Session, url: str, name: str, code: str, timeout: float = 600) -> str:
    """Run ``code`` in a new kernel of ``name``'s server through the hub's proxy; return what it printed."""
    base = f"{url}/user/{name}/api"
    kernel = api.post(f"{base}/kernels", json={"name": "python3"}, timeout=60)
    assert kernel.status_code == 201, (kernel.status_code, kernel.text[:300])
    kernel_id = kernel.json()["id"]
    ws = websocket.create_connection(f"{base.replace('http', 'ws', 1)}/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: {api.headers['Authorization']}"], timeout=timeout)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                                   "session": uuid.uuid4().hex, "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": False,
                                    "user_expressions": {}, "allow_stdin": False}}))
    printed, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            printed.append(msg["content"]["text"])
        elif kind == "error":
            raise AssertionError(f"{name}'s kernel: {msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    ws.close()
    api.delete(f"{base}/kernels/{kernel_id}", timeout=30)
    return "".join(printed)


def _processes_of(uid: int) -> dict[int, str]:
    """pid -> command line of every process of a user."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            except OSError:
                continue
    return found


def _effective_caps(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapEff for {pid}")


def test_three_students_each_get_their_own_unprivileged_lab_which_stops_with_their_server(
        hub_run: dict[str, Any]) -> None:
    url, api = hub_run["url"], hub_run["api"]
    first = STUDENTS[0]
    _login(url, first, (hub_run["passwords"] / f"{first}.password").read_text().strip())
    with pytest.raises(AssertionError):  # a wrong password is refused by PAM
        _login(url, STUDENTS[1], "not-the-password")
    for name in STUDENTS[1:]:  # the instructor's token starts the others at the same time
        assert api.post(f"{url}/hub/api/users/{name}/server", timeout=60).status_code in (201, 202)
    started = time.monotonic()
    for name in STUDENTS:
        _wait_ready(api, url, name)
    seen = {}
    for name in STUDENTS:
        seen[name] = json.loads(_run_in_kernel(api, url, name, PROBE).strip().splitlines()[-1])
    print(f"3 servers ready and their labs answering {time.monotonic() - started:.0f} s after the starts: {seen}")
    for name, probe in seen.items():
        user = pwd.getpwnam(name)
        assert probe["uid"] == user.pw_uid != 0
        assert probe["nodes"] == 6
        assert probe["kubeconfig"].startswith(user.pw_dir + "/")
        assert probe["server"].startswith("https://127.0.0.1:")
        assert Path(user.pw_dir).stat().st_mode & 0o077 == 0, f"{name}'s home is open to other users"
        assert (Path(user.pw_dir) / hub.NOTEBOOKS_FOLDER / "00_lab_tour.ipynb").is_file()
        apiservers = [pid for pid, cmd in _processes_of(user.pw_uid).items() if "kube-apiserver" in cmd]
        assert apiservers and all(_effective_caps(pid) == 0 for pid in apiservers)
    assert len({p["server"] for p in seen.values()}) == 3  # three labs, not one shared

    # A student cannot reach another's lab with what they hold: the other's kubeconfig is in a home they cannot read.
    other = seen[STUDENTS[1]]["kubeconfig"]
    answer = _run_in_kernel(api, url, first, f"""
try:
    open({other!r}).read()
    print("READ")
except PermissionError:
    print("DENIED")
""")
    assert answer.strip() == "DENIED"

    # Nothing was written into the shared cache by a student (it is read-only to them).
    assert not list(Path(pwd.getpwnam(first).pw_dir).glob(".cache/labkit/bin/*/.complete"))

    # Stopping a server stops that student's lab, and only theirs.
    uid = pwd.getpwnam(STUDENTS[2]).pw_uid
    assert api.delete(f"{url}/hub/api/users/{STUDENTS[2]}/server", timeout=60).status_code in (202, 204)
    deadline = time.monotonic() + 120
    while _processes_of(uid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _processes_of(uid), _processes_of(uid)
    assert any("kube-apiserver" in c for c in _processes_of(pwd.getpwnam(first).pw_uid).values())


def test_the_instructor_sees_each_students_progress_from_their_own_lab(hub_run: dict[str, Any]) -> None:
    url, api = hub_run["url"], hub_run["api"]
    name = STUDENTS[0]
    _wait_ready(api, url, name)
    _run_in_kernel(api, url, name, "import labkit as lk\nprint(lk.check(lk.connect(), '01-recover', "
                                   "namespace='lesson-01').passed)")
    env = dict(os.environ, LABKIT_STATE_DIR=str(hub_run["state"]))
    out = subprocess.run([sys.executable, "-m", "labkit", "classroom", "status", "--hub"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(PREFIX)}
    assert set(rows) == set(STUDENTS), out
    assert rows[name][1:4] == ["0", rows[name][2], "1"] and int(rows[name][2]) > 20, out  # 1 attempt, every lesson
    assert rows[STUDENTS[1]][3] == "0", out
