"""The reference records: what the solution notebooks record, which every submission is compared with.

    >>> key = reference_key(course, "01_tensors_vs_numpy")                        # doctest: +SKIP
    >>> cached_reference(course, "01_tensors_vs_numpy", "01_tensors_vs_numpy_exercises", key)  # doctest: +SKIP

The solution notebook runs once, in the same jail and pool as the submissions (``reference_job``), and
its records are cached under ``course.references_dir`` with the key they were made under; so does each
constrained task's own notebook, built from the solution's answer cell (``pipeline.tasks``), under its job's
name (``<notebook>::<task>``). The key covers
everything a reference run depends on: the assignment's source folder, every module of ``course_utils``
a kernel can import (not ``grading/``, which never runs in a kernel) and the torch version. Change any of
them and the references are made again.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import torch

from course_utils.atomic import replacing, write_atomically
from course_utils.grading.cells import grade_id, is_test_cell
from course_utils.grading.course import Course, CourseError
from course_utils.grading.pipeline.tasks import constrained_task_ids, file_stem, job_name, split_job_name, task_notebook
from course_utils.grading.runner.jobs import Job, JobOutput, read_files
from course_utils.grading.runner.sandbox import PACKAGE_ROOT
from course_utils.records import load_records

#: the student id a reference job carries
REFERENCE = "__reference__"


def reference_key(course: Course, assignment: str) -> str:
    """A hash of everything the assignment's reference records depend on (see the module docstring)."""
    modules = sorted(PACKAGE_ROOT.glob("*.py"))
    return course.source_digest(assignment, *modules) + f":torch-{torch.__version__}"


def _paths(course: Course, assignment: str, notebook: str) -> tuple[Path, Path]:
    folder, stem = course.references_dir / assignment, file_stem(notebook)
    return folder / f"{stem}.pt", folder / f"{stem}.key"


def job_names(course: Course, assignment: str) -> list[str]:
    """Every job a submission of ``assignment`` gets: one per notebook, and one per constrained task of it."""
    names = []
    for notebook in course.notebooks(assignment):
        names.append(notebook)
        tasks = constrained_task_ids(course.source_notebook(assignment, notebook))
        names += [job_name(notebook, task) for task in tasks]
    return names


def cached_reference(course: Course, assignment: str, notebook: str, key: str) -> dict | None:
    """The reference records of a job (a notebook, or ``notebook::task``) if made under ``key``, else None."""
    records, stamp = _paths(course, assignment, notebook)
    if records.is_file() and stamp.is_file() and stamp.read_text() == key:
        return load_records(records)
    return None


def reference_job(course: Course, assignment: str, notebook: str, sandboxed: bool) -> Job:
    """The job that runs the solution notebook as it is (no nbgrader sanitizing) to make its records; for a task's
    job (``notebook::task``), the task's own notebook built from the solution's answer cell."""
    source = course.source_dir / assignment
    name, task = split_job_name(notebook)
    data = (source / f"{name}.ipynb").read_bytes()
    if task is not None:
        solution = nbformat.reads(data.decode("utf-8"), as_version=4)
        data = nbformat.writes(task_notebook(solution, solution, task)).encode("utf-8")
    return Job(
        REFERENCE,
        assignment,
        notebook,
        data,
        read_files(source, course.limits.disk_bytes),
        None,
        course.limits,
        sandboxed,
        course.setting("Grader", "keep_jobs"),
    )


def _failing_test_cells(notebook_json: str | None) -> list[str]:
    """Grade ids of the test cells that show an error in the solution's run (a check the solution fails)."""
    if not notebook_json:
        return []
    nb = nbformat.reads(notebook_json, as_version=4)
    return [
        grade_id(c)
        for c in nb.cells
        if is_test_cell(c) and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]


def store_reference(course: Course, out: JobOutput, records: dict, key: str) -> dict:
    """Cache a reference job's ``records`` under ``key`` and return them; refuse a solution that did not run
    cleanly (that is the course's problem, not a student's: grading stops and says so)."""
    failing = _failing_test_cells(out.notebook_json)
    if out.problem or out.limits_hit or not records or failing:
        why = (
            out.problem
            or "; ".join(out.limits_hit)
            or (f"its own test cell(s) {', '.join(failing)} fail" if failing else "no records")
        )
        raise CourseError(
            f"The solution notebook {out.assignment}/{out.notebook} did not run cleanly, so there is "
            f"nothing trusted to grade against: {why}"
        )
    path, stamp = _paths(course, out.assignment, out.notebook)
    with replacing(path, suffix=".pt") as tmp:
        torch.save(records, tmp)
    write_atomically(stamp, key)
    return load_records(path)


def make_references(course: Course, assignment: str, engine, sandboxed: bool) -> dict[str, dict]:
    """job name -> the assignment's reference records (its notebooks and their constrained tasks), run on ``engine``
    for each not cached under today's key (``autograde`` does the same within its own run, ahead of the
    submissions)."""
    from course_utils.grading.pipeline.release import ensure_released

    ensure_released(course, assignment)
    key = reference_key(course, assignment)
    found = {nb: cached_reference(course, assignment, nb, key) for nb in job_names(course, assignment)}
    jobs = [reference_job(course, assignment, nb, sandboxed) for nb, records in found.items() if records is None]
    for _, out in engine.run(jobs):
        found[out.notebook] = store_reference(course, out, out.records(course.limits.record_bytes), key)
    return found
