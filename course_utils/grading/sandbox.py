"""The jail a submission's kernel runs in: bubblewrap namespaces + a throw-away uid + rlimits.

Inside, the kernel sees a read-only system, Python and ``course_utils``, the shipped data, its own
writable work folder and nothing else: no network (own net namespace), no other processes (own pid
namespace), no solutions, gradebook, references or other students' work (they are simply not mounted).

    >>> cmd = sandbox_command(["python", "-c", "pass"], Jail(Path("/tmp/w"), Path("/tmp/r"), Path("/tmp/i"), 61001))
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from course_utils import env

#: the course_utils package, which every jailed kernel imports
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

#: where a submission's files appear inside the jail (its working directory)
WORK_MOUNT = "/submission"
#: where the record file lives inside the jail
RECORDS_MOUNT = "/records"
RECORD_FILE_NAME = "records.pt"
#: the first of the throw-away uids the kernels run as (one per concurrent job, so rlimits are per job)
BASE_UID = 61000


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; grading refuses to run unprotected."""


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits.

        >>> Limits(cell_timeout=5).cell_timeout
        5
    """
    cell_timeout: int = 120          # wall seconds per cell (nbgrader's Execute.timeout)
    notebook_timeout: int = 900      # wall seconds for the whole notebook
    cpu_seconds: int = 900           # RLIMIT_CPU of the kernel
    memory_bytes: int = 6 * 2**30    # RLIMIT_AS of the kernel (torch alone maps ~1.5 GiB virtual)
    file_bytes: int = 256 * 2**20    # RLIMIT_FSIZE: largest file the kernel may write
    nproc: int = 256                 # RLIMIT_NPROC for the job's own uid (threads count)
    output_bytes: int = 1 * 2**20    # text/images a notebook may print before the rest is dropped
    threads: int = 1                 # OMP/MKL threads per kernel (workers already use every core)


@dataclass(frozen=True)
class Jail:
    """The host folders one job binds into its jail and the uid it runs as."""
    work_dir: Path
    records_dir: Path
    ipc_dir: Path
    uid: int


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
    """bwrap makes missing mount-point parents mode 0700; give them 0755 so the jail uid can pass."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) not in ("/", "/usr", "/etc"):
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def jail_env(limits: Limits, record_file: str) -> dict[str, str]:
    """The whole environment of a jailed kernel (nothing leaks in from the grader's).

        >>> jail_env(Limits(), "/records/records.pt")["COURSE_RECORD_FILE"]
        '/records/records.pt'
    """
    threads = str(limits.threads)
    return {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        "HOME": "/tmp/home", "IPYTHONDIR": "/tmp/ipython", "MPLCONFIGDIR": "/tmp/mpl",
        "JUPYTER_RUNTIME_DIR": "/tmp/runtime", env.CACHE_DIR: "/tmp/cache",
        "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        env.DEVICE: "cpu", "NBGRADER_EXECUTION": "autograde",
        env.RECORD_FILE: record_file, "LANG": "C.UTF-8",
    }


def rlimit_prefix(limits: Limits) -> list[str]:
    """``prlimit`` arguments that cap the kernel's CPU, memory, file size, processes and core dumps."""
    return ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_bytes}",
            f"--fsize={limits.file_bytes}", f"--nproc={limits.nproc}", "--core=0", "--"]


def sandbox_command(argv: list[str], jail: Jail, limits: Limits = Limits()) -> list[str]:
    """Wrap ``argv`` so it runs jailed: bwrap namespaces, then drop to ``jail.uid``, then rlimits.

        >>> sandbox_command(["true"], Jail(Path("/w"), Path("/r"), Path("/i"), 61000))[0]
        'bwrap'
    """
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--clearenv", *_system_binds(), "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(256 * 2**20), "--tmpfs", "/tmp"]
    for path in read_only_paths():
        args += [*_parents_world_readable(path), "--ro-bind", str(path), str(path)]
    args += ["--bind", str(jail.work_dir), WORK_MOUNT, "--bind", str(jail.records_dir), RECORDS_MOUNT,
             *_parents_world_readable(jail.ipc_dir), "--bind", str(jail.ipc_dir), str(jail.ipc_dir)]
    for key, value in jail_env(limits, f"{RECORDS_MOUNT}/{RECORD_FILE_NAME}").items():
        args += ["--setenv", key, value]
    # keep only the power to change uid, use it once, and drop every capability for good
    args += ["--chdir", WORK_MOUNT, "--cap-add", "CAP_SETUID,CAP_SETGID", "--",
             "setpriv", f"--reuid={jail.uid}", f"--regid={jail.uid}", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + rlimit_prefix(limits) + argv


def hand_over(jail: Jail) -> None:
    """Give the jail uid ownership of the folders it may write (everything else stays root's)."""
    for folder in (jail.work_dir, jail.records_dir, jail.ipc_dir):
        for root, dirs, files in os.walk(folder):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, jail.uid, jail.uid)


def probe() -> None:
    """Start a trivial jailed process; raise SandboxUnavailable (with what to do) if that fails.

        >>> probe()  # doctest: +SKIP
    """
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so submissions cannot be jailed. Install it with "
            "`apt-get install -y bubblewrap` (make setup does), or pass --no-sandbox to grade "
            "trusted notebooks unprotected.")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cg-probe-") as tmp:
        dirs = [Path(tmp) / name for name in ("w", "r", "i")]
        for d in dirs:
            d.mkdir()
        jail = Jail(*dirs, uid=BASE_UID)
        hand_over(jail)
        cmd = sandbox_command([sys.executable, "-c", "import os; print(os.getuid())"], jail)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or done.stdout.strip() != str(BASE_UID):
        raise SandboxUnavailable(
            f"the bubblewrap sandbox failed to start (exit {done.returncode}): {done.stderr.strip()[:400]}\n"
            "Grading needs root or unprivileged user namespaces. Fix that, or pass --no-sandbox to "
            "grade trusted notebooks unprotected.")
