"""A real classroom for the hub's end-to-end tests: JupyterHub and its proxy, PAM accounts, nbgrader's exchange and
the grader service, in a temporary prefix, torn down pass or fail.

    >>> with running_classroom(["alice", "bob"]) as hub:                                   # doctest: +SKIP
    ...     hub.write_as(hub.user("alice"), "01_tensors_vs_numpy/x.ipynb", text)
    ...     hub.nbgrader(hub.user("alice"), "submit", "01_tensors_vs_numpy")

The classroom is built by ``classroom.prepare`` as ``make hub`` builds it (the class venv a clone of this
checkout's venv: seconds, hard links) and JupyterHub runs from ``hub_command``. Every account is a throw-away
local account (each role's name plus a random tag) with a random password. Students act through their own
accounts: shell commands with ``runuser`` in their home, with the class's Jupyter settings and ``umask 077``
(as the terminal of their JupyterLab would), and the hub's REST API with a token they ask for with their own
password. On the way out, pass or fail: the hub and everything it started is stopped, the accounts, homes,
control groups and the prefix are removed, and the hub's log is kept in ``tests/artefacts/<name>/hub.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e.browser_support import ARTEFACTS, free_port, wait_for_hub

from support import REPO

PROXY = REPO / "course_utils" / "grading" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
ASSIGNMENT = "01_tensors_vs_numpy"
NOTEBOOK = f"{ASSIGNMENT}_exercises"
#: what every test classroom's grader gets in the course's nbgrader_config.local.py (besides each test's own)
TEST_WATCHER = "c.Watcher.poll = 0.5\n"


def require_hub() -> None:
    """Skip unless this machine can run a real classroom (root, bubblewrap, the proxy, a system Python)."""
    if os.geteuid() != 0:
        pytest.skip("the hub creates local accounts and sandboxes grading: run as root")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: run make sandbox-tools as root")
    if not os.access(PROXY, os.X_OK):
        pytest.skip("configurable-http-proxy is not installed: run make hub-tools")
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no system Python for the students' servers: apt-get install python3 python3-venv")


def wait_until(check: Callable[[], object], seconds: float, what: str, every: float = 0.3):
    """``check()``'s first truthy value within ``seconds``, else an AssertionError saying ``what`` was awaited."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(every)


