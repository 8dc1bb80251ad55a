"""What the watcher knows, kept in ``<workspace>/service/``: one entry per submission, and re-grade requests.

    >>> load_state(course)["01_tensors_vs_numpy/alice"]["status"]     # doctest: +SKIP
    'graded'

``state.json`` (written atomically after every change) has one entry per ``assignment/student``: the
exchange folder last started (``entry``) and the last whose grading ended (``finished``), a newer one held or
queued (``waiting_for``), the status the student's page shows (``QUEUED``, ``WAITING`` until a stated time,
``GRADING``, ``GRADED``, ``FAILED``), score and a note; and one per quarantined folder (``quarantine/<folder>``).
The progress page reads it; the watcher alone writes it (from several grading threads: one lock). Re-grade
requests are files in ``requests/``, written by the progress page or the ``hub regrade`` command, taken by the
watcher.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from course_utils.atomic import write_atomically
from course_utils.grading.course import Course

#: statuses a (student, assignment) goes through; "graded" and "failed" are final for one submission
QUEUED, WAITING, GRADING, GRADED, FAILED = "queued", "waiting", "grading", "graded", "failed"
#: a folder that named a student but belonged to another account
QUARANTINED = "quarantined"


class State:
    """``<workspace>/service/state.json``: one entry per assignment/student, saved after every change."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "state.json"
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self._lock = threading.Lock()

    def update(self, key: str, **fields) -> dict:
        """Change ``key``'s entry (a field set to None is removed) and save."""
        with self._lock:
            entry = self.entries.setdefault(key, {})
            entry.update(fields, updated=time.time())
            for name in [k for k, v in entry.items() if v is None]:
                del entry[name]
            write_atomically(self.path, json.dumps(self.entries, indent=1, sort_keys=True))
            return dict(entry)


def service_dir(course: Course) -> Path:
    return course.workspace / "service"


def load_state(course: Course) -> dict[str, dict]:
    """The watcher's entries (what the progress page shows); {} before the first submission."""
    return State(service_dir(course)).entries


def regrade_requests(course: Course) -> list[dict]:
    """Pending re-grade requests (and remove their files: the caller acts on them now)."""
    folder = service_dir(course) / "requests"
    requests = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            requests.append(json.loads(path.read_text()))
        except ValueError:
            pass
        path.unlink(missing_ok=True)
    return requests


def request_regrade(course: Course, assignment: str, students: list[str] | None = None) -> Path:
    """Ask the watcher to grade ``assignment`` again (all its graded students by default)."""
    course.check_assignment(assignment)
    body = json.dumps({"assignment": assignment, "students": students or []})
    return write_atomically(service_dir(course) / "requests" / f"{time.time_ns()}.json", body)
