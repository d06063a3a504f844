"""A lab that lives as long as its Jupyter server: the server extension a hub's single-user servers load.

``labkit hub`` (labkit.course.hub) starts each student's server with this extension. On load it starts a *keeper*: a
process of its own session that runs ``labkit up`` (the student's own state directory and API port, from the
environment the hub gave), then waits for the server's process to end, however it ends (stopped by the student,
culled for idling, killed), and runs ``labkit down``. Add-ons start on demand, as on a laptop lab.

While the keeper starts the lab, ``lk.connect()`` waits for it (``state.wait_for_start``) instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from ..paths import state_dir
from ..state import process_alive, starting_file

# How often the keeper looks whether its server is still there.
POLL_S = 2.0


def keep(server_pid: int) -> int:
    """The keeper: start the lab, wait for the server ``server_pid`` to end, stop the lab. Returns an exit code."""
    log = state_dir() / "keeper.log"
    state_dir().mkdir(parents=True, exist_ok=True)
    marker = starting_file()
    marker.write_text(str(os.getpid()))
    with open(log, "a") as out:
        try:
            started = subprocess.run([sys.executable, "-m", "labkit", "up"], stdout=out, stderr=subprocess.STDOUT,
                                     check=False).returncode
        finally:
            marker.unlink(missing_ok=True)
        while process_alive(server_pid):
            time.sleep(POLL_S)
        print(f"server {server_pid} ended; stopping the lab", file=out, flush=True)
        subprocess.run([sys.executable, "-m", "labkit", "down"], stdout=out, stderr=subprocess.STDOUT, check=False)
    return started


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "labkit.course.jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Start the keeper of this server's lab (its own session: a Ctrl-C in the server's terminal is not its)."""
    subprocess.Popen([sys.executable, "-m", "labkit.course.jupyter", str(os.getpid())], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    serverapp.log.info("labkit: starting this server's own lab (log: %s)", state_dir() / "keeper.log")


if __name__ == "__main__":
    sys.exit(keep(int(sys.argv[1])))
