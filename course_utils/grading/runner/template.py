"""The kernel template: one trusted process per grading worker that forks a fresh, jailed kernel per notebook.

    $ python -P -m course_utils.grading.runner.template      # started by ``grading.kernel.Template``, never by hand

Starting Python and importing ipykernel, torch, NumPy, pandas and ``course_utils`` costs 1.5-2 s; a
notebook's own work is often a fraction of that. So the template imports them once, before any student
code exists, and then forks, per notebook:

1. a **supervisor** that becomes pid 1 of new pid, mount, network and IPC namespaces, mounts size-limited
   tmpfs folders (``/submission`` with the submission's files, ``/tmp``, ``/records``, ``/dev/shm``:
   everything the notebook can write, so a full disk is impossible), then watches the kernel: the CPU time,
   memory (tmpfs included) and number of tasks of *every* process in its namespace, against the job's
   limits. When the kernel ends, or a limit is hit, or the grader says stop, it kills everything in the
   namespace, copies ``/records/records.pt`` out (a regular file under the size cap only) and writes
   ``status.json``;
2. the **kernel**, forked by the supervisor: it binds its ZMQ sockets, detaches the spool folder from its
   view, drops to the job's own uid (or, without root, keeps uid 0 of a user namespace with no
   capabilities), sets rlimits and ``no_new_privs``, and only then starts ipykernel's loop. The
   submission folder joins ``sys.path`` when the first cell runs, so no file of the submission can run
   before the notebook's own code.

Protocol, one JSON object per line: the grader writes ``{"op": "start", "job": ...}`` or ``{"op": "stop",
"job": ...}`` on stdin; the template answers ``{"job": ..., "event": "started" | "exited", ...}`` on stdout.
Without the sandbox (``isolate`` false) the same runs without namespaces or a uid change.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import shutil
import signal
import stat
import sys
import time

import psutil

from course_utils.grading.runner import seccomp
from course_utils.grading.runner.cgroups import MOUNT as CGROUP_MOUNT
from course_utils.grading.runner.cgroups import JobCgroup
from course_utils.grading.runner.relay import Relay
from course_utils.records import FILE_NAME as RECORD_FILE

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    0x1,
    0x2,
    0x4,
    0x8,
    0x20,
    0x1000,
    0x4000,
    0x40000,
)
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 4, 24, 47, 4
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = 1, 7, -4, -5
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
POLL_SECONDS = 0.05
#: the device nodes a job's /dev holds (bound from the template's); nothing else there is writable but /dev/shm
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
#: where a kernel binds its sockets: abstract unix sockets, private to the job's network namespace
KERNEL_SOCKETS = "@course-kernel"
CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _warm_imports() -> None:
    """Everything a notebook and the kernel import, loaded once here (no thread or OpenMP pool starts)."""
    import ipykernel.debugger  # noqa: F401 - debugpy and pydevd: else in every kernel's start
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import IPython  # noqa: F401
    import IPython.core.completerlib  # noqa: F401
    import IPython.extensions.storemagic  # noqa: F401
    import matplotlib
    import tornado.queues  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import matplotlib_inline.backend_inline  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import torch  # noqa: F401
    import torch.nn  # noqa: F401

    import course_utils.checks  # noqa: F401
    import course_utils.compare  # noqa: F401
    import course_utils.data  # noqa: F401
    import course_utils.device  # noqa: F401
    import course_utils.train  # noqa: F401


# ---------------------------------------------------------------- the kernel (inside the supervisor's namespaces)


def _keyctl(*args) -> int:
    import platform

    number = SYS_KEYCTL.get(platform.machine())
    return -1 if number is None else _libc.syscall(number, *[ctypes.c_long(a) for a in args])


def _harden(spec: dict) -> None:
    """Before the kernel has a thread: an empty capability bounding set, a session keyring of its own, and the
    OOM killer's first choice (1000, which only a privileged process could lower again)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0)  # not the grader's (root's) session keyring
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")


def _drop_privileges(spec: dict) -> None:
    """Become the job's uid (or a capability-less uid 0 without root), with rlimits and no way back; then
    clear that uid's keyrings (left by an earlier kernel with the same uid) and load the seccomp filter."""
    import resource

    limits = spec["limits"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"],) * 2)
    uid = spec.get("uid")
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # a non-zero uid: every capability is gone
    elif os.geteuid() == 0 and spec.get("isolate"):
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # uid 0 of a user namespace: empty every set
        data = (ctypes.c_uint32 * 6)()
        _check(_libc.capset(header, data), "capset")
    if spec.get("isolate"):
        for keyring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
            _keyctl(KEYCTL_CLEAR, keyring)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if spec.get("isolate"):
        seccomp.install()


def _submission_joins_path_at_first_cell(shell) -> None:
    def first_cell(*_):
        if "" not in sys.path:
            sys.path.insert(0, "")
        shell.events.unregister("pre_run_cell", first_cell)

    shell.events.register("pre_run_cell", first_cell)


def _kernel(spec: dict) -> None:
    """Run ipykernel in this process: bind, detach the spool, drop privileges, then serve."""
    if spec.get("isolate"):
        _harden(spec)
    os.closerange(3, 65536)  # nothing of the template's or the supervisor's (its control pipe) reaches the kernel
    if spec.get("isolate"):  # the kernel's own output goes to its tmpfs, not to the grader's disk
        log = os.open("/tmp/kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    os.environ.clear()
    os.environ.update(spec["env"])
    os.chdir(spec["cwd"])
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(["-f", spec["kernel_connection_file"], "--IPKernelApp.quiet=True", "--HistoryManager.enabled=False"])
    _submission_joins_path_at_first_cell(app.shell)
    if spec.get("isolate"):  # a mount namespace of its own, without the spool (the sockets are bound already)
        _check(_libc.unshare(CLONE_NEWNS), "unshare the kernel's mounts")
        _check(_libc.umount2(spec["spool"].encode(), MNT_DETACH), "detach the spool")
        for name in os.listdir(CGROUP_MOUNT) if os.path.isdir(CGROUP_MOUNT) else []:
            _libc.umount2(f"{CGROUP_MOUNT}/{name}".encode(), MNT_DETACH)
    _drop_privileges(spec)
    app.start()


# ---------------------------------------------------------------- the supervisor (pid 1 of the job)


def _read_only_under_tmp() -> list[str]:
    """The jail's read-only folders (venv, course_utils, data) that lie under /tmp, e.g. in a clone made with
    ``mktemp -d``: each job's own /tmp tmpfs would hide them from its kernel."""
    from course_utils.grading.runner.sandbox import read_only_paths

    return [str(path) for path in read_only_paths() if str(path).startswith("/tmp/")]


def _private_dev() -> None:
    """A /dev of the job's own: a small tmpfs with the usual device nodes (bound from the template's), a fresh
    devpts and, later, /dev/shm; read-only once set up (without root the kernel is its owner, so it could
    otherwise fill it, and the next job of the template would find what it left there)."""
    nodes = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEV_NODES if os.path.exists(f"/dev/{name}")}
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
    for name, fd in nodes.items():
        open(f"/dev/{name}", "w").close()
        _mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
        os.close(fd)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        os.symlink(target, f"/dev/{name}")
    for folder in ("shm", "pts"):
        os.mkdir(f"/dev/{folder}", 0o755)
    with contextlib.suppress(OSError):  # terminals (IPython's !command); a handful at most
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,max=8")


def _cap_ipc(shared_bytes: int) -> None:
    """System V shared memory and message queues of the job's IPC namespace: no more than ``shared_bytes``
    (its /dev/shm's size); then /proc/sys read-only, so that the kernel cannot raise them again."""
    pages = max(1, shared_bytes // os.sysconf("SC_PAGE_SIZE"))
    for name, value in (("shmmax", shared_bytes), ("shmall", pages), ("shmmni", 64), ("msgmni", 16)):
        with contextlib.suppress(OSError), open(f"/proc/sys/kernel/{name}", "w") as handle:
            handle.write(str(value))
    _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    _mount("none", "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _setup_job_filesystem(spec: dict) -> None:
    """Private tmpfs folders for everything the job may write, with the submission's files copied in."""
    limits, uid = spec["limits"], spec.get("uid")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
    _private_dev()
    _cap_ipc(limits["disk_bytes"] // 4)
    under_tmp = [
        (path, os.open(path, os.O_PATH | os.O_DIRECTORY), os.statvfs(path).f_flag & 0xF)
        for path in _read_only_under_tmp()
    ]
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    for folder, size in (
        ("/submission", limits["disk_bytes"]),
        ("/tmp", limits["disk_bytes"]),
        ("/records", limits["record_bytes"] + 2**20),
        ("/dev/shm", limits["disk_bytes"] // 4),
    ):
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700{owner}")
    for path, fd, flags in under_tmp:  # back on top of the job's /tmp, read-only as before
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | flags)
        os.close(fd)
    for folder in ("/tmp/home", "/tmp/ipython", "/tmp/mpl", "/tmp/cache", "/tmp/runtime"):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if uid is not None:
            os.chown(folder, uid, uid)
    _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)  # the template's root is shared: not writable here
    _mount("none", "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    source = os.path.join(spec["job_dir"], "in")
    for root, _dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        target_dir = os.path.normpath(os.path.join("/submission", rel))
        os.makedirs(target_dir, exist_ok=True)
        for name in files:
            shutil.copyfile(os.path.join(root, name), os.path.join(target_dir, name))
    if uid is not None:
        for root, dirs, files in os.walk("/submission"):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, uid, uid)


def _proportional_bytes(process) -> int:
    """The process's proportional share of the memory it uses (PSS), so that pages a fork shares with its
    parent count once; its resident size where PSS cannot be read, 0 once it has ended. Costs milliseconds
    for a process that has imported torch (the kernel walks every mapping): see ``_Usage.sample``."""
    try:
        return process.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        try:
            return process.memory_info().rss
        except psutil.Error:
            return 0
    except psutil.Error:
        return 0


def _tmpfs_bytes() -> int:
    used = 0
    for folder in ("/submission", "/tmp", "/records", "/dev/shm", "/dev"):
        info = os.statvfs(folder)
        used += (info.f_blocks - info.f_bfree) * info.f_frsize
    return used


def _unmapped_shared_bytes(processes) -> int:
    """In-memory files no tmpfs holds and no resident size shows: memfd files (counted once each, by their
    blocks) and the job's System V shared memory (its IPC namespace's, attached or not)."""
    total, seen = 0, set()
    for process in processes:
        try:
            fds = os.listdir(f"/proc/{process.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{process.pid}/fd/{fd}").startswith("/memfd:"):
                    info = os.stat(f"/proc/{process.pid}/fd/{fd}")
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
            except OSError:
                continue
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/sysvipc/shm") as handle:
            header = handle.readline().split()
            column = header.index("rss")
            total += sum(int(line.split()[column]) for line in handle if line.strip())
    return total


class _Usage:
    """CPU time, memory and tasks of every process of the job (this supervisor excluded).

    With a cgroup (``runner.cgroups``) Linux counts them: CPU time of every process the job ever had, however
    it ended; anonymous memory plus every in-memory file (tmpfs, memfd, shared memory); tasks. Without one,
    the supervisor counts by itself: each process's CPU time as last seen (a process reaped without a
    trace, e.g. under ``SIGCHLD`` ignored, still counts up to its last sample), and memory cheaply: the
    resident sizes (plus the tmpfs folders, memfd files and System V segments) bound the PSS from above,
    so while that sum is under the limit, so is the PSS; only when it is not, and every ``PSS_SECONDS`` for
    the reported peak, is the PSS itself read.
    """

    PSS_SECONDS = 0.5

    def __init__(self, isolate: bool, session: int, memory_limit: int, cgroup: JobCgroup | None = None):
        self.isolate, self.session, self.memory_limit = isolate, session, memory_limit
        self.cgroup = cgroup if cgroup is not None and cgroup.active else None
        self.cpu_seconds = self.peak_memory = self.memory = 0.0
        self.tasks = 0
        self.oom_kills = 0
        self._pss_at = float("-inf")
        self._last_cpu: dict[tuple[int, float], float] = {}  # (pid, start time) -> its own CPU time, last seen
        self._ended_cpu = 0.0

    def _processes(self) -> list:
        """The job's processes (psutil), this supervisor excluded: all of its pid namespace, or its kernel's session."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.pid != os.getpid() and (self.isolate or os.getsid(process.pid) == self.session):
                    found.append(process)
            except (OSError, psutil.Error):
                continue  # it ended while we looked
        return found

    def sample(self) -> None:
        if self.cgroup is not None:
            self._sample_cgroup()
        else:
            self._sample_processes()
        self.peak_memory = max(self.peak_memory, self.memory)

    def _sample_cgroup(self) -> None:
        cgroup = self.cgroup
        own = os.times()
        cpu = cgroup.cpu_seconds()
        tasks = cgroup.tasks()
        if cpu is None or tasks is None:
            self._sample_processes(memory=False)
        if cpu is not None:  # minus this supervisor's own (it is in the job's cgroup)
            self.cpu_seconds = max(self.cpu_seconds, cpu - own.user - own.system)
        if tasks is not None:  # less this supervisor and the process that forked it (both in the cgroup)
            self.tasks = max(0, tasks - 2)
        self.memory = cgroup.memory()
        self.oom_kills = cgroup.oom_kills()

    def _sample_processes(self, memory: bool = True) -> None:
        cpu = resident = tasks = 0.0
        processes, alive = [], {}
        for process in self._processes():
            try:
                with process.oneshot():
                    times = process.cpu_times()  # its children's too, once it has reaped them
                    cpu += times.user + times.system + times.children_user + times.children_system
                    alive[(process.pid, process.create_time())] = times.user + times.system
                    resident += process.memory_info().rss
                    tasks += process.num_threads()
                processes.append(process)
            except psutil.Error:
                continue  # it ended while we looked
        for key in set(self._last_cpu) - set(alive):  # ended since the last sample: its last own CPU time
            self._ended_cpu += self._last_cpu.pop(key)
        self._last_cpu.update(alive)
        reaped = os.times()  # what this supervisor reaped (orphans, as pid 1)
        by_waits = cpu + reaped.children_user + reaped.children_system
        by_processes = self._ended_cpu + sum(alive.values())
        self.cpu_seconds = max(self.cpu_seconds, by_waits, by_processes)
        self.tasks = int(tasks)
        if not memory:
            return
        files = _tmpfs_bytes() + _unmapped_shared_bytes(processes) if self.isolate else 0
        self.memory = resident + files
        now = time.monotonic()
        if self.memory > self.memory_limit or now - self._pss_at >= self.PSS_SECONDS:
            self._pss_at = now
            self.memory = sum(_proportional_bytes(process) for process in processes) + files

    def over(self, limits: dict) -> str | None:
        if self.cpu_seconds > limits["cpu_seconds"]:
            return "cpu"
        if self.memory > limits["memory_bytes"] or self.oom_kills:
            return "memory"
        if self.tasks > limits["nproc"]:
            return "nproc"
        return None


def _kill_all(isolate: bool, kernel: int) -> None:
    try:
        if isolate:
            os.kill(-1, signal.SIGKILL)  # pid 1 of the namespace: every process in it but this one
        else:
            os.killpg(kernel, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.01)
        except ChildProcessError:
            return


def _copy_records_out(spec: dict, out_dir: str) -> str | None:
    """Copy the record file out of the jail if it is a regular file under the cap; else say why not."""
    path = os.path.join("/records" if spec.get("isolate") else spec["records_dir"], RECORD_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"the record file could not be opened safely ({error.strerror}); was it replaced by a link?"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "the record file is not a regular file"
        cap = spec["limits"]["record_bytes"]
        if info.st_size > cap:
            return f"the record file is {info.st_size // 2**20} MiB, over the {cap // 2**20} MiB limit"
        data = handle.read(cap + 1)
    with open(os.path.join(out_dir, RECORD_FILE), "wb") as out:
        out.write(data)
    return None


def _relay_for(spec: dict, kernel_file: str) -> Relay:
    """Listen where the grader connects (the connection file it wrote) and write the kernel's own connection
    file, whose sockets are abstract ones in the job's network namespace (``runner.relay`` says why)."""
    with open(spec["connection_file"]) as handle:
        info = json.load(handle)
    kernel_ip = f"{KERNEL_SOCKETS}-{os.path.basename(spec['job_dir'])}"
    listen = {f"{info['ip']}-{info[port]}": "\0" + f"{kernel_ip}-{info[port]}"[1:] for port in CHANNELS}
    relay = Relay(listen, spec["limits"]["message_bytes"], spec.get("traffic_bytes", 2**62))
    fd = os.open(kernel_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(info, ip=kernel_ip), handle)
    return relay


def _supervise(spec: dict, control: int, cgroup: JobCgroup | None = None) -> int:
    """pid 1 of the job: start the kernel, relay its messages, watch it, clean up, report. Returns the exit code."""
    os.chdir("/")
    isolate = spec.get("isolate")
    if isolate:
        _setup_job_filesystem(spec)
        if os.geteuid() == 0 and spec.get("uid") is not None:  # never the OOM killer's choice (root only)
            with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
                handle.write("-1000")
    kernel_file = os.path.join(spec["job_dir"], "ipc", "kernel-side.json")
    relay = _relay_for(spec, kernel_file)
    kernel = os.fork()
    if kernel == 0:
        try:  # the relay's sockets are closed with every other descriptor (_kernel)
            if not isolate:
                os.setsid()
            _kernel(dict(spec, kernel_connection_file=kernel_file))
        finally:
            os._exit(0)
    usage = _Usage(isolate, kernel, spec["limits"]["memory_bytes"], cgroup)
    status, killed_for, stopped = None, None, False
    relay.watch(control)
    next_sample = time.monotonic()
    while status is None:
        ready = relay.step(max(0.0, next_sample - time.monotonic()))
        if control in ready:
            stopped = True
            break
        if relay.violation:
            killed_for = relay.violation  # "message" (over message_bytes), "protocol" or "traffic"
            break
        if time.monotonic() < next_sample:
            continue
        next_sample = time.monotonic() + POLL_SECONDS
        try:
            while True:  # reap: the kernel, and (as pid 1) any orphan
                pid, code = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == kernel:
                    status = code
        except ChildProcessError:
            break
        usage.sample()
        killed_for = usage.over(spec["limits"])
        if killed_for:
            break
    _kill_all(isolate, kernel)
    relay.close()
    usage.sample()
    if killed_for is None and usage.oom_kills:
        killed_for = "memory"
    out_dir = os.path.join(spec["job_dir"], "out")
    report = {
        "exit": None if status is None else os.waitstatus_to_exitcode(status),
        "killed_for": killed_for,
        "stopped": stopped,
        "cpu_seconds": round(usage.cpu_seconds, 3),
        "peak_memory": int(usage.peak_memory),
        "cgroup": usage.cgroup is not None,
        "record_problem": _copy_records_out(spec, out_dir),
    }
    with open(os.path.join(out_dir, "status.json"), "w") as handle:
        json.dump(report, handle)
    return 0


def _job(spec: dict, control: int) -> None:
    """The forked child of the template: join the job's cgroup, enter its namespaces, run its supervisor as pid 1."""
    os.setsid()
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(spec["job_dir"], "out", "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if not spec.get("isolate"):
        os._exit(_supervise(spec, control))
    cgroup = JobCgroup(os.path.basename(spec["job_dir"]))
    if cgroup.active:
        limits = spec["limits"]
        cgroup.create(limits["memory_bytes"], limits["nproc"] + 16)
        cgroup.enter()
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    supervisor = os.fork()
    if supervisor == 0:
        code = 1
        try:
            code = _supervise(spec, control, cgroup)
        except BaseException as error:  # noqa: BLE001 - a setup failure must still leave a status behind
            with open(os.path.join(spec["job_dir"], "out", "status.json"), "w") as handle:
                json.dump(
                    {"exit": None, "killed_for": None, "stopped": False, "setup_error": repr(error)[:500]}, handle
                )
        finally:
            os._exit(code)
    _, status = os.waitpid(supervisor, 0)
    os._exit(os.waitstatus_to_exitcode(status))


# ---------------------------------------------------------------- the template's loop


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> None:
    """Read start/stop requests on stdin until it closes; report each job's start and end on stdout."""
    _warm_imports()
    gc.collect()
    gc.freeze()  # the imports' objects: never scanned by a kernel's collector, so never copied on write
    jobs: dict[int, tuple[str, int]] = {}  # pid -> (job id, write end of its control pipe)
    by_job: dict[str, int] = {}
    stdin = sys.stdin.fileno()
    buffer = b""
    _emit({"event": "ready", "pid": os.getpid()})
    exits: set[int] = set()  # a pidfd per job: readable the moment the job ends (no polling delay)
    leftover: list[JobCgroup] = []  # cgroups of ended jobs, removed once empty
    while True:
        ready, _, _ = select.select([stdin, *exits], [], [], POLL_SECONDS)
        for fd in exits.intersection(ready):
            os.close(fd)
            exits.discard(fd)
        if stdin in ready:
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                if request["op"] == "start":
                    read_end, write_end = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(write_end)
                        try:
                            _job(request["spec"], read_end)
                        except BaseException:  # noqa: BLE001 - say why in the job's log, then fail the job
                            import traceback

                            traceback.print_exc()
                            sys.stderr.flush()
                        finally:
                            os._exit(1)
                    os.close(read_end)
                    with contextlib.suppress(AttributeError, OSError):  # Linux >= 5.3; else the poll finds it
                        exits.add(os.pidfd_open(pid))
                    jobs[pid] = (request["job"], write_end)
                    by_job[request["job"]] = pid
                    _emit({"job": request["job"], "event": "started", "pid": pid})
                elif request["op"] == "stop" and request["job"] in by_job:
                    _, write_end = jobs[by_job[request["job"]]]
                    try:
                        os.write(write_end, b"x")
                    except OSError:
                        pass
        while jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in jobs:
                job, write_end = jobs.pop(pid)
                by_job.pop(job, None)
                os.close(write_end)
                leftover.append(JobCgroup(job))
                _emit({"job": job, "event": "exited", "status": os.waitstatus_to_exitcode(status)})
        leftover = [cgroup for cgroup in leftover if not cgroup.remove()]  # once its last process is gone


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve()
