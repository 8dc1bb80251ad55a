"""``release``: regenerate the student notebooks (exercises/) from solutions/ with nbgrader's API.

    >>> release(Course.load("."), ["01_tensors_vs_numpy"])                 # doctest: +SKIP
    >>> release(Course.load("."), into=Path("/tmp/release"))               # doctest: +SKIP

It is exactly what ``nbgrader generate_assignment`` makes (``NbGraderAPI.generate_assignment`` with the
course's ``nbgrader_config.py``), and it records every source cell in the gradebook, which autograding
needs to restore locked cells. With ``into`` the release goes to another folder with a throw-away
gradebook, leaving exercises/ and the course's gradebook alone (the staleness test uses that).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory

from course_utils.atomic import write_atomically
from course_utils.grading.course import Course, CourseError, working_folder


def release(course: Course, assignments: list[str] | None = None, *, into: Path | None = None) -> list[str]:
    """Run ``nbgrader generate_assignment`` for each assignment (all by default); return their names."""
    names = assignments or course.assignments()
    for name in names:
        course.check_assignment(name)
    with contextlib.ExitStack() as stack:
        config, coursedir = course.config, course.coursedir
        if into is not None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="nbgrader-release-"))
            config = copy.deepcopy(course.config)
            config.CourseDirectory.release_directory = str(Path(into).resolve())
            config.CourseDirectory.db_url = f"sqlite:///{Path(scratch) / 'gradebook.db'}"
            coursedir = CourseDirectory(config=config)
        else:
            course.db_path.parent.mkdir(parents=True, exist_ok=True)
        stack.enter_context(working_folder(course.root))
        api = NbGraderAPI(coursedir=coursedir, config=config)
        for name in names:
            outcome = api.generate_assignment(name, force=True, create=True)
            if not outcome.get("success"):
                raise CourseError(f"nbgrader could not generate {name}:\n{outcome.get('error') or outcome.get('log')}")
    return names


def in_gradebook(course: Course, assignment: str) -> bool:
    """True when the gradebook holds ``assignment`` with exactly the source's notebooks."""
    if not course.db_path.exists():
        return False
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return False
        return {nb.name for nb in found.notebooks} == set(course.notebooks(assignment))


def ensure_released(course: Course, assignment: str) -> None:
    """Release ``assignment`` if the gradebook lacks its cells or holds an older version of its source."""
    stamp = course.workspace / "released" / f"{assignment}.key"
    key = course.source_digest(assignment)
    if not in_gradebook(course, assignment) or not stamp.is_file() or stamp.read_text() != key:
        release(course, [assignment])
        write_atomically(stamp, key)
