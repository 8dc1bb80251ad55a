"""Run one notebook in a kernel forked from the template, as far as it gets, and say which limit stopped it.

    >>> result = run_notebook(nb, template, spec, JobLimits())  # doctest: +SKIP
    >>> result.stopped_by   # None, or e.g. "cell time limit (120 s) in cell 7"  # doctest: +SKIP

What a notebook shows counts against its output budget (outputs, display updates once per output they
change, comms and errors alike; past it, later output is dropped with a note); every message the kernel
sends, status and replies included, counts against its traffic budget (``traffic_budget``; past it, the
kernel is stopped). The grader keeps no widget or comm state, and the graded notebook never grows past the
notebook size limit (checked once per run, cell by cell).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, DeadKernelError

from course_utils.grading.runner.provisioner import Template, template_kernel_manager
from course_utils.grading.runner.sandbox import JobLimits

#: what nbclient writes into a cell that ran past the cell timeout (the kernel is interrupted, grading goes on)
TIMEOUT_ERROR = {
    "ename": "CellTimeoutError",
    "evalue": "",
    "traceback": ["CellTimeoutError: the cell ran past the time limit and was interrupted"],
}
MEMORY_SIGNS = ("MemoryError", "can't allocate memory", "std::bad_alloc", "Cannot allocate memory")
METER_POLL_SECONDS = 0.05
#: iopub messages that carry what a notebook shows (and so count against the output budget)
COUNTED = (
    "stream",
    "display_data",
    "update_display_data",
    "execute_result",
    "error",
    "comm_open",
    "comm_msg",
    "clear_output",
)
#: traffic allowed per code cell beyond outputs: its status, execute_input and reply messages
CELL_TRAFFIC = 16 * 1024
SIGNAL_NAMES = {6: "SIGABRT", 7: "SIGBUS", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ"}


def traffic_budget(limits: JobLimits, code_cells: int) -> int:
    """Every byte a kernel may send in all, each message costing ``MESSAGE_COST`` more (what it costs the
    grader to read one, however small): twice its largest message, eight times its output budget (message
    headers, output it prints past the budget, which is dropped) and a fixed allowance per code cell.
    It bounds both the grader's work for one kernel and what its ZMQ queues can ever hold of it.

        >>> traffic_budget(JobLimits(message_bytes=2**20, output_bytes=2**10), 2)
        2138112
    """
    return 2 * limits.message_bytes + 8 * limits.output_bytes + CELL_TRAFFIC * code_cells


@dataclass
class Execution:
    """What running one notebook produced."""

    notebook: nbformat.NotebookNode
    seconds: float
    limits_hit: list[str] = field(default_factory=list)
    kernel_died: bool = False
    status: dict = field(default_factory=dict)  # the supervisor's report (see grading.template)

    @property
    def stopped_by(self) -> str | None:
        """A sentence for the learner naming every limit the run hit, or None."""
        return "; ".join(self.limits_hit) or None


class CappedClient(NotebookClient):
    """A NotebookClient that counts what each message adds to the notebook against ``output_bytes`` and keeps
    no comm state."""

    def __init__(self, nb, output_bytes: int, **kw):
        super().__init__(nb, store_widget_state=False, **kw)
        self.comm_open_handlers = {}
        self.output_budget = output_bytes
        self.output_dropped = self.malformed_dropped = False

    async def _check_raise_for_error(self, cell, cell_index, exec_reply):
        content = (exec_reply or {}).get("content", {})
        if content.get("ename") == TIMEOUT_ERROR["ename"]:  # nbclient reports it in the reply only
            cell.outputs.append(nbformat.v4.new_output("error", **TIMEOUT_ERROR))
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    def _spend(self, cost: int, cell) -> bool:
        """Take ``cost`` bytes from the output budget; False (and a note, once) when it is spent."""
        self.output_budget -= cost
        if self.output_budget >= 0:
            return True
        if not self.output_dropped and cell is not None:
            cell.outputs.append(
                nbformat.v4.new_output(
                    "stream", name="stderr", text="[grader] output limit reached: further output dropped\n"
                )
            )
        self.output_dropped = True
        return False

    def process_message(self, msg, cell, cell_index):
        if msg.get("msg_type") in COUNTED:
            cost = len(json.dumps(msg.get("content", {}), default=str)) + sum(len(b) for b in msg.get("buffers") or [])
            if not self._spend(cost, cell):
                return None
        if msg.get("msg_type", "").startswith("comm"):
            return None  # widgets are not graded: their messages are counted above, never kept
        self._current_cell = cell
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            raise
        except Exception:  # content the notebook format refuses (an execution count "x"...): dropped, noted
            if not self.malformed_dropped:
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "stream", name="stderr", text="[grader] an output not in the notebook format was dropped\n"
                    )
                )
            self.malformed_dropped = True
            return None

    def _update_display_id(self, display_id, msg) -> None:
        """nbclient copies a display update into every earlier output with its id: each copy counts."""
        targets = sum(len(indices) for indices in self._display_id_map.get(display_id, {}).values())
        if targets:
            data = msg.get("content", {}).get("data", {})
            if not self._spend(targets * len(json.dumps(data, default=str)), getattr(self, "_current_cell", None)):
                return
        super()._update_display_id(display_id, msg)


def _kernel_death_reason(status: int | None, report: dict, limits: JobLimits, stopped: dict) -> str:
    killed_for = report.get("killed_for")
    if killed_for == "cpu":
        return f"CPU-time limit ({limits.cpu_seconds} s for all the kernel's processes): the kernel was stopped"
    if killed_for == "memory":
        return (
            f"memory limit ({limits.memory_bytes // 2**20} MiB for all the kernel's processes and in-memory "
            "files): the kernel was stopped"
        )
    if killed_for == "nproc":
        return f"process limit ({limits.nproc} processes and threads): the kernel was stopped"
    if killed_for == "message":
        return (
            f"message size limit ({limits.message_bytes // 2**20} MiB for one message, all its parts): the "
            "kernel was stopped before the grader read it"
        )
    if killed_for == "traffic" or stopped.get("traffic"):
        return (
            f"output limit ({limits.output_bytes // 1024} KiB): the kernel kept sending messages after that and "
            "was stopped"
        )
    if killed_for == "protocol":
        return "the kernel broke the messaging protocol and was stopped"
    if stopped.get("malformed"):
        return "the kernel sent a message the grader cannot read (e.g. nested too deeply) and was stopped"
    if stopped.get("wall"):
        return f"notebook wall-time limit ({limits.notebook_timeout} s): the kernel was stopped"
    code = report.get("exit")
    if code == -24 or (code == -9 and (report.get("cpu_seconds") or 0) >= limits.cpu_seconds):
        return f"CPU-time limit ({limits.cpu_seconds} s): the kernel was stopped"
    if code is not None and code < 0:
        name = SIGNAL_NAMES.get(-code, f"signal {-code}")
        return f"the kernel was killed by {name} (not by a limit of the grader's: e.g. by its own code)"
    return f"the kernel died (exit status {code if code is not None else status}), e.g. os._exit or a crash"


def _scan_outputs(nb, limits: JobLimits) -> list[str]:
    hits = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('ename')}: {out.get('evalue')}"
            if out.get("ename") == "CellTimeoutError":
                hits.append(f"cell time limit ({limits.cell_timeout} s) in cell {index}")
            elif any(sign in text for sign in MEMORY_SIGNS):
                hits.append(f"memory limit ({limits.memory_bytes // 2**20} MiB) in cell {index}")
    return hits


def _json_bytes(value) -> int:
    return len(json.dumps(value, default=str, ensure_ascii=False, indent=1))


def _cap_notebook_size(nb, limits: JobLimits) -> bool:
    """Drop outputs from the end until the notebook fits ``notebook_bytes``; True if anything was dropped.
    Each cell is measured once (and once more if its outputs go), never the whole notebook per cell."""
    sizes = [_json_bytes(cell) for cell in nb.cells]
    total = sum(sizes) + _json_bytes(nb.metadata) + 256
    dropped = False
    for index in range(len(nb.cells) - 1, -1, -1):
        if total <= limits.notebook_bytes:
            break
        cell = nb.cells[index]
        if cell.get("outputs"):
            cell.outputs = [
                nbformat.v4.new_output(
                    "stream", name="stderr", text="[grader] outputs removed: the notebook grew past its size limit\n"
                )
            ]
            new = _json_bytes(cell)
            total += new - sizes[index]
            sizes[index] = new
            dropped = True
    return dropped


async def _stop_when_tripped(client: CappedClient, job, stopped: dict) -> None:
    """Stop the kernel once its client's meter trips: too much traffic, or a message that cannot be read."""
    meter = client.kc.meter
    while meter.tripped is None:
        await asyncio.sleep(METER_POLL_SECONDS)
    stopped[meter.tripped] = True
    job.stop_now()


