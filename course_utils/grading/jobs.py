"""One grading job: sanitize a notebook with nbgrader, run it jailed, read back its records safely.

A job runs in a worker process (``run_job`` is what the pool calls). It never touches the gradebook
for writing; the parent turns its output into scores.

    >>> out = run_job(Job(...))  # doctest: +SKIP
    >>> out.records, out.limits_hit
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_utils.grading.cells import grade_id
from course_utils.grading.execute import run_notebook
from course_utils.grading.sandbox import BASE_UID, RECORD_FILE_NAME, Jail, Limits, hand_over
from course_utils.grading.verdicts import load_records

#: a record file bigger than this is not read (a student could write anything there)
MAX_RECORD_BYTES = 64 * 2**20


@dataclass
class Job:
    """What one worker needs: the notebook, the files beside it, where the gradebook is, the limits."""
    student: str
    assignment: str
    notebook: str
    notebook_path: Path | None      # None: the notebook is missing from the submission
    extra_files: list[tuple[Path, str]]  # (host file, relative path) copied into the jail's work folder
    db_url: str
    limits: Limits
    sandboxed: bool
    sanitize: bool = True           # False for the trusted solution run
    uid_slot: int = 0


@dataclass
class JobOutput:
    student: str
    assignment: str
    notebook: str
    notebook_json: str | None = None
    records: dict = field(default_factory=dict)
    seconds: float = 0.0
    limits_hit: list[str] = field(default_factory=list)
    problem: str | None = None       # why the notebook could not be graded at all


def regular_files(folder: Path) -> list[tuple[Path, str]]:
    """Non-notebook regular files under ``folder`` as (path, relative path); links are never followed."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints" and not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if not name.endswith(".ipynb") and not path.is_symlink() and path.is_file():
                files.append((path, str(path.relative_to(folder))))
    return files


def sanitize(nb, job: Job):
    """nbgrader's own autograde sanitizers: clear outputs, dedupe ids, restore locked and deleted cells."""
    from nbconvert.exporters.exporter import ResourcesDict
    from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells,
                                        OverwriteKernelspec)
    resources = ResourcesDict(nbgrader={"db_url": job.db_url, "assignment": job.assignment,
                                        "notebook": job.notebook, "student": job.student})
    for pp in (ClearOutput(), DeduplicateIds(), OverwriteKernelspec()):
        nb, resources = pp.preprocess(nb, resources)
    _drop_idless_metadata(nb)  # DeduplicateIds leaves `nbgrader: {}` behind, which OverwriteCells trips on
    for pp in (OverwriteCells(add_missing_cells=True), CheckCellMetadata()):
        nb, resources = pp.preprocess(nb, resources)
    return nb


def _drop_idless_metadata(nb) -> None:
    for cell in nb.cells:
        if "nbgrader" in cell.metadata and grade_id(cell) is None:
            del cell.metadata["nbgrader"]


def read_records(records_dir: Path) -> dict:
    """Load the jail's record file without following links and refusing huge or odd files."""
    path = records_dir / RECORD_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ValueError(f"the record file could not be opened safely ({error.strerror}); was it replaced by a link?")
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("the record file is not a regular file")
        if info.st_size > MAX_RECORD_BYTES:
            raise ValueError(f"the record file is {info.st_size // 2**20} MiB, over the {MAX_RECORD_BYTES // 2**20} MiB limit")
        data = handle.read(MAX_RECORD_BYTES + 1)
    with tempfile.NamedTemporaryFile(suffix=".pt") as trusted:
        trusted.write(data)
        trusted.flush()
        return load_records(trusted.name)


def _make_jail(tmp: Path, job: Job) -> tuple[Path, Path, Jail | None]:
    work, records, ipc = tmp / "w", tmp / "r", tmp / "i"
    for folder in (work, records, ipc):
        folder.mkdir()
    for src, rel in job.extra_files:
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    jail = Jail(work, records, ipc, BASE_UID + job.uid_slot % 4000) if job.sandboxed else None
    if jail is not None:
        hand_over(jail)
    return work, records, jail


def run_job(job: Job) -> JobOutput:
    """Sanitize, execute and read back one notebook; every failure becomes ``problem``, never an exception."""
    out = JobOutput(job.student, job.assignment, job.notebook)
    if job.notebook_path is None:
        out.problem = f"{job.notebook}.ipynb was not submitted"
        return out
    try:
        nb = nbformat.read(job.notebook_path, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # not JSON, not a notebook, wrong schema
        out.problem = f"{job.notebook}.ipynb is not a valid notebook ({type(error).__name__}: {str(error)[:200]})"
        return out
    try:
        if job.sanitize:
            nb = sanitize(nb, job)
    except Exception as error:
        out.problem = f"{job.notebook}.ipynb could not be prepared for grading ({type(error).__name__}: {str(error)[:200]})"
        return out
    tmp = Path(tempfile.mkdtemp(prefix="cg-", dir="/tmp"))  # short: unix socket paths are limited to 107 bytes
    try:
        work, records_dir, jail = _make_jail(tmp, job)
        execution = run_notebook(nb, work, records_dir, job.limits, jail, tmp / "kernel.log")
        out.notebook_json = nbformat.writes(execution.notebook)
        out.seconds, out.limits_hit = execution.seconds, execution.limits_hit
        try:
            out.records = read_records(records_dir)
        except ValueError as error:
            out.problem = f"the recorded results were rejected: {error}"
    except Exception:  # a grader bug: report it on this notebook, keep grading the others
        out.problem = "internal grader error: " + traceback.format_exc(limit=3)[-600:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
