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

from course_utils.records import FILE_NAME as RECORD_FILE

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 38, 4, 24
POLL_SECONDS = 0.05

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def _warm_imports() -> None:
    """Everything a notebook and the kernel import, loaded once here (no thread or OpenMP pool starts)."""
    import ipykernel.debugger  # noqa: F401 - debugpy and pydevd: 0.13 s of every kernel's start, else
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


def _drop_privileges(spec: dict) -> None:
    """Become the job's uid (or a capability-less uid 0 without root), with rlimits and no way back."""
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
        for cap in range(64):  # uid 0 of a user namespace: empty the bounding set, then the sets themselves
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _submission_joins_path_at_first_cell(shell) -> None:
    def first_cell(*_):
        if "" not in sys.path:
            sys.path.insert(0, "")
        shell.events.unregister("pre_run_cell", first_cell)

    shell.events.register("pre_run_cell", first_cell)


def _kernel(spec: dict) -> None:
    """Run ipykernel in this process: bind, detach the spool, drop privileges, then serve."""
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
    app.initialize(["-f", spec["connection_file"], "--IPKernelApp.quiet=True", "--HistoryManager.enabled=False"])
    _submission_joins_path_at_first_cell(app.shell)
    if spec.get("isolate"):  # a mount namespace of its own, without the spool (the sockets are bound already)
        _check(_libc.unshare(CLONE_NEWNS), "unshare the kernel's mounts")
        _check(_libc.umount2(spec["spool"].encode(), MNT_DETACH), "detach the spool")
    _drop_privileges(spec)
    app.start()


# ---------------------------------------------------------------- the supervisor (pid 1 of the job)


def _read_only_under_tmp() -> list[str]:
    """The jail's read-only folders (venv, course_utils, data) that lie under /tmp, e.g. in a clone made with
    ``mktemp -d``: each job's own /tmp tmpfs would hide them from its kernel."""
    from course_utils.grading.runner.sandbox import read_only_paths
    return [str(path) for path in read_only_paths() if str(path).startswith("/tmp/")]


def _setup_job_filesystem(spec: dict) -> None:
    """Private tmpfs folders for everything the job may write, with the submission's files copied in."""
    limits, uid = spec["limits"], spec.get("uid")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
    under_tmp = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY), os.statvfs(path).f_flag & 0xF)
                 for path in _read_only_under_tmp()]
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    for folder, size in (("/submission", limits["disk_bytes"]), ("/tmp", limits["disk_bytes"]),
                         ("/records", limits["record_bytes"] + 2**20), ("/dev/shm", limits["disk_bytes"] // 4)):
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700{owner}")
    for path, fd, flags in under_tmp:   # back on top of the job's /tmp, read-only as before
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | flags)
        os.close(fd)
    for folder in ("/tmp/home", "/tmp/ipython", "/tmp/mpl", "/tmp/cache", "/tmp/runtime"):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if uid is not None:
            os.chown(folder, uid, uid)
    _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)  # the template's root is shared: not writable here
    source = os.path.join(spec["job_dir"], "in")
    for root, dirs, files in os.walk(source):
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
    for folder in ("/submission", "/tmp", "/records", "/dev/shm"):
        info = os.statvfs(folder)
        used += (info.f_blocks - info.f_bfree) * info.f_frsize
    return used


class _Usage:
    """CPU time, memory and tasks of every process of the job's namespace (this supervisor excluded).

    Memory is checked against the limit at every sample, cheaply: the processes' resident sizes (plus the
    tmpfs folders) bound their PSS from above, so while that sum is under the limit, so is the PSS. Only
    when it is not, and every ``PSS_SECONDS`` for the reported peak, is the PSS itself read (4 ms per
    sample of a kernel that has imported torch: at every sample, that was a tenth of a submission's CPU).
    """

    PSS_SECONDS = 0.5

    def __init__(self, isolate: bool, session: int, memory_limit: int):
        self.isolate, self.session, self.memory_limit = isolate, session, memory_limit
        self.cpu_seconds = self.peak_memory = self.memory = 0.0
        self.tasks = 0
        self._pss_at = float("-inf")

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
        cpu = resident = tasks = 0.0
        processes = []
        for process in self._processes():
            try:
                with process.oneshot():
                    times = process.cpu_times()   # its children's too, once it has reaped them
                    cpu += times.user + times.system + times.children_user + times.children_system
                    resident += process.memory_info().rss
                    tasks += process.num_threads()
                processes.append(process)
            except psutil.Error:
                continue  # it ended while we looked
        reaped = os.times()   # what this supervisor reaped (orphans, as pid 1)
        self.cpu_seconds = max(self.cpu_seconds, cpu + reaped.children_user + reaped.children_system)
        files = _tmpfs_bytes() if self.isolate else 0
        self.memory = resident + files
        now = time.monotonic()
        if self.memory > self.memory_limit or now - self._pss_at >= self.PSS_SECONDS:
            self._pss_at = now
            self.memory = sum(_proportional_bytes(process) for process in processes) + files
            self.peak_memory = max(self.peak_memory, self.memory)
        self.tasks = int(tasks)

    def over(self, limits: dict) -> str | None:
        if self.cpu_seconds > limits["cpu_seconds"]:
            return "cpu"
        if self.memory > limits["memory_bytes"]:
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


def _supervise(spec: dict, control: int) -> int:
    """pid 1 of the job: start the kernel, watch it, clean up, report. Returns the exit code."""
    os.chdir("/")
    isolate = spec.get("isolate")
    if isolate:
        _setup_job_filesystem(spec)
    kernel = os.fork()
    if kernel == 0:
        try:
            if not isolate:
                os.setsid()
            _kernel(spec)
        finally:
            os._exit(0)
    usage = _Usage(isolate, kernel, spec["limits"]["memory_bytes"])
    status, killed_for, stopped = None, None, False
    while status is None:
        ready, _, _ = select.select([control], [], [], POLL_SECONDS)
        if ready:
            stopped = True
            break
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
    usage.sample()
    out_dir = os.path.join(spec["job_dir"], "out")
    report = {"exit": None if status is None else os.waitstatus_to_exitcode(status), "killed_for": killed_for,
              "stopped": stopped, "cpu_seconds": round(usage.cpu_seconds, 3), "peak_memory": int(usage.peak_memory),
              "record_problem": _copy_records_out(spec, out_dir)}
    with open(os.path.join(out_dir, "status.json"), "w") as handle:
        json.dump(report, handle)
    return 0


def _job(spec: dict, control: int) -> None:
    """The forked child of the template: enter the job's namespaces and run its supervisor as pid 1."""
    os.setsid()
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(spec["job_dir"], "out", "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if not spec.get("isolate"):
        os._exit(_supervise(spec, control))
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    supervisor = os.fork()
    if supervisor == 0:
        code = 1
        try:
            code = _supervise(spec, control)
        except BaseException as error:  # noqa: BLE001 - a setup failure must still leave a status behind
            with open(os.path.join(spec["job_dir"], "out", "status.json"), "w") as handle:
                json.dump({"exit": None, "killed_for": None, "stopped": False, "setup_error": repr(error)[:500]},
                          handle)
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
    jobs: dict[int, tuple[str, int]] = {}   # pid -> (job id, write end of its control pipe)
    by_job: dict[str, int] = {}
    stdin = sys.stdin.fileno()
    buffer = b""
    _emit({"event": "ready", "pid": os.getpid()})
    exits: set[int] = set()   # a pidfd per job: readable the moment the job ends (no polling delay)
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
                _emit({"job": job, "event": "exited", "status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve()
