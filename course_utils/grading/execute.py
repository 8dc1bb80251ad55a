"""Run one notebook in a (jailed) kernel, as far as it gets, and say which limit stopped it.

    >>> result = run_notebook(nb, work_dir, records_dir, Limits(), jail=None)  # doctest: +SKIP
    >>> result.stopped_by   # None, or e.g. "cell timeout (120 s) in cell 7"
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_utils.grading.kernel import JailedKernelManager, plain_env
from course_utils.grading.sandbox import Jail, Limits

#: what nbclient writes into a cell that ran past the cell timeout (the kernel is interrupted, grading goes on)
TIMEOUT_ERROR = {"ename": "CellTimeoutError", "evalue": "",
                 "traceback": ["CellTimeoutError: the cell ran past the time limit and was interrupted"]}
MEMORY_SIGNS = ("MemoryError", "can't allocate memory", "std::bad_alloc", "Cannot allocate memory")


@dataclass
class Execution:
    """What running one notebook produced."""
    notebook: nbformat.NotebookNode
    seconds: float
    limits_hit: list[str] = field(default_factory=list)
    kernel_died: bool = False

    @property
    def stopped_by(self) -> str | None:
        """A sentence for the learner naming every limit the run hit, or None."""
        return "; ".join(self.limits_hit) or None


class CappedClient(NotebookClient):
    """A NotebookClient that stops storing output once a notebook has printed ``output_bytes``."""

    def __init__(self, nb, output_bytes: int, **kw):
        super().__init__(nb, **kw)
        self.output_budget = output_bytes
        self.output_dropped = False

    async def _check_raise_for_error(self, cell, cell_index, exec_reply):
        content = (exec_reply or {}).get("content", {})
        if content.get("ename") == TIMEOUT_ERROR["ename"]:  # nbclient reports it in the reply only
            cell.outputs.append(nbformat.v4.new_output("error", **TIMEOUT_ERROR))
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        if self.output_budget - size < 0:
            if not self.output_dropped:
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr", text="[grader] output limit reached: further output dropped\n"))
            self.output_dropped = True
            return None
        self.output_budget -= size
        return super().output(outs, msg, display_id, cell_index)


def _kernel_death_reason(status: int | None, limits: Limits, killed_for_wall: bool) -> str:
    if killed_for_wall:
        return f"notebook wall-time limit ({limits.notebook_timeout} s): the kernel was stopped"
    if status in (-24, 152, 128 + 24):  # SIGXCPU, directly or as bwrap's 128+signal
        return f"CPU-time limit ({limits.cpu_seconds} s): the kernel was stopped"
    if status in (-9, 137):
        return "the kernel was killed (CPU-time or memory limit)"
    return f"the kernel died (exit status {status}), e.g. os._exit, a crash or running out of memory"


def _scan_outputs(nb, limits: Limits) -> list[str]:
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


async def _execute_cells(client: CappedClient, cwd: str, log) -> bool:
    """Run every code cell; return False if the kernel died on the way."""
    async with client.async_setup_kernel(cwd=cwd, stdout=log, stderr=log):
        await client.async_wait_for_reply(client.kc.kernel_info(), None)
        for index, cell in enumerate(client.nb.cells):
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except DeadKernelError:
                return False
    return True


def run_notebook(nb, work_dir: Path, records_dir: Path, limits: Limits, jail: Jail | None,
                 log_path: Path) -> Execution:
    """Execute ``nb`` with cwd ``work_dir``; records land in ``records_dir``; the kernel's own
    stdout/stderr go to ``log_path`` (capped by RLIMIT_FSIZE). Never raises for student errors."""
    env = None if jail else plain_env(limits, str(work_dir), str(records_dir))
    km = JailedKernelManager(jail=jail, limits=limits, plain_env=env, kernel_name="python3")
    client = CappedClient(nb, limits.output_bytes, km=km, timeout=limits.cell_timeout, allow_errors=True,
                          interrupt_on_timeout=True, error_on_timeout=TIMEOUT_ERROR, record_timing=False,
                          startup_timeout=120, shutdown_kernel="immediate", iopub_timeout=10)
    wall = {"killed": False}

    def stop():
        wall["killed"] = True
        km.kill_now()

    watchdog = threading.Timer(limits.notebook_timeout, stop)
    start = time.perf_counter()
    watchdog.start()
    try:
        with open(log_path, "ab") as log:
            alive = asyncio.run(_execute_cells(client, str(work_dir), log))
    except (DeadKernelError, RuntimeError) as error:  # RuntimeError: died before replying to kernel_info
        alive = False
        client.nb.metadata["grader_error"] = str(error)[:500]
    finally:
        watchdog.cancel()
        status = km.exit_status()
        km.kill_now()
    result = Execution(client.nb, time.perf_counter() - start, _scan_outputs(client.nb, limits), not alive)
    if not alive:
        result.limits_hit.append(_kernel_death_reason(status, limits, wall["killed"]))
    if client.output_dropped:
        result.limits_hit.append(f"output limit ({limits.output_bytes // 1024} KiB): later output dropped")
    return result