class Hub:
    """A running classroom: its ``room`` (``classroom.Classroom``), URL, passwords, and what students do in it."""

    def __init__(self, room, name: str, tag: str):
        from course_utils.grading.hub.accounts import read_passwords

        self.room, self.name, self.tag = room, name, tag
        self.url = f"http://127.0.0.1:{room.port}"
        self.passwords = read_passwords(room.passwords)
        self.process: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}

    # ---------------------------------------------------------------- names and places
    def user(self, role: str) -> str:
        """The account of a role of the roster ("alice" -> "alice-<tag>"), or the instructor's ("teacher")."""
        return self.room.instructor if role == "teacher" else f"{role}-{self.tag}"

    def home(self, user: str) -> Path:
        return Path(pwd.getpwnam(user).pw_dir)

    def uid(self, user: str) -> int:
        return pwd.getpwnam(user).pw_uid

    @property
    def inbound(self) -> Path:
        return self.room.exchange / self.room.course_id / "inbound"

    @property
    def service_dir(self) -> Path:
        return self.room.course / "grading" / "service"

    def state(self) -> dict:
        """The grader's state file (what the progress page shows)."""
        try:
            return json.loads((self.service_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def entry(self, user: str, assignment: str = ASSIGNMENT) -> dict:
        return self.state().get(f"{assignment}/{user}", {})

    # ---------------------------------------------------------------- the hub's life
    def start(self) -> None:
        """Start JupyterHub (it starts the grader and progress services) and wait until the grader watches."""
        from course_utils.grading.hub.classroom import hub_command

        cmd, env = hub_command(self.room)
        mark = self._log_mark()
        log = open(self.log, "a")
        self.process = subprocess.Popen(
            cmd,
            env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
            cwd=self.room.prefix / "hub",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_hub(self.url, 300, self.process)
        self._wait_in_log(mark, b"watching ", 300, "the grader service to warm up")
        self.tokens.clear()

    @property
    def log(self) -> Path:
        return self.room.prefix / "hub" / "hub.log"

    def _log_mark(self) -> int:
        return self.log.stat().st_size if self.log.is_file() else 0

    def _wait_in_log(self, mark: int, text: bytes, seconds: float, what: str) -> None:
        def seen():
            with open(self.log, "rb") as handle:
                handle.seek(mark)
                return text in handle.read()

        wait_until(seen, seconds, what, every=1)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # the hub stops its services and the users' servers
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def restart(self) -> None:
        """Stop the hub (its services and servers with it) and start it again from ``classroom.json``."""
        self.room.save()
        self.stop()
        self.start()

    def grader_process(self):
        """The grader service's process (``hub watch`` of this classroom), or None."""
        import psutil

        for process in psutil.process_iter(["cmdline"]):
            args = process.info["cmdline"] or []
            if "watch" in args and str(self.room.course) in args:
                return process
        return None

    def restart_grader(self) -> None:
        """Stop the grader service; JupyterHub starts it again (reading the course's settings afresh)."""
        process = self.grader_process()
        mark = self._log_mark()
        process.terminate()
        process.wait(60)
        self._wait_in_log(mark, b"watching ", 300, "the grader service to start again")

    def add_course_settings(self, text: str) -> None:
        """Append to the course's ``nbgrader_config.local.py`` (which ``make hub`` writes), as its owner would."""
        path = self.room.course / "nbgrader_config.local.py"
        path.write_text(path.read_text() + text)

    # ---------------------------------------------------------------- acting as an account
    def shell_env(self, user: str) -> dict:
        role = "instructor" if user == self.room.instructor else "student"
        return {
            "HOME": str(self.home(user)),
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/bash",
            "PATH": f"{self.room.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "JUPYTER_CONFIG_PATH": str(self.room.config_dir(role)),
            "GIT_CONFIG_GLOBAL": str(self.room.prefix / "etc" / "gitconfig"),
        }

    def run_as(
        self,
        user: str,
        *args: str,
        cwd: Path | None = None,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 300,
        background: bool = False,
    ):
        """Run ``args`` as ``user`` (``runuser``, in their home unless ``cwd``, their environment only, umask 077):
        what their JupyterLab terminal would run. ``background``: the Popen, not waited for."""
        env = [f"{k}={v}" for k, v in self.shell_env(user).items()]
        command = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            "-i",
            *env,
            "bash",
            "-c",
            'umask 077; cd "$1" && shift && exec "$@"',
            "_",
            str(cwd or self.home(user)),
            *args,
        ]
        if background:
            return subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        done = subprocess.run(
            command, input=input, capture_output=True, timeout=timeout, text=not isinstance(input, bytes)
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} as {user} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    def shell(self, user: str, script: str, **kwargs):
        """A bash script run as ``user`` (see ``run_as``)."""
        return self.run_as(user, "bash", "-c", script, **kwargs)

    def write_as(self, user: str, relative: str, data: str | bytes) -> Path:
        """Write a file below ``user``'s home as that account (folders made as needed)."""
        target = self.home(user) / relative
        self.run_as(
            user,
            "bash",
            "-c",
            'mkdir -p "$(dirname "$1")" && cat > "$1"',
            "_",
            str(target),
            input=data.encode() if isinstance(data, str) else data,
        )
        return target

    def nbgrader(self, user: str, *args: str, check: bool = True, cwd: Path | None = None):
        """``nbgrader ARGS`` as ``user`` (the class's nbgrader; its exchange from the role's settings)."""
        return self.run_as(user, str(self.room.venv / "bin" / "nbgrader"), *args, check=check, cwd=cwd)

    def submit(self, user: str, notebook, assignment: str = ASSIGNMENT, *extra: str) -> str:
        """Write ``notebook`` as ``user``'s work on ``assignment`` and ``nbgrader submit`` it; return the exchange
        folder it made (the newest of theirs)."""
        import nbformat

        self.write_as(user, f"{assignment}/{NOTEBOOK}.ipynb", nbformat.writes(notebook))
        before = set(self.inbound_entries())
        self.nbgrader(user, "submit", assignment, *extra)
        made = sorted(set(self.inbound_entries()) - before)
        assert made, f"nbgrader submit as {user} made no folder in the exchange"
        return made[-1]

    def nbgrader_submit(self, user: str, assignment: str = ASSIGNMENT) -> str:
        """``nbgrader submit`` of what ``user`` has in their assignment folder; the exchange folder it made."""
        before = set(self.inbound_entries())
        self.nbgrader(user, "submit", assignment)
        made = sorted(set(self.inbound_entries()) - before)
        assert made, f"nbgrader submit as {user} made no folder in the exchange"
        return made[-1]

    def inbound_entries(self) -> list[str]:
        return sorted(os.listdir(self.inbound)) if self.inbound.is_dir() else []

    def fetch_feedback(self, user: str, assignment: str = ASSIGNMENT) -> list[str]:
        """``nbgrader fetch_feedback`` as ``user``; the texts of every feedback page they then have."""
        self.nbgrader(user, "fetch_feedback", assignment)
        pages = sorted((self.home(user) / assignment / "feedback").rglob("*.html"))
        return [page.read_text(errors="replace") for page in pages]

    # ---------------------------------------------------------------- the hub's REST API, with the user's own token
    def token(self, user: str) -> str:
        """An API token for ``user``, asked for with their own password (as a script of theirs would)."""
        import requests

        if user not in self.tokens:
            answer = requests.post(
                f"{self.url}/hub/api/users/{user}/tokens",
                timeout=60,
                json={"auth": {"username": user, "password": self.passwords[user]}},
            )
            answer.raise_for_status()
            self.tokens[user] = answer.json()["token"]
        return self.tokens[user]

    def request(self, user: str, method: str, path: str, **kwargs):
        """An HTTP request to the hub's public URL (``path`` from its root) as ``user``."""
        import requests

        headers = {"Authorization": f"token {self.token(user)}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.url}{path}", headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs
        )

    def start_server(self, user: str) -> None:
        """Start ``user``'s JupyterLab (what "Start My Server" does) and wait until it answers."""
        answer = self.request(user, "POST", f"/hub/api/users/{user}/server")
        assert answer.status_code in (201, 202, 400), answer.text  # 400: already running

        def ready():
            model = self.request(user, "GET", f"/hub/api/users/{user}").json()
            return model.get("servers", {}).get("", {}).get("ready")

        wait_until(ready, 300, f"{user}'s server to start", every=1)

    def stop_server(self, user: str) -> None:
        """Stop ``user``'s server ("Stop My Server") and wait until the hub says it stopped."""
        answer = self.request(user, "DELETE", f"/hub/api/users/{user}/server")
        assert answer.status_code in (202, 204), answer.text
        wait_until(
            lambda: not self.request(user, "GET", f"/hub/api/users/{user}").json().get("servers"),
            120,
            f"{user}'s server to stop",
            every=1,
        )

    def server_api(self, user: str, method: str, path: str, **kwargs):
        """A request to ``user``'s own Jupyter server (``path`` below ``/user/<user>``)."""
        return self.request(user, method, f"/user/{user}{path}", **kwargs)

    def start_kernel(self, user: str) -> str:
        answer = self.server_api(user, "POST", "/api/kernels", json={"name": "python3"})
        answer.raise_for_status()
        return answer.json()["id"]

    def execute(self, user: str, kernel: str, code: str, timeout: float = 180) -> dict:
        """Run ``code`` in one of ``user``'s kernels through its websocket: {"status", "stdout", "error"}; status
        "dead" when the kernel died while running it, "lost" when the websocket failed or no reply came in time."""
        import websocket

        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.room.port}/user/{user}/api/kernels/{kernel}/channels",
            header=[f"Authorization: token {self.token(user)}"],
            timeout=timeout,
        )
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": user,
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        out, reply, idle = {"status": None, "stdout": "", "error": ""}, None, False
        deadline = time.monotonic() + timeout
        try:  # done at the reply (shell) and the kernel's idle (iopub): the channels' order is not guaranteed
            while (reply is None or not idle) and out["status"] is None and time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                kind, content = msg.get("msg_type") or msg["header"]["msg_type"], msg.get("content", {})
                if kind == "status" and content.get("execution_state") in ("dead", "restarting"):
                    out["status"] = "dead"
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream":
                    out["stdout"] += content.get("text", "")
                elif kind == "error":
                    out["error"] = f"{content.get('ename')}: {content.get('evalue')}"
                elif kind == "execute_reply":
                    reply = content.get("status")
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        except (websocket.WebSocketException, OSError) as error:
            out["error"] = out["error"] or repr(error)
        finally:
            with contextlib.suppress(Exception):
                ws.close()
        out["status"] = out["status"] or (reply if idle else None) or "lost"
        return out

    def kernel_state(self, user: str, kernel: str) -> str | None:
        """The kernel's execution state as its server reports it; None when the server no longer has it."""
        answer = self.server_api(user, "GET", f"/api/kernels/{kernel}")
        return answer.json().get("execution_state") if answer.status_code == 200 else None


