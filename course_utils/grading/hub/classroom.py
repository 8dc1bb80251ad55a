"""``make hub``: a JupyterHub classroom in one folder (the prefix, default ``/srv/pytorch-foundations``).

    $ python -m course_utils.grading hub up --roster roster.csv --instructor teacher

``prepare`` builds the prefix from this repository, then ``up`` runs JupyterHub (``jupyterhub_config.py`` beside
this module reads ``classroom.json``) on 127.0.0.1:

| path in the prefix | what | who may read it |
| --- | --- | --- |
| ``classroom.json`` | the settings below (students, instructor, ports, rate limit) | root |
| ``venv/`` | the class's Python (the system's ``python3``: readable by every account), pinned packages | all |
| ``package/`` | the course's package (``course_utils``, the data), installed in the venv | all |
| ``lessons/`` | the student edition (a git repo), pulled into each home by nbgitpuller | all |
| ``course/`` | the instructor's course root (with solutions/ and the grading workspace) | the instructor |
| ``exchange/`` | nbgrader's exchange (``ugo+rwx``, nbgrader's own ``inbound``/``outbound``/``feedback`` modes) | all |
| ``etc/student``, ``etc/instructor`` | Jupyter config per role (``JUPYTER_CONFIG_PATH``): extensions, nbgrader | all |
| ``passwords.csv`` | each created account's random password (``0600``) | the instructor |
| ``hub/`` | JupyterHub's database, cookie secret and logs | root |

Run it again after a course update: the lessons repo gets a new commit (students' next login merges it
with nbgitpuller, keeping their edits), the instructor's copy and the exchange's assignments are updated.
``down`` stops the classroom's processes and control groups, keeping the accounts, their homes and the prefix
unless asked (``--remove-accounts``, ``--purge-homes``, ``--purge``).
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course_utils.atomic import write_atomically
from course_utils.grading.git import git, tracked_files
from course_utils.grading.hub.accounts import Accounts, ensure_account, remove_all, set_passwords

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
#: what the student edition leaves out (instructor-only or development-only)
NOT_FOR_STUDENTS = (
    "solutions/",
    "tests/",
    ".ci/",
    "bench/",
    "scripts/",
    "docs/",
    "nbgrader_config.py",
    "Makefile",
    "course_utils/grading/",
)
#: ... except the part of the grading package a learner's JupyterLab runs (Validate)
LEARNER_GRADING = ("course_utils/grading/__init__.py", "course_utils/grading/git.py", "course_utils/grading/lab/")
#: what the class venv installs (the whole package, the grader's side too) and the kernels read
PACKAGE_FILES = ("course_utils/", "data/", "pyproject.toml", "requirements.txt", "README.md")
LESSONS_DIR_NAME = "pytorch-foundations"  # the folder the lessons get in each student's home
#: nbgrader's collect for the class: only folders that belong to the student they name, copied without links;
#: and its list, which no student's folder stops
COLLECT = (
    'c.ExchangeFactory.collect = "course_utils.grading.hub.exchange.OwnerCheckedCollect"\n'
    'c.ExchangeFactory.list = "course_utils.grading.hub.exchange.CheckedList"\n'
)
INSTRUCTOR_CSP = "frame-ancestors 'self'; img-src 'self' data: blob:"
EXTENSIONS_OFF_FOR_STUDENTS = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
)


@dataclass
class Classroom:
    """Everything ``hub/jupyterhub_config.py`` needs, saved as ``<prefix>/classroom.json``."""

    prefix: Path
    students: list[str]
    instructor: str
    course_id: str = "pytorch-foundations"
    ip: str = "127.0.0.1"
    port: int = 8000  # the hub's public port; port+1 hub API, +2 progress page, +3 proxy API
    min_interval: float = 60.0  # seconds between gradings of one student's assignment
    homes: Path = Path("/home")
    proxy: str = ""  # configurable-http-proxy executable
    omp_threads: int = 0  # OMP_NUM_THREADS of every kernel (0: leave it to torch)
    python: str = ""  # the Python every account can run (default: the system's python3)
    student_memory_mb: int = 4096  # memory of each student's server and kernels together
    extra: dict = field(default_factory=dict)

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def lessons(self) -> Path:
        return self.prefix / "lessons"

    @property
    def package(self) -> Path:
        return self.prefix / "package"

    @property
    def course(self) -> Path:
        return self.prefix / "course"

    @property
    def exchange(self) -> Path:
        return self.prefix / "exchange"

    @property
    def passwords(self) -> Path:
        return self.prefix / "passwords.csv"

    @property
    def accounts(self) -> Accounts:
        return Accounts(f"{self.course_id}-class"[:32], self.homes, self.prefix / "accounts.json")

    def config_dir(self, role: str) -> Path:
        return self.prefix / "etc" / role

    def save(self) -> Path:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        return write_atomically(self.prefix / "classroom.json", json.dumps(data, indent=1))

    @classmethod
    def load(cls, prefix: Path) -> Classroom:
        path = Path(prefix) / "classroom.json"
        if not path.is_file():
            raise FileNotFoundError(f"No classroom in {prefix} (no classroom.json): run make hub first.")
        data = json.loads(path.read_text())
        return cls(**{**data, "prefix": Path(data["prefix"]), "homes": Path(data["homes"])})


# ---------------------------------------------------------------- files


def for_students(name: str) -> bool:
    """True for a course file the student edition carries: the lessons, exercises, data and learner's helpers.

    >>> for_students("notebooks/01_tensors_vs_numpy.ipynb"), for_students("solutions/x.ipynb")
    (True, False)
    >>> for_students("course_utils/grading/lab/validate.py"), for_students("course_utils/grading/cli.py")
    (True, False)
    """
    return name.startswith(LEARNER_GRADING) or not name.startswith(NOT_FOR_STUDENTS)


def sync_files(repo: Path, files: list[str], dest: Path) -> bool:
    """Make ``dest`` hold exactly ``files`` from ``repo`` (files it copied before and no longer listed go);
    True when anything changed."""
    manifest = dest / ".classroom-files"
    before = set(json.loads(manifest.read_text())) if manifest.is_file() else set()
    changed = False
    for name in files:
        src, target = repo / name, dest / name
        if not target.is_file() or not filecmp.cmp(src, target, shallow=False):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            changed = True
    for name in sorted(before - set(files)):
        (dest / name).unlink(missing_ok=True)
        changed = True
    write_atomically(manifest, json.dumps(files))
    return changed


def publish_lessons(room: Classroom, repo: Path = REPO) -> bool:
    """Commit the student edition to ``<prefix>/lessons`` (branch main) when it changed; True if it did."""
    files = [f for f in tracked_files(repo) if for_students(f)]
    room.lessons.mkdir(parents=True, exist_ok=True)
    if not (room.lessons / ".git").is_dir():
        git(room.lessons, "init", "-q", "-b", "main")
    sync_files(repo, files, room.lessons)
    (room.lessons / ".git" / "info" / "exclude").write_text(".classroom-files\n*.egg-info/\n__pycache__/\n")
    git(room.lessons, "add", "-A")
    if not git(room.lessons, "status", "--porcelain"):
        return False
    git(room.lessons, "commit", "-q", "-m", "Course update", as_course=True)
    return True


def publish_package(room: Classroom, repo: Path = REPO) -> bool:
    """``<prefix>/package``: the course's Python package and data (root's, readable by all), which the class
    venv installs; True when anything changed."""
    return sync_files(repo, [f for f in tracked_files(repo) if f.startswith(PACKAGE_FILES)], room.package)


def copy_course(room: Classroom, repo: Path = REPO) -> None:
    """The instructor's course root: every course file, owned by the instructor, private (``0700``). Its
    ``nbgrader_config.local.py`` points nbgrader at the class's exchange (so ``nbgrader collect`` there sees the
    submissions) and its ``classroom.mk`` points ``make`` at the class's Python (no second venv)."""
    room.course.mkdir(parents=True, exist_ok=True)
    sync_files(repo, tracked_files(repo), room.course)
    write_atomically(
        room.course / "nbgrader_config.local.py",
        f"# written by make hub: the class's exchange\nc.Exchange.root = {str(room.exchange)!r}\n{COLLECT}",
    )
    write_atomically(
        room.course / "classroom.mk",
        f"# written by make hub: make uses the class's Python\nVENV := {room.venv}\nSETUP_DONE := 1\n",
    )
    account = pwd.getpwnam(room.instructor)
    for root, dirs, files in os.walk(room.course):
        for name in [".", *dirs, *files]:
            os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)
    room.course.chmod(0o700)


