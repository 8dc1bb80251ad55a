"""Kernels forked from the kernel template (``runner.template``), driven through jupyter_client.

    >>> template = Template.shared(sandboxed=True, limits=JobLimits())   # one per worker process  # doctest: +SKIP
    >>> km = template_kernel_manager(template, spec)                     # then nbclient as usual  # doctest: +SKIP

``Template`` starts the template (jailed by bubblewrap, or plain with ``sandboxed=False``) and reads its
events on a thread; jailed, it gets cgroup folders for its jobs where the grader may make them
(``runner.cgroups``). ``TemplateProvisioner`` is jupyter_client's extension point for "start this kernel my
way" (a ``KernelProvisionerBase``): its kernel is a job of that template, which speaks ZMQ over unix sockets
(``transport="ipc"``) in the job's spool folder, the only thing the grader and the jail share; behind them
is the job's supervisor, which relays each message and refuses one over the job's ``message_bytes`` before
the grader reads any of it (``runner.relay``). The kernel manager itself is jupyter_client's own, given the
provisioner and ``QuickReadyClient``, whose channels count every message they receive (``Meter``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty

from jupyter_client import protocol_version_info
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Any, Type

from course_utils.grading.runner import cgroups
from course_utils.grading.runner.relay import MESSAGE_COST
from course_utils.grading.runner.sandbox import (
    JobLimits,
    SandboxUnavailable,
    mode,
    template_argv,
    template_command,
    template_pythonpath,
)

READY_TIMEOUT = 180.0
#: where spool folders go: never under /tmp, which every job covers with a tmpfs of its own
SPOOL_PARENT = "/var/tmp" if os.access("/var/tmp", os.W_OK) else os.path.expanduser("~")


class JobHandle:
    """What jupyter_client's provisioner needs of a kernel "process": poll, wait, kill (a template job)."""

    def __init__(self, template: Template, job: str, pid: int):
        self.template, self.job, self.pid = template, job, pid
        self.returncode: int | None = None
        self._started = threading.Event()
        self._done = threading.Event()

    def _exited(self, status: int) -> None:
        self.returncode = status
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"kernel job {self.job}", timeout)
        return self.returncode

    def kill(self) -> None:
        self.template.stop(self.job)

    terminate = kill

    def send_signal(self, signum: int) -> None:
        self.template.stop(self.job)  # interrupts go through the control channel; any signal here means stop


#: bwrap's --die-with-parent (PR_SET_PDEATHSIG) kills the jail when the *thread* that started it ends, so
#: every template is started from this one thread, which lives as long as the process
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="template-launcher")


class Template:
    """A running kernel template and its jobs (see ``grading.template``)."""

    _shared: dict = {}
    _shared_lock = threading.Lock()  # the workers of an in-process cluster share one template

    def __init__(self, sandboxed: bool, limits: JobLimits):
        self.sandboxed = sandboxed
        remove_stale_spools()
        self.spool = Path(tempfile.mkdtemp(prefix="cg-", dir=SPOOL_PARENT))  # short: unix socket paths <= 107 bytes
        os.chmod(self.spool, 0o700)
        (self.spool / "owner").write_text(str(os.getpid()))
        self.cgroups = cgroups.template_cgroups(f"{os.getpid()}-{self.spool.name}") if sandboxed else {}
        argv = template_command(self.spool, limits, cgroups=self.cgroups) if sandboxed else template_argv()
        env = None if sandboxed else _plain_template_env(limits)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.spool / "template.log", "ab"),
            env=env,
            cwd="/",
        )
        self._jobs: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._ended = False  # its stdout closed: the template is gone (set before _ready, so start-up stops waiting)
        self._reader = threading.Thread(target=self._read_events, daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT) or self._ended or self.process.poll() is not None:
            log = (self.spool / "template.log").read_text(errors="replace")[-1500:]
            self.close()
            raise SandboxUnavailable(f"the kernel template did not start: {log}")

    @classmethod
    def shared(cls, sandboxed: bool, limits: JobLimits) -> Template:
        """This process's template for ``sandboxed`` (started on first use, started again if it died); every
        worker thread of the process uses the same one."""
        key = (sandboxed, limits.threads)
        with cls._shared_lock:
            template = cls._shared.get(key)
            if template is None or template.process.poll() is not None:
                template = cls._shared[key] = _LAUNCHER.submit(cls, sandboxed, limits).result()
            return template

    @classmethod
    def close_shared(cls) -> None:
        """Close this process's templates (they start again on next use)."""
        with cls._shared_lock:
            templates, cls._shared = list(cls._shared.values()), {}
        for template in templates:
            template.close()

    def _read_events(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                self._ready.set()
            elif event.get("event") == "exited":
                with self._lock:
                    handle = self._jobs.pop(event["job"], None)
                if handle is not None:
                    handle._exited(event["status"])
            elif event.get("event") == "started":
                with self._lock:
                    handle = self._jobs.get(event["job"])
                if handle is not None:
                    handle.pid = event["pid"]
                    handle._started.set()
        self._ended = True
        self._ready.set()  # a template that dies while starting is reported now, not after READY_TIMEOUT
        with self._lock:  # the template is gone: so is every kernel it held
            handles, self._jobs = list(self._jobs.values()), {}
        for handle in handles:
            handle._exited(-9)

    def _send(self, request: dict) -> None:
        with self._lock:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()

    def new_job_dir(self) -> Path:
        """A fresh folder in the spool for one job: in/ (files to copy in), ipc/ (sockets), out/ (results)."""
        job_dir = self.spool / uuid.uuid4().hex[:12]
        for sub in ("in", "ipc", "out"):
            (job_dir / sub).mkdir(parents=True, mode=0o700)
        return job_dir

    def start(self, spec: dict) -> JobHandle:
        job = Path(spec["job_dir"]).name
        handle = JobHandle(self, job, -1)
        with self._lock:
            self._jobs[job] = handle
        self._send({"op": "start", "job": job, "spec": spec})
        if not handle._started.wait(60):
            raise RuntimeError("the kernel template did not start the job")
        return handle

    def stop(self, job: str) -> None:
        try:
            self._send({"op": "stop", "job": job})
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.spool, ignore_errors=True)
        cgroups.remove(self.cgroups)


