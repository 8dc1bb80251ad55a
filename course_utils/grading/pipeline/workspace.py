"""The grading workspace and the nbgrader exchange, created on first use (``make lab``, ``make hub``).

    >>> ensure_workspace(Path("."))                                  # doctest: +SKIP
    ['01_tensors_vs_numpy', ...]                                     # assignments now in the exchange

* the workspace (``grading/``: gradebook, submissions, feedback) exists, so the formgrader opens;
* the exchange root exists with the permissions nbgrader documents (``ugo+rwx``, nbgrader's ``ensure_root``);
* every assignment of ``exercises/`` is released to the exchange's ``outbound/`` (nbgrader's
  ``release_assignment``), again whenever its release changed, so the Assignments tab lists it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from nbgrader.api import Gradebook

from course_utils.atomic import write_atomically
from course_utils.grading.course import Course, CourseError, working_folder
from course_utils.grading.files import digest


def exchange_course_dir(course: Course, exchange_root: Path) -> Path:
    """``<exchange>/<course_id>``: nbgrader's folder for this course in the exchange."""
    return Path(exchange_root) / course.coursedir.course_id


def release_dir(course: Course) -> Path:
    return course.root / course.coursedir.release_directory


def _released_assignments(course: Course) -> list[str]:
    folder = release_dir(course)
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if folder.is_dir() else []


def _api(course: Course, exchange_root: Path):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = copy.deepcopy(course.config)
    config.Exchange.root = str(exchange_root)
    config.ExchangeReleaseAssignment.force = True
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def publish_assignments(course: Course, exchange_root: Path) -> list[str]:
    """Release each assignment of ``exercises/`` into the exchange when its files changed; return them all."""
    exchange_root = Path(exchange_root)
    names = _released_assignments(course)
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        for name in names:  # nbgrader's release_assignment only needs the assignment's row
            gb.update_or_create_assignment(name)
    api = None
    for name in names:
        stamp = course.workspace / "published" / f"{name}.key"  # what was last released, and where to
        key = f"{exchange_root.resolve()}\n{digest(sorted((release_dir(course) / name).rglob('*')))}"
        outbound = exchange_course_dir(course, exchange_root) / "outbound" / name
        if outbound.is_dir() and stamp.is_file() and stamp.read_text() == key:
            continue
        api = api or _api(course, exchange_root)
        with working_folder(course.root):
            outcome = api.release_assignment(name)
        if not outcome.get("success"):
            raise CourseError(f"nbgrader could not release {name} to {exchange_root}:\n{outcome.get('log')}")
        write_atomically(stamp, key)
    return names


def ensure_workspace(root: Path, exchange_root: Path | None = None) -> list[str]:
    """Create the course's workspace and exchange (default: the config's ``Exchange.root``) and publish."""
    course = Course.load(root)
    course.db_path.parent.mkdir(parents=True, exist_ok=True)
    exchange_root = Path(exchange_root or course.config.Exchange.root)
    if not exchange_root.is_dir():
        exchange_root.mkdir(parents=True)
        exchange_root.chmod(0o777)  # nbgrader: "the exchange directory ... needs to be writable by all"
    return publish_assignments(course, exchange_root)
