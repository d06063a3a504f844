# JupyterHub configuration: a private embedded lab per student, every lesson included (labkit.course.hub,
# docs/classroom.md).
# `labkit hub --students N` runs it with the environment below; copy it to change it (`jupyterhub -f COPY`).
#   LABKIT_HUB_STUDENTS  comma-separated user names allowed to log in (system users; `labkit hub` makes them)
#   LABKIT_HUB_PORT      where the hub listens on 127.0.0.1 (8000; the proxy's API and the hub itself take the next two)
#   LABKIT_HUB_DIR       the hub's database, cookie secret and pid file
#   LABKIT_HUB_PROXY     the configurable-http-proxy program
import os
import sys

from labkit.course import hub

c = get_config()  # noqa: F821 - JupyterHub's config loader provides it

here = os.environ.get("LABKIT_HUB_DIR", ".")
# Everything on loopback: put a TLS-terminating reverse proxy in front to serve a class over the network.
port = int(os.environ.get("LABKIT_HUB_PORT", hub.HUB_PORT))
c.JupyterHub.bind_url = f"http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{port + 2}"
c.ConfigurableHTTPProxy.command = [os.environ.get("LABKIT_HUB_PROXY", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 1}"
c.JupyterHub.db_url = f"sqlite:///{here}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{here}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{here}/jupyterhub.pid"

# Students are system users who log in with their own password (PAM); nobody else may.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {u for u in os.environ.get("LABKIT_HUB_STUDENTS", "").split(",") if u}

# Each server runs as its student: their files, their processes, their lab; never root, no capabilities.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [hub.students_python(), "-m", "jupyterhub.singleuser"]
c.Spawner.port = 0  # a free port each
c.Spawner.args = ["--ServerApp.jpserver_extensions={'labkit.course.jupyter': True}"]
c.Spawner.default_url = f"/lab/tree/{hub.NOTEBOOKS_FOLDER}"
c.Spawner.environment = hub.lab_environment()
c.Spawner.pre_spawn_hook = hub.copy_notebooks
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# Idle servers are stopped (their labs stop with them: labkit.course.jupyter's keeper).
c.JupyterHub.load_roles = [{"name": "jupyterhub-idle-culler-role",
                            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                            "services": ["jupyterhub-idle-culler-service"]}]
c.JupyterHub.services = [{"name": "jupyterhub-idle-culler-service",
                          "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                                      f"--timeout={hub.IDLE_TIMEOUT_S}"]}]

# The instructor's (and `labkit hub`'s own) API token: start, stop and list the students' servers.
if os.environ.get("LABKIT_HUB_API_TOKEN"):
    c.JupyterHub.load_roles.append({"name": "labkit-instructor", "services": ["labkit-instructor"],
                                    "scopes": ["list:users", "read:users", "admin:servers", "access:servers"]})
    c.JupyterHub.services.append({"name": "labkit-instructor", "api_token": os.environ["LABKIT_HUB_API_TOKEN"]})
