"""The grader's result files: one JSON per student and assignment, the record of what autograde decided.

    >>> result = load_result(course, "01_tensors_vs_numpy", "alice")      # doctest: +SKIP
    >>> result_totals(result)                                             # doctest: +SKIP
    (8.0, 10.0)

A result holds, per notebook, each graded cell's score, maximum and comment, the limits the run hit and
any problem, plus the fingerprint of what was graded (so an unchanged submission is not graded again).
``feedback`` and ``export`` read these files; only ``autograde`` writes them (atomically). This module
imports nothing heavy, so reading results never loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from course_utils.atomic import write_atomically
from course_utils.grading.course import Course


def result_path(course: Course, assignment: str, student: str) -> Path:
    return course.results_dir / assignment / f"{student}.json"


def load_result(course: Course, assignment: str, student: str) -> dict | None:
    """The student's result for ``assignment``, or None when it has not been graded."""
    path = result_path(course, assignment, student)
    return json.loads(path.read_text()) if path.is_file() else None


def write_result(course: Course, result: dict) -> Path:
    """Store ``result`` (with its ``student`` and ``assignment``) in one atomic step."""
    return write_atomically(result_path(course, result["assignment"], result["student"]), json.dumps(result, indent=1))


def result_totals(result: dict) -> tuple[float, float]:
    """(points scored, points possible) over every notebook of a result.

    >>> result_totals({"notebooks": {"nb": {"cells": [{"score": 1.0, "max_score": 2.0}]}}})
    (1.0, 2.0)
    """
    cells = [c for nb in result["notebooks"].values() for c in nb["cells"]]
    return sum(c["score"] or 0 for c in cells), sum(c["max_score"] for c in cells)


def result_notes(result: dict) -> list[str]:
    """Every limit hit and problem of a result's notebooks, in order."""
    return [n for nb in result["notebooks"].values() for n in nb["limits_hit"] + [nb["problem"]] if n]
