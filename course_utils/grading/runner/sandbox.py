"""The jail student notebooks run in: bubblewrap around the kernel template, then one set of namespaces per job.

Inside, a kernel sees a read-only system, Python and ``course_utils``, the shipped data, and its own
size-limited tmpfs folders; no network (own network namespace), no other process (own pid namespace),
no solutions, gradebook, references or other students' work (they are simply not mounted). Each kernel
runs as a uid of its own (``grading.uids``) when the grader is root; without root, the same namespaces
come from an unprivileged user namespace and the kernel is a capability-less uid 0 inside it.

    >>> template_command(Path("/tmp/cg-spool"), JobLimits())[0]
    'bwrap'

``grading.template`` runs inside; ``grading.kernel`` starts and talks to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from course_utils import env
from course_utils.grading.runner.cgroups import bind_args
from course_utils.records import FILE_NAME as RECORD_FILE_NAME

#: the course_utils package, which every jailed kernel imports
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: where a submission's files appear inside the jail (its working directory), and its record file
WORK_MOUNT = "/submission"
RECORDS_MOUNT = "/records"
#: what the template keeps of root's powers (it drops them all before a kernel runs)
TEMPLATE_CAPS = (
    "CAP_SYS_ADMIN",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_CHOWN",
    "CAP_FOWNER",
    "CAP_DAC_OVERRIDE",
    "CAP_KILL",
    "CAP_SETPCAP",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_PTRACE",
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; grading refuses to run unprotected."""


@dataclass(frozen=True)
class JobLimits:
    """The limits one grading job runs under (``config.Limits`` says what each means and sets them).

    >>> JobLimits(cell_timeout=5).cell_timeout
    5
    """

    cell_timeout: int = 120
    notebook_timeout: int = 900
    cpu_seconds: int = 900
    memory_bytes: int = 6 * 2**30
    disk_bytes: int = 256 * 2**20
    file_bytes: int = 256 * 2**20
    nproc: int = 256
    output_bytes: int = 1 * 2**20
    notebook_bytes: int = 16 * 2**20
    max_cells: int = 2000
    record_bytes: int = 64 * 2**20
    threads: int = 1
    message_bytes: int = 32 * 2**20
    render_seconds: int = 30

    def to_dict(self) -> dict:
        return asdict(self)


def mode() -> str:
    """How jails are made here: ``"root"`` (own uid per kernel) or ``"rootless"`` (user namespaces)."""
    return "root" if os.geteuid() == 0 else "rootless"


def read_only_paths() -> list[Path]:
    """Host paths the kernel needs to read: interpreter, venv, course_utils and the shipped data.

    >>> Path(sys.prefix) in read_only_paths()
    True
    """
    data = PACKAGE_ROOT.parent / "data"
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix), PACKAGE_ROOT]
    if data.is_dir():
        paths.append(data)
    return list(dict.fromkeys(paths))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    return args


