"""Browser fixtures: JupyterLab started by `make lab` on a free loopback port, and a headless Debian Chromium.

Nothing here downloads a browser or a driver: Chromium and chromedriver are the machine's (`.ci/run` installs
Debian's `chromium` and `chromium-driver`). Without them these tests fail and say what to install; they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.cluster.ports import free_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "browser"
SERVER_START_S = 600       # `make lab` first runs `make install` and `labkit up` (both quick when warm)
WINDOW = (1400, 1000)

# JupyterLab settings for an unattended run: never save over the stored notebooks (the learner's outputs are not the
# stored ones), draw every cell (windowing would leave off-screen figures undrawn), no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


@dataclass(frozen=True)
class Jupyter:
    url: str
    token: str

    def api(self, method: str, path: str) -> object:
        """Call JupyterLab's REST API (as the browser does): /api/sessions, /api/kernels, ..."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 -- loopback only
            body = answer.read()
        return json.loads(body) if body else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310 -- loopback only
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """`make lab` as a learner runs it, on a free port with a token of its own and unattended settings."""
    settings = tmp_path_factory.mktemp("jupyterlab-settings")
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_IN_TEST"}  # the learner's run, not the test's
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("jupyterlab-workspaces")))
    # --expose-app-in-browser: the test reads the notebook model (outputs, execution counts) from the page
    args = f"--port={port} --IdentityProvider.token={token} --expose-app-in-browser"
    log = tmp_path_factory.mktemp("jupyterlab") / "make-lab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(["make", "lab", f"PYTHON={sys.executable}", f"LAB_ARGS={args}"], cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while not _answers(f"{url}/api/status?token={token}"):
            if server.poll() is not None:
                pytest.fail(f"`make lab` exited ({server.returncode}):\n{log.read_text()[-3000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {url} within {SERVER_START_S} s:\n"
                            f"{log.read_text()[-3000:]}", pytrace=False)
            time.sleep(1)  # polling a server that is still starting: there is nothing to wait on but its port
        yield Jupyter(url, token)
    finally:
        os.killpg(server.pid, signal.SIGTERM)   # make, jupyter lab and its kernels
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium through chromedriver, both Debian's."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("the browser tests need Chromium and its driver: apt-get install chromium chromium-driver "
                    "(.ci/run installs them)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-gpu"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")   # Chromium refuses to sandbox as root (CI machines often are)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