# ---------------------------------------------------------------- the class's Python


def system_python(wanted: str = "") -> str:
    """A Python every account can run (the repo's .venv may sit in root's private folders): ``wanted`` (``hub up
    --python``), else the system's ``python3``."""
    for candidate in (wanted, "/usr/bin/python3", "/usr/local/bin/python3"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "The hub needs a Python outside root's home for the students' servers: "
        "apt-get install python3 python3-venv (or pass --python PATH)."
    )


def same_version(python: str) -> bool:
    """True when ``python`` is this Python's major.minor version (so this venv's packages can be cloned for it)."""
    done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return done.stdout.strip() == str(tuple(sys.version_info[:2]))


def pins_installed(requirements: Path, prefix: Path | None = None) -> list[str]:
    """The pins of ``requirements`` that the Python environment at ``prefix`` (default: this one) does not
    satisfy ([] when it has every pinned version)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    site = [str(p) for p in (Path(prefix).glob("lib/python3*/site-packages") if prefix else [])] or None
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        found = next(
            iter(metadata.distributions(name=req.name, path=site) if site else metadata.distributions(name=req.name)),
            None,
        )
        if found is None or not req.specifier.contains(found.version, prereleases=True):
            missing.append(f"{line} (found {found.version if found else 'nothing'})")
    return missing


def _link_or_copy(source: Path, dest: Path, link: bool) -> None:
    """``cp --archive`` of ``source`` into ``dest``, as hard links when ``link`` and the filesystem allows."""
    dest.mkdir(parents=True, exist_ok=True)
    if (
        link
        and subprocess.run(["cp", "--archive", "--link", f"{source}/.", str(dest)], capture_output=True).returncode == 0
    ):
        return
    subprocess.run(["cp", "--archive", f"{source}/.", str(dest)], check=True)


def clone_environment(source: Path, dest: Path, python: str) -> None:
    """``dest``: a venv of ``python`` holding the packages of the venv ``source`` (the project's, with the same
    pins): its site-packages and ``share/`` as hard links (same filesystem; else copies; nothing is ever
    written through them: pip replaces files rather than rewriting them), ``etc/`` copied (its Jupyter
    settings are rewritten in place), console scripts rewritten for ``dest``'s Python. The project's
    editable ``course_utils`` is left out (the caller installs ``<prefix>/package``)."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(dest)], check=True)
    (site_from,) = source.glob("lib/python3*/site-packages")
    (site_to,) = dest.glob("lib/python3*/site-packages")
    _link_or_copy(site_from, site_to, link=True)
    for path in [*site_to.glob("__editable__*course_utils*"), *site_to.glob("course_utils-*.dist-info")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    _link_or_copy(source / "share", dest / "share", link=True)
    _link_or_copy(source / "etc", dest / "etc", link=False)
    for script in (source / "bin").iterdir():
        target = dest / "bin" / script.name
        if target.exists() or target.is_symlink() or script.is_symlink() or not script.is_file():
            continue  # python*, activate*: the new venv's own
        data = script.read_bytes()
        first, _, rest = data.partition(b"\n")
        if first.startswith(b"#!") and Path(first[2:].decode(errors="replace").strip()).parent == source / "bin":
            data = b"#!" + str(dest / "bin" / "python").encode() + b"\n" + rest
        target.write_bytes(data)
        target.chmod(script.stat().st_mode & 0o7777)


def build_environment(room: Classroom, repo: Path = REPO, source: Path | None = None) -> Path:
    """``<prefix>/venv``: the pinned requirements and the course's package (``<prefix>/package``), rebuilt when they
    change.

    When ``source`` (default: the running venv, i.e. the project's ``.venv``) already has every pin, the
    class venv is a clone of it (``clone_environment``: seconds, next to no disk with hard links); otherwise
    pip installs the pins (a few minutes, about 1.6 GB)."""
    key = (repo / "requirements.txt").read_text() + (repo / "pyproject.toml").read_text()
    stamp = room.venv / ".classroom-installed"
    python = room.venv / "bin" / "python"
    if not (stamp.is_file() and stamp.read_text() == key and python.exists()):
        shutil.rmtree(room.venv, ignore_errors=True)
        source = Path(source or sys.prefix)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        python_for_all = system_python(room.python)
        if (
            source != Path(sys.base_prefix)
            and not pins_installed(repo / "requirements.txt", source)
            and same_version(python_for_all)
        ):
            clone_environment(source, room.venv, python_for_all)
            subprocess.run(
                [*pip, "--no-deps", "--no-build-isolation", "--no-index", "-e", str(room.package)], check=True
            )
        else:
            subprocess.run([python_for_all, "-m", "venv", str(room.venv)], check=True)
            subprocess.run([*pip, "-r", str(repo / "requirements.txt"), "-e", str(room.package)], check=True)
        write_atomically(stamp, key)
    subprocess.run([str(python), "-m", "course_utils.grading", "lab", "enable"], check=True, capture_output=True)
    for path in [room.venv, *room.venv.rglob("*")]:  # made by root with its umask: open it to every account
        if not path.is_symlink():
            mode = path.stat().st_mode
            wanted = mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0)
            if wanted != mode:
                path.chmod(wanted)
    return python


