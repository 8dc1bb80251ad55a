"""JupyterHub for a classroom built by ``make hub`` (``course_utils.grading.hub.classroom``).

Reads ``$CLASSROOM`` (``<prefix>/classroom.json``). Every member is a real local account; JupyterHub
checks passwords with PAM (the system's login; ``make hub`` gives each account it creates a random
password, listed in ``<prefix>/passwords.csv`` for the instructor only).

To use your institution's login instead, put a ``jupyterhub_config.local.py`` in the prefix; it is read
last, e.g. for LTI from the learning platform or OAuth/CAS/LDAP (each a pip package):

    c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.authenticator.LTI13Authenticator"
    c.LocalAuthenticator.create_system_users = True    # accounts for new students, on first login

The roster still limits who gets in (``allowed_users``), and the instructor stays the admin.
"""

import json
import os
from pathlib import Path

room = json.loads(Path(os.environ["CLASSROOM"]).read_text())
prefix = Path(room["prefix"])
venv_bin = prefix / "venv" / "bin"
port = int(room["port"])
instructor = room["instructor"]
python = str(venv_bin / "python")
# -P: never import course_utils from the working folder: the class's venv has it (<prefix>/package, root's), which
# the grading sandbox mounts for the kernels (the instructor's course copy is private)
python_cmd = [python, "-P"]

c = get_config()  # noqa: F821

# ---- network: everything on loopback; the proxy's public port is the class's address
c.JupyterHub.bind_url = f"http://{room['ip']}:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{port + 1}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 3}"
c.ConfigurableHTTPProxy.command = [room["proxy"]]
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.pid_file = str(prefix / "hub" / "jupyterhub-proxy.pid")  # make hub-down stops a stray proxy
c.JupyterHub.db_url = f"sqlite:///{prefix / 'hub' / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(prefix / "hub" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(prefix / "hub" / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# ---- who: the roster and the instructor, each a local account, checked by PAM
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(room["students"]) | {instructor}
c.Authenticator.admin_users = {instructor}
c.PAMAuthenticator.open_sessions = False
c.LocalAuthenticator.create_system_users = False

# ---- each user's JupyterLab: the class's Python, role-specific Jupyter settings, private files, a control group
# per student (memory and an equal CPU share), and no process left behind when a server stops
c.JupyterHub.spawner_class = "course_utils.grading.hub.spawner.ClassroomSpawner"
if room.get("student_memory_mb"):
    c.ClassroomSpawner.memory_limit_bytes = int(room["student_memory_mb"]) * 2**20
c.Spawner.cmd = [str(venv_bin / "jupyterhub-singleuser")]
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
omp = {"OMP_WAIT_POLICY": "PASSIVE"}  # waits that do not spin: fast under contention (make bench: contention)
if room.get("omp_threads"):
    omp["OMP_NUM_THREADS"] = str(room["omp_threads"])
c.Spawner.environment = {
    "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
    # the lessons repo belongs to root: git reads it (nbgitpuller clones and merges it) only where a global
    # config names it safe; this one does, and includes the user's own ~/.gitconfig
    "GIT_CONFIG_GLOBAL": str(prefix / "etc" / "gitconfig"),
    **omp,
}


def per_role(spawner):
    """Students: lessons pulled on every start (nbgitpuller merges updates, keeping their edits).
    The instructor: the course root with the formgrader."""
    role = "instructor" if spawner.user.name == instructor else "student"
    spawner.environment["JUPYTER_CONFIG_PATH"] = str(prefix / "etc" / role)
    if role == "instructor":
        spawner.notebook_dir = str(prefix / "course")
        spawner.default_url = "/lab"
    else:
        spawner.notebook_dir = "~"
        spawner.default_url = (
            f"/git-pull?repo={prefix / 'lessons'}&branch=main&targetpath=pytorch-foundations"
            "&urlpath=lab/tree/pytorch-foundations/notebooks"
        )


c.Spawner.pre_spawn_hook = per_role

# ---- grading on submission, and the instructor's progress page
course = str(prefix / "course")
service_env = {"OMP_WAIT_POLICY": "PASSIVE", "PATH": f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
c.JupyterHub.services = [
    {
        "name": "grader",
        "command": [
            *python_cmd,
            "-m",
            "course_utils.grading",
            "--course",
            course,
            "hub",
            "watch",
            "--exchange",
            str(prefix / "exchange"),
            "--owner",
            instructor,
            "--min-interval",
            str(room["min_interval"]),
        ],
        "environment": service_env,
        "cwd": str(prefix / "hub"),
    },
    {
        "name": "progress",
        "url": f"http://127.0.0.1:{port + 2}",
        "oauth_no_confirm": True,
        "command": [
            *python_cmd,
            "-m",
            "course_utils.grading",
            "--course",
            course,
            "hub",
            "progress",
            "--instructor",
            instructor,
        ],
        "environment": service_env,
        "cwd": str(prefix / "hub"),
    },
]
c.JupyterHub.load_roles = [
    {
        "name": "instructor",
        "users": [instructor],
        "scopes": ["access:services!service=progress", "admin-ui", "list:users", "admin:servers"],
    },
    # each student sees where their own submissions are (queued, grading, graded, held until a time)
    {"name": "student", "users": list(room["students"]), "scopes": ["self", "access:services!service=progress"]},
]

local = prefix / "jupyterhub_config.local.py"
if local.is_file():
    load_subconfig(str(local))  # noqa: F821
