"""The end-to-end tier's shared work: each solution notebook executed once per test run, in a real kernel.

``solution_runs`` is what several files need of the solutions: the executed notebook (every test cell must
pass) and its records (the trusted reference every answer is compared with). ``test_exercises`` checks the
runs; ``test_grading_exercises`` hands the records to the grader as its cached references, so the grader
does not run the solutions again. They run as the grader runs them: one thread per kernel (``JobLimits.threads``),
so that floating-point results match a graded run to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock

from course_utils.grading.runner.sandbox import JobLimits
from course_utils.records import load_records
from support import REPO, execute

#: the thread settings of a graded kernel (``runner.sandbox.jail_env``)
THREADS = {name: str(JobLimits().threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if any(p.glob("*.ipynb")))


@dataclass
class SolutionRun:
    notebook: nbformat.NotebookNode  # as the kernel left it, outputs included
    records: dict  # what its test cells recorded
    record_file: Path


@pytest.fixture(scope="session")
def solution_runs(tmp_path_factory, worker_id) -> dict[str, SolutionRun]:
    """assignment -> its solution notebook, executed once per test run (the assignments have one notebook each);
    under ``pytest -n``, the first worker that needs them runs them and the others read its files."""
    if worker_id == "master":
        return {assignment: _run_solution(tmp_path_factory.mktemp(assignment)) for assignment in ASSIGNMENTS}
    shared = tmp_path_factory.getbasetemp().parent / "solution_runs"  # this run's folder, above each worker's
    shared.mkdir(exist_ok=True)
    with FileLock(shared / ".lock"):
        return {assignment: _run_solution(shared / assignment) for assignment in ASSIGNMENTS}


def _run_solution(folder: Path) -> SolutionRun:
    """The solution of ``folder.name`` executed, with its notebook and records kept in ``folder``; read back
    where an earlier worker of this run left them there."""
    assignment, done = folder.name, folder / "executed.ipynb"
    record_file = folder / "reference.pt"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path = REPO / "solutions" / assignment / f"{assignment}_exercises.ipynb"
        nbformat.write(execute(nbformat.read(path, as_version=4), path.parent, record_file, **THREADS), done)
    return SolutionRun(nbformat.read(done, as_version=4), load_records(record_file), record_file)
