"""One grading job: check and sanitize a notebook, run it in a jailed kernel, hand back its records as bytes.

A job is plain data (the notebook's bytes, its files' bytes, the gradebook snapshot, the limits), so it can
run in any worker of any machine that has the course's venv; it never touches the gradebook or the
course's folders. ``run_job`` is what the engine calls; it turns every failure into ``problem`` and never
raises for anything a submission does.

    >>> out = run_job(Job("alice", "01_x", "01_x", nb_bytes, [], snapshot, JobLimits(), True))  # doctest: +SKIP
    >>> out.records_bytes, out.limits_hit  # doctest: +SKIP

``c.Grader.keep_jobs = True`` (``nbgrader_config.py``) keeps each job's spool folder (its files, the kernel's
log, the supervisor's ``status.json``) for debugging the grader.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_utils import env
from course_utils.grading import files as tree
from course_utils.grading.pipeline.rendering import safe_notebook_json
from course_utils.grading.pipeline.sanitize import SourceSnapshot, sanitize
from course_utils.grading.runner.execute import run_notebook
from course_utils.grading.runner.provisioner import Template
from course_utils.grading.runner.sandbox import RECORD_FILE_NAME, RECORDS_MOUNT, WORK_MOUNT, JobLimits, jail_env, mode
from course_utils.grading.runner.uids import lease_uid
from course_utils.records import RecordError, load_record_bytes


@dataclass
class Job:
    """What one worker needs: the notebook, the files beside it, the gradebook snapshot, the limits."""

    student: str
    assignment: str
    notebook: str
    notebook_bytes: bytes | None  # None: the notebook is missing from the submission
    files: list[tuple[str, bytes]]  # (relative path, content) copied into the jail's work folder
    snapshot: SourceSnapshot | None  # None for the trusted solution run (no nbgrader sanitizing)
    limits: JobLimits
    sandboxed: bool
    keep: bool = False  # keep the job's spool folder (c.Grader.keep_jobs)


@dataclass
class JobOutput:
    student: str
    assignment: str
    notebook: str
    notebook_json: str | None = None
    records_bytes: bytes | None = None
    seconds: float = 0.0
    limits_hit: list[str] = field(default_factory=list)
    problem: str | None = None  # why the notebook could not be graded at all
    internal_error: bool = False  # the grader (not the notebook) failed: keep the earlier result, retry later
    stages: dict = field(default_factory=dict)  # seconds per stage, and the kernel's CPU and memory

    def records(self, cap: int) -> dict:
        """The records the notebook's kernel wrote, read back safely; a refused record file becomes the
        notebook's ``problem`` (and no records)."""
        if self.records_bytes is None:
            return {}
        try:
            return load_record_bytes(self.records_bytes, cap)
        except RecordError as error:  # its message never quotes the file's content (see course_utils.records)
            self.problem = self.problem or f"the recorded results were rejected: {error}"
            return {}


def _beside_notebook(rel: str) -> bool:
    return not rel.endswith(".ipynb") and not any(part.startswith(".") for part in rel.split("/")[:-1])


def read_files(folder: Path, cap: int) -> list[tuple[str, bytes]]:
    """The files a job copies beside its notebook: the regular files of ``folder`` but notebooks and hidden
    folders, read once without following links (``grading.files``), at most ``cap`` bytes in all."""
    return tree.read_tree(folder, limit=cap, include=_beside_notebook)


class NotANotebook(ValueError):
    """A submitted file is not a notebook the grader runs; the message says why without quoting the file."""


#: a path component of a schema error that may be shown: a position or a field name of the notebook format
_SCHEMA_WORD = re.compile(r"^([0-9]{1,6}|[a-z_]{1,30})$")


def _where(error) -> str:
    path = [str(part) for part in getattr(error, "absolute_path", ()) or ()]
    words = [part for part in path if _SCHEMA_WORD.match(part)][:8]
    return "/".join(words) or "its top level"


