"""The nbgrader exchange, as the watcher reads it: submissions in ``inbound/``, feedback out.

    >>> parse_entry(Path("alice+01_tensors_vs_numpy+2026-01-01 10:00:00.000000 UTC+abc"))
    Submission(student='alice', assignment='01_tensors_vs_numpy', timestamp='2026-01-01 10:00:00.000000 UTC', path=...)

nbgrader's submit writes ``inbound/<student>+<assignment>+<timestamp>+<random>/`` and, as its last step, opens
the folder up (``0777``). Every folder there was written by a student's account, so it is read once, through
``grading.files`` (no link followed, owner checked), into a folder of the grader's own.
"""
from __future__ import annotations

import copy
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from course_utils.grading.course import Course, is_safe_id, working_folder
from course_utils.grading.files import copy_tree


@dataclass(frozen=True)
class Submission:
    """One folder of the exchange's inbound/."""
    student: str
    assignment: str
    timestamp: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.assignment}/{self.student}"


def parse_entry(path: Path) -> Submission | None:
    """The submission an inbound folder name describes, or None when the name is not nbgrader's."""
    parts = path.name.rsplit("+", 3)
    if len(parts) != 4 or not is_safe_id(parts[0]) or not is_safe_id(parts[1]):
        return None
    return Submission(parts[0], parts[1], parts[2], path)


def is_complete(path: Path) -> bool:
    """nbgrader's submit wrote ``timestamp.txt`` and then made the folder ``0777``: its last step."""
    try:
        return (path.stat().st_mode & 0o777) == 0o777 and (path / "timestamp.txt").is_file()
    except OSError:
        return False


def student_uid(student: str) -> int | None:
    """The uid of the local account named like the student, or None."""
    try:
        return pwd.getpwnam(student).pw_uid
    except KeyError:
        return None


def owned_by_student(sub: Submission) -> bool:
    """True when the folder belongs to the local account named like the student (nobody else's)."""
    uid = student_uid(sub.student)
    try:
        return uid is not None and sub.path.lstat().st_uid == uid
    except OSError:
        return False


def latest_submissions(inbound: Path, assignments: set[str], check_owner: bool) -> dict[str, Submission]:
    """assignment/student -> that student's newest complete submission (nbgrader's timestamps sort)."""
    latest: dict[str, Submission] = {}
    for path in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        sub = parse_entry(path)
        if (sub is None or sub.assignment not in assignments or path.is_symlink() or not path.is_dir()
                or not is_complete(path) or (check_owner and not owned_by_student(sub))):
            continue
        if sub.key not in latest or (sub.timestamp, sub.path.name) > (latest[sub.key].timestamp, latest[sub.key].path.name):
            latest[sub.key] = sub
    return latest


def stage(subs: list[Submission], inbox: Path, limit: int) -> list[str]:
    """Copy each submission's regular files (top level, no links) to ``inbox/<student>/<assignment>``, at most
    ``limit`` bytes each; return what was refused."""
    refused = []
    for sub in subs:
        target = inbox / sub.student / sub.assignment
        target.mkdir(parents=True)
        report = copy_tree(sub.path, target, limit=limit, recursive=False)
        refused += [f"{sub.student}/{sub.assignment}/{why}" for why in report.skipped]
    return refused


def release_feedback(course: Course, exchange: Path, assignment: str, student: str) -> None:
    """Hand the student's feedback HTML to nbgrader's exchange (with the submission's timestamp and secret)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    submitted = course.submitted_dir / student / assignment
    target = course.feedback_dir / student / assignment
    for name in ("timestamp.txt", "submission_secret.txt"):
        if (submitted / name).is_file():
            shutil.copyfile(submitted / name, target / name)
    for page in target.glob("*.html"):   # written 0600; nbgrader's copy keeps the mode, and the student must read
        page.chmod(0o644)                # it (the exchange's feedback folder is 0711: names are secret hashes)
    config = copy.deepcopy(course.config)
    config.Exchange.root = str(exchange)
    with working_folder(course.root):
        outcome = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config).release_feedback(assignment, student)
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader could not release {student}'s feedback on {assignment}: {outcome.get('log')}")