def _parents_world_readable(path: Path) -> list[str]:
    """bwrap makes missing mount-point parents mode 0700; give them 0755 so a kernel's uid can pass."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) not in ("/", "/usr", "/etc", "/tmp"):
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def jail_env(limits: JobLimits, record_file: str, home: str = "/tmp") -> dict[str, str]:
    """The whole environment of a kernel (nothing leaks in from the grader's).

    >>> jail_env(JobLimits(), "/records/records.pt")["COURSE_RECORD_FILE"]
    '/records/records.pt'
    """
    threads = str(limits.threads)
    return {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        # the course_utils the grader imported (and the jail binds): the venv may name another (an editable
        # install of another checkout, when the grader runs a worktree's code with PYTHONPATH)
        "PYTHONPATH": str(PACKAGE_ROOT.parent),
        "HOME": f"{home}/home",
        "IPYTHONDIR": f"{home}/ipython",
        "MPLCONFIGDIR": f"{home}/mpl",
        "JUPYTER_RUNTIME_DIR": f"{home}/runtime",
        env.CACHE_DIR: f"{home}/cache",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        env.DEVICE: "cpu",
        "NBGRADER_EXECUTION": "autograde",
        env.RECORD_FILE: record_file,
        "LANG": "C.UTF-8",
    }


def _cap_args() -> list[str]:
    """bwrap's --cap-add, once per capability (bwrap reads one name per option: a comma-separated list kept
    only CAP_SYS_ADMIN without root, so the template could neither drop its kernels' bounding set nor read
    their /proc/<pid>/fd)."""
    return [arg for cap in TEMPLATE_CAPS for arg in ("--cap-add", cap)]


def template_argv() -> list[str]:
    """The template's own command: the venv's Python with the working folder kept off ``sys.path``."""
    return [sys.executable, "-P", "-m", "course_utils.grading.runner.template"]


def template_pythonpath() -> str:
    """The template's ``PYTHONPATH``: the folder holding the course_utils the grader itself imported, so the
    template (and every kernel forked from it) runs the same code, the code the jail binds. Without it the
    template found course_utils through the venv's install, which may be another checkout (an editable install
    of the main copy run from a worktree): never bound in the jail, "No module named 'course_utils'"; unjailed,
    silently the other checkout's runner.

    >>> template_pythonpath() == str(PACKAGE_ROOT.parent)
    True
    """
    return str(PACKAGE_ROOT.parent)


def template_command(
    spool: Path, limits: JobLimits, rootless: bool | None = None, cgroups: dict[str, Path] | None = None
) -> list[str]:
    """bwrap around the kernel template: a read-only view of the system and the course, the spool folder
    (where the grader hands over each job's files and takes its results), the template's cgroup folders
    (``runner.cgroups``) and the mount points each job's tmpfs folders go on. The template keeps the powers
    it needs to make each job's namespaces.

        >>> template_command(Path("/tmp/cg-spool"), JobLimits())[-4:]  # doctest: +ELLIPSIS
        [..., '-P', '-m', 'course_utils.grading.runner.template']
    """
    rootless = mode() == "rootless" if rootless is None else rootless
    args = [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    if rootless:
        args += ["--unshare-user", "--uid", "0", "--gid", "0"]
    args += [
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(512 * 2**20),
        "--tmpfs",
        "/tmp",
    ]
    for path in read_only_paths():
        args += [*_parents_world_readable(path), "--ro-bind", str(path), str(path)]
    args += [
        "--dir",
        WORK_MOUNT,
        "--dir",
        RECORDS_MOUNT,
        *_parents_world_readable(spool),
        "--bind",
        str(spool),
        str(spool),
    ]
    args += bind_args(cgroups or {})
    for key, value in jail_env(limits, f"{RECORDS_MOUNT}/{RECORD_FILE_NAME}").items():
        args += ["--setenv", key, value]
    args += ["--setenv", "PYTHONPATH", template_pythonpath()]  # the kernels' environment is jail_env alone
    args += ["--chdir", "/", *_cap_args(), "--"]
    return args + template_argv()


def probe() -> str:
    """Start a trivial jail; return the mode (``root`` or ``rootless``) or raise SandboxUnavailable with what to do.

    >>> probe()  # doctest: +SKIP
    'root'
    """
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so submissions cannot be jailed. Install it with "
            "`apt-get install -y bubblewrap` (make setup does, as root), or pass --no-sandbox to grade "
            "trusted notebooks unprotected."
        )
    how = mode()
    cmd = [
        "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    if how == "rootless":
        cmd += ["--unshare-user", "--uid", "0", "--gid", "0"]
    cmd += [*_cap_args(), "--", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/tmp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        hint = (
            "Unprivileged user namespaces seem to be disabled: ask the administrator to allow them "
            "(sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0), grade as root, "
            if how == "rootless"
            else ""
        )
        raise SandboxUnavailable(
            f"the bubblewrap sandbox failed to start as {how} (exit {done.returncode}): "
            f"{done.stderr.strip()[:400]}\n{hint}or pass --no-sandbox to grade trusted notebooks unprotected."
        )
    return how