def _parse(job: Job) -> nbformat.NotebookNode:
    """The submitted notebook, refusing what is too big, not JSON, not a notebook, or has too many cells."""
    if len(job.notebook_bytes) > job.limits.notebook_bytes:
        raise NotANotebook(
            f"it is {len(job.notebook_bytes) // 2**20} MiB, over the {job.limits.notebook_bytes // 2**20} MiB limit"
        )
    try:
        text = job.notebook_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise NotANotebook("it is not UTF-8 text") from None
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except (ValueError, RecursionError):
        raise NotANotebook("it is not JSON, or not nested as a notebook is") from None
    except Exception as error:  # nbformat's readers: no nbformat version, an unknown one, a wrong type...
        raise NotANotebook(f"it is not in the notebook format ({type(error).__name__})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotANotebook("it has no list of cells")
    if len(nb.cells) > job.limits.max_cells:
        raise NotANotebook(f"it has {len(nb.cells)} cells, over the limit of {job.limits.max_cells}")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        raise NotANotebook(f"a field does not follow the notebook format, at {_where(error)}") from None
    except RecursionError:
        raise NotANotebook("it is nested too deeply") from None
    return nb


def _stage_files(job_dir: Path, files: list[tuple[str, bytes]]) -> None:
    for rel, data in files:
        target = (job_dir / "in" / rel).resolve()
        if not target.is_relative_to(job_dir / "in"):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _spec(job: Job, job_dir: Path, uid: int | None) -> dict:
    isolate = job.sandboxed
    if isolate:
        cwd, records = WORK_MOUNT, f"{RECORDS_MOUNT}/{RECORD_FILE_NAME}"
        variables = jail_env(job.limits, records)
    else:
        work, records_dir = job_dir / "work", job_dir / "records"
        shutil.copytree(job_dir / "in", work)
        records_dir.mkdir()
        cwd, records = str(work), str(records_dir / RECORD_FILE_NAME)
        variables = jail_env(job.limits, records, home=str(work))
    variables[env.RECORD_FILE] = records
    return {
        "job_dir": str(job_dir),
        "spool": str(job_dir.parent),
        "cwd": cwd,
        "env": variables,
        "records_dir": str(Path(records).parent),
        "uid": uid,
        "isolate": isolate,
        "limits": job.limits.to_dict(),
    }


def _execute(job: Job, nb, out: JobOutput) -> None:
    started = time.perf_counter()
    template = Template.shared(job.sandboxed, job.limits)
    out.stages["template_s"] = time.perf_counter() - started
    job_dir = template.new_job_dir()
    try:
        _stage_files(job_dir, job.files)
        leased = lease_uid() if job.sandboxed and mode() == "root" else contextlib.nullcontext(None)
        with leased as uid:
            execution = run_notebook(nb, template, _spec(job, job_dir, uid), job.limits)
        out.seconds, out.limits_hit = execution.seconds, execution.limits_hit
        out.stages.update(
            run_s=execution.seconds,
            kernel_cpu_s=execution.status.get("cpu_seconds"),
            kernel_peak_bytes=execution.status.get("peak_memory"),
        )
        started = time.perf_counter()
        out.notebook_json = safe_notebook_json(nbformat.writes(execution.notebook), job.limits.render_seconds)
        if execution.status.get("record_problem"):
            out.problem = f"the recorded results were rejected: {execution.status['record_problem']}"
        elif execution.status.get("setup_error"):
            raise RuntimeError(f"the jail could not be set up: {execution.status['setup_error']}")
        records = job_dir / "out" / RECORD_FILE_NAME
        if records.is_file():
            out.records_bytes = records.read_bytes()
        out.stages["collect_s"] = time.perf_counter() - started
    finally:
        if not job.keep:
            shutil.rmtree(job_dir, ignore_errors=True)


def run_job(job: Job) -> JobOutput:
    """Check, sanitize, execute and read back one notebook (see the module docstring)."""
    out = JobOutput(job.student, job.assignment, job.notebook)
    if job.notebook_bytes is None:
        out.problem = f"{job.notebook}.ipynb was not submitted"
        return out
    started = time.perf_counter()
    try:
        nb = _parse(job)
    except NotANotebook as error:  # not UTF-8, not JSON, not a notebook, wrong schema, too big
        out.problem = f"{job.notebook}.ipynb is not a valid notebook: {error}"
        return out
    try:
        if job.snapshot is not None:
            nb = sanitize(nb, job.snapshot)
    except Exception as error:  # the message would quote the submission: its type says enough
        out.problem = f"{job.notebook}.ipynb could not be prepared for grading ({type(error).__name__})"
        return out
    out.stages["prepare_s"] = time.perf_counter() - started
    try:
        _execute(job, nb, out)
    except Exception as error:  # a grader bug or a broken machine: report it on this notebook, keep grading the others
        traceback.print_exc(limit=5, file=sys.stderr)  # the worker's log; the note names where, not what
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f" in {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        out.problem = f"internal grader error ({type(error).__name__}{where}): ask the instructor"
        out.internal_error = True
    return out


def describe_stages(outputs: list[JobOutput]) -> str:
    """Mean seconds per stage over ``outputs`` (for the benchmark), as JSON."""
    keys = sorted({k for o in outputs for k, v in o.stages.items() if isinstance(v, (int, float))})
    means = {k: sum(o.stages.get(k) or 0 for o in outputs) / max(1, len(outputs)) for k in keys}
    return json.dumps(means)
