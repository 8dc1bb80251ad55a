"""Where grading jobs run: Dask distributed, an in-process cluster by default or any cluster you point it at.

    >>> with Engine(workers=2) as engine:                                  # a LocalCluster on this machine
    ...     for out in engine.run(jobs):                                   # results as they finish
    ...         handle(out)                                                # doctest: +SKIP
    >>> Engine(scheduler="tls://10.0.0.5:8786")                            # the course's TLS cluster  # doctest: +SKIP

Each worker thread runs one job at a time, in kernels forked from its process's kernel template
(``grading.kernel.Template``, one per process, shared by its threads). The default LocalCluster of up to
``IN_PROCESS_WORKERS`` workers is in-process: its workers are threads of the grader's process, so a machine
starts one template and no worker process (on 2 cores that saves a template's imports and a cluster's
start: timed in docs/performance.md); a larger one has worker processes of up to that
many threads each. Isolation is the same either way: every notebook runs in a kernel forked fresh for it,
in its own jail, as its own uid; a worker only drives kernels, and no kernel message over
``c.Limits.message_bytes`` (all its parts) reaches it. A job is plain data and its result comes back as plain data (the
record file as bytes), so the grader's process stays the single writer of results and the gradebook.
When a worker dies mid-job, the scheduler runs the job again on another worker; the grader keeps the
first result of each job, so nothing is lost or counted twice. A job whose result cannot be had at all
(it killed every worker it ran on, or its result could not be sent back) becomes a graded problem for that
notebook only.
Workers of a remote cluster must run from a copy of the course with its venv
(``python -m course_utils.grading cluster worker`` from the course folder).

No one but the grader can use its cluster (``runner.cluster``): worker processes and remote clusters speak
TLS with a certificate of the course's (a temporary one for a local cluster), on 127.0.0.1 locally; no
member serves web pages (every HTTP server Dask starts listens on 127.0.0.1 and answers 404). A worker's
result is still checked as untrusted input (``checked_output``) before anything uses it. Entering an engine
also makes the grader's process the OOM killer's last choice (``protect_from_oom``; kernels are its first).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

from course_utils.grading.pipeline.rendering import Renderer
from course_utils.grading.runner import cluster
from course_utils.grading.runner.jobs import Job, JobOutput, run_job
from course_utils.grading.runner.provisioner import Template
from course_utils.grading.runner.sandbox import SandboxUnavailable, probe

#: driving a kernel costs the worker's process about 0.1 CPU-second per submission of exercise 01, under one
#: GIL; past about this many threads a process of workers would be the bottleneck (README: Performance)
IN_PROCESS_WORKERS = 4


def local_cluster_options(workers: int) -> dict:
    """LocalCluster's options for ``workers`` jobs at once: in-process up to ``IN_PROCESS_WORKERS``, else as
    few worker processes as keep each to that many threads (each process with its own template).

        >>> local_cluster_options(2)["processes"], local_cluster_options(10)["n_workers"]
        (False, 3)
    """
    if workers <= IN_PROCESS_WORKERS:
        # memory_limit=0: in-process workers would all watch the grader's one process and pause together
        return {
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": False,
            "memory_limit": 0,
            "worker_dashboard_address": cluster.LOOPBACK_HTTP,
        }
    processes = -(-workers // IN_PROCESS_WORKERS)
    return {
        "n_workers": processes,
        "threads_per_worker": -(-workers // processes),
        "processes": True,
        "protocol": "tls",
        "host": "127.0.0.1",
    }


#: the grader's oom_score_adj when it may lower its own (root): the OOM killer takes kernels (1000) first
GRADER_OOM_SCORE = -900


def protect_from_oom() -> None:
    """Make this process the OOM killer's last choice where it may (as root); kernels are its first."""
    try:
        with open("/proc/self/oom_score_adj") as handle:
            if int(handle.read()) <= GRADER_OOM_SCORE:
                return
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(GRADER_OOM_SCORE))
    except (OSError, ValueError):
        pass  # without CAP_SYS_RESOURCE: the kernels still ask to be taken first