def remove_stale_spools() -> None:
    """Remove spool folders whose grading process is gone (a worker that was killed could not clean up)."""
    for folder in Path(SPOOL_PARENT).glob("cg-*"):
        try:
            if folder.stat().st_uid != os.geteuid():
                continue
            os.kill(int((folder / "owner").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue


atexit.register(Template.close_shared)


def _plain_template_env(limits: JobLimits) -> dict[str, str]:
    """The unsandboxed template's environment: only what Python and the libraries need."""
    threads = str(limits.threads)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")}
    return {
        **keep,
        "PYTHONPATH": template_pythonpath(),
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
    }


class Meter:
    """Every message a kernel sends, counted on arrival (its frames' bytes and a fixed cost each), before it
    is parsed: status and execute_input messages, replies and messages meant for no cell alike. Past
    ``budget``, or on a message that cannot be parsed (e.g. JSON nested too deep, a bad signature), the
    channels drop what comes (unparsed) and ``tripped`` says why; ``grading.execute`` stops the kernel."""

    def __init__(self, budget: int = 2**62):
        self.budget, self.used, self.messages = budget, 0, 0
        self.tripped: str | None = None  # "traffic" or "malformed"

    def count(self, frames) -> bool:
        """Count one message; False when it must be dropped unparsed."""
        self.messages += 1
        self.used += MESSAGE_COST + sum(len(frame) for frame in frames)
        if self.used > self.budget and self.tripped is None:
            self.tripped = "traffic"
        return self.tripped is None


#: what a channel hands nbclient in place of a message it dropped: a reply to nobody, so it is ignored
_DROPPED = {
    "header": {"msg_type": "dropped", "msg_id": ""},
    "msg_id": "",
    "msg_type": "dropped",
    "parent_header": {},
    "metadata": {},
    "content": {},
    "buffers": [],
}


class CountedChannel(AsyncZMQSocketChannel):
    """jupyter_client's channel, counting each message against the client's ``Meter`` before parsing it."""

    meter: Meter | None = None

    async def _recv(self, **kwargs) -> dict:
        frames = await self.socket.recv_multipart(**kwargs)
        meter = self.meter
        if meter is not None and not meter.count(frames):
            return dict(_DROPPED, header=dict(_DROPPED["header"]))
        _, smsg = self.session.feed_identities(frames)
        try:
            return self.session.deserialize(smsg)
        except (RecursionError, ValueError, TypeError, KeyError, UnicodeDecodeError):
            if meter is not None and meter.tripped is None:
                meter.tripped = "malformed"
            return dict(_DROPPED, header=dict(_DROPPED["header"]))


class QuickReadyClient(AsyncKernelClient):
    """jupyter_client's client, except that "ready" does not end with 0.2 s of silence on IOPub, and that its
    channels count every message (``meter``, a ``Meter``).

    jupyter_client's ``wait_for_ready`` gets a kernel_info reply, then waits up to 0.2 s for one IOPub
    message (so the IOPub subscription is known to be live; the first status messages usually go out
    before it is, so this wait mostly times out and the request is sent again), then discards IOPub
    messages until none has come for 0.2 s: idle time in every notebook's grading (timed in
    docs/performance.md). Here the same two proofs of life, asked for every 20 ms, then only what has already arrived
    is discarded; a late startup message is harmless, since nbclient reads only replies to its own requests.
    """

    shell_channel_class = Type(CountedChannel)
    iopub_channel_class = Type(CountedChannel)
    stdin_channel_class = Type(CountedChannel)
    control_channel_class = Type(CountedChannel)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.meter = Meter()

    def _metered(self, channel):
        if channel is not None:
            channel.meter = self.meter
        return channel

    @property
    def shell_channel(self):
        return self._metered(super().shell_channel)

    @property
    def iopub_channel(self):
        return self._metered(super().iopub_channel)

    @property
    def stdin_channel(self):
        return self._metered(super().stdin_channel)

    @property
    def control_channel(self):
        return self._metered(super().control_channel)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # IOPub is connected; if not yet, ask again soon (each request brings status messages)
                    await self.iopub_channel.get_msg(timeout=0.02)
                except Empty:
                    pass
                else:
                    self._adapt_protocol(reply)
                    break
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=0.005)
            except Empty:
                break

    def _adapt_protocol(self, reply: dict) -> None:
        """Speak the kernel's protocol version (what jupyter_client does with a kernel_info reply)."""
        major = protocol_version_info[0]
        try:
            version = int(str(reply["content"].get("protocol_version", major)).split(".")[0])
        except ValueError:
            version = major
        if version != major:
            self.session.adapt_version = version


class TemplateProvisioner(KernelProvisionerBase):
    """jupyter_client's kernel provisioner for a kernel that is a job of a ``Template`` (``job``: the job's spec,
    without its connection file). Signals, kills and terminations all stop the job: interrupts go through the
    control channel (``interrupt_mode = "message"``)."""

    template = Any()
    job = Any()
    handle: JobHandle | None = None

    @property
    def has_process(self) -> bool:
        return self.handle is not None

    async def poll(self) -> int | None:
        return self.exit_status()

    async def wait(self) -> int | None:
        return None if self.handle is None else await asyncio.to_thread(self.handle.wait, None)

    async def send_signal(self, signum: int) -> None:
        self.stop_now()

    async def kill(self, restart: bool = False) -> None:
        self.stop_now()

    async def terminate(self, restart: bool = False) -> None:
        self.stop_now()

    async def pre_launch(self, **kwargs) -> dict:
        self.kernel_spec.interrupt_mode = "message"
        self.parent.write_connection_file()
        self.connection_info = self.parent.get_connection_info()
        return await super().pre_launch(cmd=[], **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs) -> dict:
        self.handle = self.template.start(dict(self.job, connection_file=self.parent.connection_file))
        self.pid = self.handle.pid
        return self.connection_info

    async def cleanup(self, restart: bool = False) -> None:
        pass

    # ---- what the grader asks of a job beyond jupyter_client's needs
    def exit_status(self) -> int | None:
        return None if self.handle is None else self.handle.poll()

    def stop_now(self) -> None:
        if self.handle is not None and self.handle.poll() is None:
            self.handle.kill()

    def wait_stopped(self, timeout: float = 30.0) -> int | None:
        """Wait for the job to end (its supervisor writes status.json and the records first)."""
        if self.handle is None:
            return None
        try:
            return self.handle.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def template_kernel_manager(template: Template, job: dict) -> tuple[AsyncKernelManager, TemplateProvisioner]:
    """jupyter_client's kernel manager for one job of ``template``, and the provisioner that runs it."""
    ipc = Path(job["job_dir"]) / "ipc"
    km = AsyncKernelManager(
        kernel_name="python3",
        transport="ipc",
        ip=str(ipc / "k"),
        connection_file=str(ipc / "kernel.json"),
        client_factory=QuickReadyClient,
        autorestart=False,
    )
    km.provisioner = TemplateProvisioner(
        kernel_id=Path(job["job_dir"]).name, kernel_spec=km.kernel_spec, parent=km, template=template, job=job
    )
    return km, km.provisioner


__all__ = [
    "JobHandle",
    "Meter",
    "QuickReadyClient",
    "Template",
    "TemplateProvisioner",
    "template_kernel_manager",
    "mode",
]
