"""``release``: regenerate the student notebooks (exercises/) from solutions/ with nbgrader's API.

It also records every source cell in the gradebook, which autograding needs to restore locked cells.

    >>> release(Course.load("."), ["01_tensors_vs_numpy"])  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI

from course_utils.grading.course import Course, CourseError


def release(course: Course, assignments: list[str] | None = None) -> list[str]:
    """Run ``nbgrader generate_assignment`` for each assignment (all by default); return their names."""
    names = assignments or course.assignments()
    course.db_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(course.root):
        api = NbGraderAPI(coursedir=course.coursedir, config=course.config)
        for name in names:
            course.check_assignment(name)
            outcome = api.generate_assignment(name, force=True, create=True)
            if not outcome.get("success"):
                raise CourseError(f"nbgrader could not generate {name}:\n{outcome.get('error') or outcome.get('log')}")
    return names


def in_gradebook(course: Course, assignment: str) -> bool:
    if not course.db_path.exists():
        return False
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return False
        return {nb.name for nb in found.notebooks} == set(course.notebooks(assignment))


def ensure_in_gradebook(course: Course, assignment: str) -> None:
    """Release ``assignment`` if the gradebook lacks its cells or holds an older version of its source."""
    stamp = course.workspace / "references" / assignment / "released.key"
    key = course.source_fingerprint(assignment)
    if not in_gradebook(course, assignment) or not stamp.is_file() or stamp.read_text() != key:
        release(course, [assignment])
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