class Engine:
    """A Dask client: a fresh LocalCluster (``scheduler=None``) or a connection to ``scheduler`` (``tls://``, with
    the course's certificate from ``certificates``, default ``cluster.DEFAULT_FOLDER``)."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None, certificates: Path | None = None):
        self.scheduler, self.workers, self.certificates = scheduler, workers, certificates
        self.cluster = self.client = None

    def __enter__(self) -> Engine:
        import dask
        from dask.distributed import Client, LocalCluster

        protect_from_oom()
        if self.scheduler:
            cluster.check_address(self.scheduler)
            self.client = Client(self.scheduler, timeout=30, security=cluster.security(self.certificates))
            if not self.client.scheduler_info().get("workers"):
                self.client.wait_for_workers(1, timeout=60)
        else:
            options = local_cluster_options(self.workers or os.cpu_count() or 1)
            security = cluster.temporary_security() if options["processes"] else None
            with dask.config.set(cluster.NO_HTTP):
                self.cluster = LocalCluster(
                    **options,
                    security=security,
                    dashboard_address=cluster.LOOPBACK_HTTP,
                    scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.ERROR,
                )
            self.client = Client(self.cluster, security=security)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            Template.close_shared()  # the in-process workers' templates go with the cluster
            Renderer.close_all()  # and their threads' rendering helpers

    @property
    def n_workers(self) -> int:
        """How many jobs the engine runs at once (a worker thread each)."""
        return sum(info.get("nthreads", 1) for info in self.client.scheduler_info().get("workers", {}).values())

    def check_sandbox(self) -> None:
        """Make sure every worker can build jails; raise SandboxUnavailable naming what failed where."""
        failures = {}
        for worker, outcome in self.client.run(_probe_here).items():
            if outcome.startswith("error:"):
                failures[worker] = outcome[len("error:") :]
        if failures:
            worker, why = next(iter(failures.items()))
            raise SandboxUnavailable(f"worker {worker} cannot jail notebooks: {why}")

    def start_templates(self, sandboxed: bool, limits) -> None:
        """Start every worker's kernel template now rather than on its first job."""
        self.client.run(_start_template, sandboxed, limits)

    def run(self, jobs: list[Job], first: int = 0) -> Iterator[tuple[Job, JobOutput]]:
        """Submit ``jobs`` (the first ``first`` of them ahead of the rest) and yield (job, output) as each finishes."""
        from dask.distributed import as_completed

        if not jobs:
            return
        futures = {}
        for index, job in enumerate(jobs):
            future = self.client.submit(
                run_job,
                job,
                pure=False,
                priority=1 if index < first else 0,
                key=f"grade-{index}-{job.student}-{job.notebook}"[:120],
            )
            futures[future] = job
        for future in as_completed(list(futures)):
            job = futures.pop(future)
            yield job, _result(future, job)
            future.release()


def _start_template(sandboxed: bool, limits) -> str:
    Template.shared(sandboxed, limits)
    return "ready"


def _probe_here() -> str:
    try:
        return probe()
    except SandboxUnavailable as error:
        return f"error:{error}"


def _result(future, job: Job) -> JobOutput:
    """The job's output, or an output that says why there is none (never an exception)."""
    try:
        out = future.result()
    except Exception as error:  # KilledWorker, a result that could not be sent back, a worker's bug
        name = type(error).__name__
        why = (
            "the worker grading it died each time it ran (KilledWorker)"
            if name == "KilledWorker"
            else f"its result could not be had ({name}: {str(error)[:200]})"
        )
        out = JobOutput(
            job.student,
            job.assignment,
            job.notebook,
            problem=f"{job.notebook}.ipynb could not be graded: {why}; ask the instructor",
        )
        out.internal_error = True
    return checked_output(out, job)


def _text_ok(value, cap: int) -> bool:
    return isinstance(value, str) and len(value) <= cap


def _output_problem(out, job: Job) -> str | None:
    """What is wrong with a worker's answer to ``job``, or None: it must be a JobOutput of that very job whose
    fields are plain data of the types and sizes a job produces."""
    limits = job.limits
    if type(out) is not JobOutput:
        return f"not a job output ({type(out).__name__})"
    if (out.student, out.assignment, out.notebook) != (job.student, job.assignment, job.notebook):
        return "the output of another job"
    checks = [
        ("notebook", out.notebook_json is None or _text_ok(out.notebook_json, 4 * limits.notebook_bytes + 2**20)),
        (
            "records",
            out.records_bytes is None
            or (type(out.records_bytes) is bytes and len(out.records_bytes) <= limits.record_bytes),
        ),
        ("seconds", type(out.seconds) in (int, float) and math.isfinite(out.seconds) and out.seconds >= 0),
        (
            "notes",
            isinstance(out.limits_hit, list)
            and len(out.limits_hit) <= 32
            and all(_text_ok(hit, 1000) for hit in out.limits_hit),
        ),
        ("problem", out.problem is None or _text_ok(out.problem, 2000)),
        ("internal_error", type(out.internal_error) is bool),
        (
            "stages",
            isinstance(out.stages, dict)
            and len(out.stages) <= 64
            and all(_text_ok(k, 64) and (v is None or type(v) in (int, float)) for k, v in out.stages.items()),
        ),
    ]
    wrong = [name for name, ok in checks if not ok]
    return f"its {', '.join(wrong)} are not what a job produces" if wrong else None


def checked_output(out, job: Job) -> JobOutput:
    """``out`` if it is a plausible answer to ``job`` (``_output_problem``), else an output that says the grader
    could not grade the notebook (its earlier result stands)."""
    problem = _output_problem(out, job)
    if problem is None:
        return out
    logging.getLogger(__name__).error("a worker's result for %s/%s was refused: %s", job.student, job.notebook, problem)
    refused = JobOutput(
        job.student,
        job.assignment,
        job.notebook,
        problem=f"{job.notebook}.ipynb could not be graded: a worker's result was refused; ask the instructor",
    )
    refused.internal_error = True
    return refused
