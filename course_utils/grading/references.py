"""The reference records: what the solution notebooks record, which every submission is compared with.

    >>> key = reference_key(course, "01_tensors_vs_numpy")                        # doctest: +SKIP
    >>> cached_reference(course, "01_tensors_vs_numpy", "01_tensors_vs_numpy_exercises", key)  # doctest: +SKIP

The solution notebook runs once, in the same jail and pool as the submissions (``reference_job``), and
its records are cached under ``course.references_dir`` with the key they were made under. The key covers
everything a reference run depends on: the assignment's source folder, every module of ``course_utils``
a kernel can import (not ``grading/``, which never runs in a kernel) and the torch version. Change any of
them and the references are made again.
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_utils.atomic import replacing, write_atomically
from course_utils.grading.course import Course, CourseError
from course_utils.grading.jobs import Job, JobOutput, read_files
from course_utils.grading.sandbox import PACKAGE_ROOT
from course_utils.grading.verdicts import load_records

#: the student id a reference job carries
REFERENCE = "__reference__"


def reference_key(course: Course, assignment: str) -> str:
    """A hash of everything the assignment's reference records depend on (see the module docstring)."""
    modules = sorted(PACKAGE_ROOT.glob("*.py"))
    return course.source_digest(assignment, *modules) + f":torch-{torch.__version__}"


def _paths(course: Course, assignment: str, notebook: str) -> tuple[Path, Path]:
    folder = course.references_dir / assignment
    return folder / f"{notebook}.pt", folder / f"{notebook}.key"


def cached_reference(course: Course, assignment: str, notebook: str, key: str) -> dict | None:
    """The notebook's reference records if they were made under ``key``, else None."""
    records, stamp = _paths(course, assignment, notebook)
    if records.is_file() and stamp.is_file() and stamp.read_text() == key:
        return load_records(records)
    return None


def reference_job(course: Course, assignment: str, notebook: str, sandboxed: bool) -> Job:
    """The job that runs the solution notebook as it is (no nbgrader sanitizing) to make its records."""
    source = course.source_dir / assignment
    return Job(REFERENCE, assignment, notebook, (source / f"{notebook}.ipynb").read_bytes(),
               read_files(source, course.limits.disk_bytes), None, course.limits, sandboxed)


def store_reference(course: Course, out: JobOutput, records: dict, key: str) -> dict:
    """Cache a reference job's ``records`` under ``key`` and return them; refuse a solution that did not run
    cleanly (that is the course's problem, not a student's: grading stops and says so)."""
    if out.problem or out.limits_hit or not records:
        raise CourseError(f"The solution notebook {out.assignment}/{out.notebook} did not run cleanly, so there is "
                          f"nothing trusted to grade against: {out.problem or '; '.join(out.limits_hit) or 'no records'}")
    path, stamp = _paths(course, out.assignment, out.notebook)
    with replacing(path, suffix=".pt") as tmp:
        torch.save(records, tmp)
    write_atomically(stamp, key)
    return load_records(path)