def cgroup_folders(user: str) -> list[Path]:
    """The control-group folders the classroom's spawner made for ``user`` that are still there."""
    from course_utils.grading.hub.spawner import ClassroomSpawner, group_folders

    return group_folders(f"{ClassroomSpawner.cgroup_prefix.default_value}/{user}")


@contextlib.contextmanager
def running_classroom(
    roles: list[str],
    name: str,
    *,
    min_interval: float = 0,
    course_settings: str = "",
    memory_mb: int = 4096,
    start: bool = True,
) -> Iterator[Hub]:
    """A classroom with one student per role (``<role>-<tag>``) and an instructor, JupyterHub running (unless
    ``start`` is False); ``course_settings`` go into the course's ``nbgrader_config.local.py`` before the grader
    starts. Everything is removed afterwards; the hub's log is kept in ``tests/artefacts/<name>/``."""
    require_hub()
    from course_utils.grading.hub.classroom import Classroom, down, prepare

    tag = secrets.token_hex(3)
    prefix = Path(tempfile.mkdtemp(prefix=f"classroom-{name}-"))
    prefix.chmod(0o755)  # every account passes through it to the class's Python and lessons
    room = Classroom(
        prefix,
        [f"{role}-{tag}" for role in roles],
        f"teacher-{tag}",
        port=free_port(4),
        homes=prefix / "homes",
        min_interval=min_interval,
        proxy=str(PROXY),
        student_memory_mb=memory_mb,
    )
    hub = None
    try:
        prepare(room)
        hub = Hub(room, name, tag)
        hub.add_course_settings(TEST_WATCHER + course_settings)
        if start:
            hub.start()
        yield hub
    finally:
        if hub is not None:
            hub.stop()
        log = prefix / "hub" / "hub.log"
        if log.is_file():
            (ARTEFACTS / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, ARTEFACTS / name / "hub.log")
        # processes, control groups, accounts, homes, the prefix
        down(prefix, remove_accounts=True, purge_homes=True, purge=True)