async def _execute_cells(client: CappedClient, job, log, stopped: dict, traffic: int) -> bool:
    """Run every code cell; return False if the kernel died on the way. nbclient releases the kernel's
    client, its channels and the manager's ZMQ context at the end (``cleanup_kc``): kept, they pile up in a
    worker (a heartbeat thread, two ZMQ contexts and an atexit hook per notebook)."""
    async with client.async_setup_kernel(stdout=log, stderr=log, cleanup_kc=True):
        client.kc.meter.budget = traffic
        watcher = asyncio.create_task(_stop_when_tripped(client, job, stopped))
        try:
            await client.async_wait_for_reply(client.kc.kernel_info(), None)
            for index, cell in enumerate(client.nb.cells):
                try:
                    await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                except DeadKernelError:
                    return False
        finally:
            watcher.cancel()  # before the kernel's shutdown
    return True


def run_notebook(nb, template: Template, spec: dict, limits: JobLimits) -> Execution:
    """Execute ``nb`` in a kernel the template forks for the job ``spec`` (see ``grading.jobs``); the
    supervisor's report (CPU, memory, the limit that stopped it) lands in the job's ``out/status.json``.
    Never raises for anything the notebook does."""
    traffic = traffic_budget(limits, sum(cell.cell_type == "code" for cell in nb.cells))
    spec = dict(spec, traffic_bytes=traffic)
    km, job = template_kernel_manager(template, spec)
    client = CappedClient(
        nb,
        limits.output_bytes,
        km=km,
        timeout=limits.cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout=TIMEOUT_ERROR,
        record_timing=False,
        startup_timeout=120,
        shutdown_kernel="immediate",
        iopub_timeout=10,
    )
    stopped = {"wall": False, "traffic": False, "malformed": False}  # why the grader stopped the kernel, if it did

    def stop():
        stopped["wall"] = True
        job.stop_now()

    watchdog = threading.Timer(limits.notebook_timeout, stop)
    start = time.perf_counter()
    watchdog.start()
    try:
        with open(f"{spec['job_dir']}/out/client.log", "ab") as log:
            alive = asyncio.run(_execute_cells(client, job, log, stopped, traffic))
    except (DeadKernelError, RuntimeError) as error:  # RuntimeError: died before replying to kernel_info
        alive = False
        client.nb.metadata["grader_error"] = str(error)[:500]
    finally:
        watchdog.cancel()
        job.stop_now()
        status = job.wait_stopped()
    seconds = time.perf_counter() - start
    report = _read_status(spec)
    result = Execution(client.nb, seconds, _scan_outputs(client.nb, limits), not alive, report)
    if not alive or report.get("killed_for") or stopped["traffic"] or stopped["malformed"]:
        result.limits_hit.append(_kernel_death_reason(status, report, limits, stopped))
    if client.output_dropped:
        result.limits_hit.append(f"output limit ({limits.output_bytes // 1024} KiB): later output dropped")
    if _cap_notebook_size(client.nb, limits):
        result.limits_hit.append(f"notebook size limit ({limits.notebook_bytes // 2**20} MiB): outputs removed")
    return result


def _read_status(spec: dict) -> dict:
    try:
        with open(f"{spec['job_dir']}/out/status.json") as handle:
            report = json.load(handle)
        return report if isinstance(report, dict) else {}
    except (OSError, ValueError):
        return {}