# ---------------------------------------------------------------- Jupyter settings per role


def write_role_configs(room: Classroom) -> None:
    """``etc/student`` and ``etc/instructor``: which nbgrader parts each role sees, and its nbgrader settings."""
    exchange = f"c.Exchange.root = {str(room.exchange)!r}\n"
    student = room.config_dir("student")
    _write(
        student / "nbgrader_config.py",
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {room.course_id!r}\n{exchange}c.Execute.timeout = 300\n",
    )
    _write(
        student / "labconfig" / "page_config.json",
        json.dumps({"disabledExtensions": {name: True for name in EXTENSIONS_OFF_FOR_STUDENTS}}, indent=1),
    )
    _write(
        student / "jupyter_server_config.json",
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {
                        "nbgrader.server_extensions.formgrader": False,
                        "nbgrader.server_extensions.course_list": False,
                    }
                }
            },
            indent=1,
        ),
    )
    _write(
        room.prefix / "etc" / "gitconfig",
        "# git's global config for the class (GIT_CONFIG_GLOBAL): the lessons "
        f"repo belongs to root, so name it safe\n[safe]\n"
        f"\tdirectory = {room.lessons}\n\tdirectory = {room.lessons}/.git\n"
        "[include]\n\tpath = ~/.gitconfig\n",
    )
    instructor = room.config_dir("instructor")
    _write(
        instructor / "nbgrader_config.py",
        "c = get_config()  # noqa: F821\n"
        f"load_subconfig({str(room.course / 'nbgrader_config.py')!r})  # noqa: F821\n{exchange}{COLLECT}",
    )
    _write(
        instructor / "labconfig" / "page_config.json",
        json.dumps({"disabledExtensions": {"@jupyter/nbgrader:create-assignment": False}}, indent=1),
    )
    # JupyterHub's servers refuse to be framed ('none'): the formgrader opens inside the instructor's JupyterLab,
    # from the same server; nothing the instructor opens may load from elsewhere (a tracking pixel in a submission)
    _write(
        instructor / "jupyter_server_config.json",
        json.dumps(
            {"ServerApp": {"tornado_settings": {"headers": {"Content-Security-Policy": INSTRUCTOR_CSP}}}}, indent=1
        ),
    )


