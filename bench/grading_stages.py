"""What one submission of exercise 01 costs, stage by stage, in one worker (sandboxed).

    $ python -m bench.grading_stages -n 10
    >>> stages = measure(10)        # {'job_s': ..., 'kernel_ready_s': ..., 'cells_s': ..., ...}  # doctest: +SKIP

Each of ``n`` solved notebooks runs through ``course_utils.grading.runner.jobs.run_job`` one after the other in
this process (after one warm-up job), and nbclient's own steps are timed from outside: ``kernel_ready_s``
(launch the kernel until it answers kernel_info), ``cells_s`` (every cell, imports included),
``shutdown_s`` (stop the kernel and clean up), ``job_s`` (the whole job: checks, nbgrader's sanitizers,
staging files, the above, reading back the records), ``worker_cpu_s`` (this process's CPU per job) and
``other_s`` (job_s minus the three nbclient steps), ``kernel_cpu_s`` (the CPU of every process of the
job's kernel, as its supervisor counted it; the grader after the kernel template only) and
``machine_cpu_s`` (the CPU every process of the machine used during the job: what bounds throughput when
every core is busy grading). Means over the ``n`` jobs.

It works with the grader before the kernel template too (the ``Job`` of that version took paths and a
gradebook URL), so running it against an older checkout (``PYTHONPATH=<old checkout>``) gives the
"before" column of the same table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "01_tensors_vs_numpy"
NOTEBOOK = f"{ASSIGNMENT}_exercises"


def _timed_nbclient(current: dict):
    """Wrap nbclient's kernel start, cell execution and clean-up (once) so that each adds its seconds to
    ``current["times"]``, the dict of the job being measured."""
    import nbclient.client as client

    def wrap(name, key):
        original = getattr(client.NotebookClient, name)

        async def timed(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(self, *args, **kwargs)
            finally:
                times = current["times"]
                times[key] = times.get(key, 0.0) + time.perf_counter() - started

        setattr(client.NotebookClient, name, timed)

    wrap("async_start_new_kernel", "kernel_ready_s")
    wrap("async_start_new_kernel_client", "kernel_ready_s")
    wrap("async_execute_cell", "cells_s")
    wrap("_async_cleanup_kernel", "shutdown_s")


def _course(root: Path):
    from course_utils.grading.course import Course
    from course_utils.grading.pipeline import release

    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    course = Course.load(root)
    (getattr(release, "ensure_released", None) or release.ensure_in_gradebook)(course, ASSIGNMENT)
    return course


def _job(course, nb_bytes: bytes, path: Path):
    from course_utils.grading.runner.jobs import Job

    fields = inspect.signature(Job).parameters
    if "notebook_bytes" in fields:  # the kernel template's grader: plain data
        from course_utils.grading.pipeline.sanitize import SourceSnapshot

        snapshot = SourceSnapshot.from_gradebook(course.db_url, course.coursedir.course_id, ASSIGNMENT, NOTEBOOK)
        return Job("bench", ASSIGNMENT, NOTEBOOK, nb_bytes, [], snapshot, course.limits, True)
    path.write_bytes(nb_bytes)  # the grader before it: a path and the gradebook's URL
    return Job("bench", ASSIGNMENT, NOTEBOOK, path, [], course.db_url, course.limits, True)


def _machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used so far (user + nice + system, from /proc/stat)."""
    with open("/proc/stat") as handle:
        user, nice, system = (int(x) for x in handle.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def measure(n: int = 10) -> dict:
    from course_utils.grading.authoring.samples import solved
    from course_utils.grading.runner.jobs import run_job

    release_nb = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    solution_nb = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    nb_bytes = nbformat.writes(solved(release_nb, solution_nb)).encode()
    rows, current = [], {"times": {}}
    _timed_nbclient(current)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        course = _course(Path(tmp))
        job = _job(course, nb_bytes, Path(tmp) / "submitted.ipynb")
        run_job(job)  # warm-up: starts the template (where there is one) and fills the OS caches
        for _ in range(n):
            times = current["times"] = {}
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            machine = _machine_cpu_seconds()
            started = time.perf_counter()
            out = run_job(job)
            times["job_s"] = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            times["worker_cpu_s"] = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
            times["machine_cpu_s"] = _machine_cpu_seconds() - machine
            if isinstance(getattr(out, "stages", {}).get("kernel_cpu_s"), (int, float)):
                times["kernel_cpu_s"] = out.stages["kernel_cpu_s"]
            if out.problem:
                raise RuntimeError(f"the solved notebook did not run cleanly: {out.problem}")
            times["other_s"] = times["job_s"] - sum(
                times.get(k, 0) for k in ("kernel_ready_s", "cells_s", "shutdown_s")
            )
            rows.append(times)
    keys = sorted({k for row in rows for k in row})
    return {k: round(sum(row.get(k, 0.0) for row in rows) / len(rows), 3) for k in keys}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grading_stages", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