def _write(path: Path, text: str) -> None:
    """Write a config file every account can read (the folders are made with umask 022)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    path.chmod(0o644)


# ---------------------------------------------------------------- the whole classroom


def prepare(room: Classroom, repo: Path = REPO) -> Classroom:
    """Build or update the classroom (idempotent): accounts, passwords, lessons, Python, course, exchange."""
    os.umask(0o022)
    room.prefix.mkdir(parents=True, exist_ok=True)
    room.prefix.chmod(0o755)
    room.save()
    created = [name for name in [room.instructor, *room.students] if ensure_account(room.accounts, name)]
    set_passwords(created, room.passwords, room.instructor)
    publish_lessons(room, repo)
    publish_package(room, repo)
    build_environment(room, repo)
    copy_course(room, repo)
    write_role_configs(room)
    _prepare_exchange(room)
    (room.prefix / "hub").mkdir(mode=0o700, exist_ok=True)
    return room


def _prepare_exchange(room: Classroom) -> None:
    """The exchange and the released assignments, made as the instructor (so the formgrader can change them)."""
    room.exchange.mkdir(exist_ok=True)
    room.exchange.chmod(0o777)  # nbgrader: the exchange must be writable by all
    code = (
        "from pathlib import Path; from course_utils.grading.pipeline.workspace import ensure_workspace; "
        f"ensure_workspace(Path({str(room.course)!r}), Path({str(room.exchange)!r}))"
    )
    account = pwd.getpwnam(room.instructor)
    subprocess.run(
        [str(room.venv / "bin" / "python"), "-c", code],
        check=True,
        cwd=room.course,
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        env={"PATH": f"{room.venv / 'bin'}:/usr/bin:/bin", "HOME": account.pw_dir},
    )


def hub_command(room: Classroom) -> tuple[list[str], dict]:
    """The command line and environment that run this classroom's JupyterHub. The classroom runs its own copy of
    the package (``<prefix>/package``): a ``PYTHONPATH`` of the shell that starts it is left out, or the hub and
    the grader would import other code than the students' kernels do (and the grader's jail, which binds only
    the package the grader imported, would find none: its template fails to start)."""
    env = {
        **{key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")},
        "CLASSROOM": str(room.prefix / "classroom.json"),
        "PATH": f"{room.venv / 'bin'}:{os.environ['PATH']}",
    }
    return [str(room.venv / "bin" / "jupyterhub"), "-f", str(HERE / "jupyterhub_config.py")], env


def classroom_processes(prefix: Path) -> list[int]:
    """Processes still running the classroom's programs: any whose command line names a path inside ``prefix``
    (the hub, its services, the class venv's Python, grading workers and their jails) and the proxy whose pid
    the hub wrote in ``prefix/hub``. JupyterHub stops its services and servers when it stops, but not always
    (a service slow to stop outlives a hub that is killed). Shells that merely sit in the prefix are not
    counted."""
    import psutil

    prefix = Path(prefix).resolve()
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        args = process.info["cmdline"] or []
        if process.info["pid"] != os.getpid() and any(arg.startswith(f"{prefix}/") for arg in args):
            found.add(process.info["pid"])
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        pid = int((prefix / "hub" / "jupyterhub-proxy.pid").read_text().strip())
        if any("configurable-http-proxy" in arg for arg in psutil.Process(pid).cmdline()):
            found.add(pid)
    return sorted(found)


def stop_processes(prefix: Path, grace: float = 10.0) -> list[int]:
    """SIGTERM every process of ``classroom_processes``, SIGKILL what is left after ``grace`` seconds."""
    import signal
    import time

    pids = classroom_processes(prefix)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    for pid in classroom_processes(prefix):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def remove_control_groups(users: list[str]) -> None:
    """End what is left in the users' control groups (the spawner removes each when its server stops; a hub that
    was killed could not), remove them, and their parent once it is empty."""
    from course_utils.grading.hub.spawner import ClassroomSpawner, end_all, group_folders, remove_group

    parent = ClassroomSpawner.cgroup_prefix.default_value
    for user in users:
        folders = group_folders(f"{parent}/{user}")
        if folders:
            end_all(folders, None, grace=2)
            remove_group(folders)
    for folder in group_folders(parent):
        with contextlib.suppress(OSError):  # another classroom's groups may still be in it
            folder.rmdir()


def down(prefix: Path, remove_accounts: bool = False, purge_homes: bool = False, purge: bool = False) -> list[str]:
    """Stop the classroom's processes. The accounts it created, their homes and the prefix are kept unless
    asked: ``remove_accounts`` removes the accounts (their homes kept, given to root), ``purge_homes`` their
    homes too, ``purge`` the prefix (grades included). Returns what was done, in sentences."""
    said = [f"stopped {len(stop_processes(prefix))} process(es) of the classroom in {prefix}"]
    try:
        room = Classroom.load(prefix)
    except FileNotFoundError:
        room = None
    if room is not None:
        remove_control_groups([*room.students, room.instructor])
    if room is not None and (remove_accounts or purge_homes):
        kept = remove_all(room.accounts, keep_homes=not purge_homes)
        if room.course.exists():  # its owner's account is gone: root's now, still private
            subprocess.run(["chown", "-R", "--no-dereference", "root:root", str(room.course)], check=False)
        said.append(
            "removed the accounts it created"
            + (f"; their homes are kept (root's, private): {', '.join(map(str, kept))}" if kept else " and their homes")
        )
    elif room is not None:
        said.append(
            f"kept the accounts and their homes ({', '.join(room.students)}, {room.instructor}): "
            "--remove-accounts removes them, --purge-homes their homes too"
        )
    if purge:
        shutil.rmtree(prefix, ignore_errors=True)
        said.append(f"deleted {prefix}, grades included")
    else:
        said.append(f"grades and submissions stay in {prefix}")
    return said
