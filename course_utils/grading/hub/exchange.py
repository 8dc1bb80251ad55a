"""The nbgrader exchange, as the watcher reads it: submissions in ``inbound/``, feedback out.

    >>> parse_entry(Path("alice+01_tensors_vs_numpy+2026-01-01 10:00:00.000000 UTC+abc"))
    Submission(student='alice', assignment='01_tensors_vs_numpy', timestamp='2026-01-01 10:00:00.000000 UTC', path=...)

nbgrader's submit writes ``inbound/<student>+<assignment>+<timestamp>+<random>/`` and, as its last step, opens
the folder up (``0777``). Every folder there was written by a student's account, who can change it at any
moment: so it is read once, through ``grading.files`` (opened without following links, the folder and every
file checked to belong to the student it names, sizes capped), into a folder of the grader's own, and only
that copy is used afterwards. A folder that names one student but belongs to another account is moved out of
the exchange into the grader's quarantine, so that neither the watcher nor the formgrader's *Collect*
(``OwnerCheckedCollect``, nbgrader's collect with the same checks) imports it; ``CheckedList`` keeps a folder
a student made unreadable from stopping the instructor's ``nbgrader list --inbound``.
"""

from __future__ import annotations

import copy
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.exchange.default.list import ExchangeList

from course_utils.grading.course import Course, is_safe_id, working_folder
from course_utils.grading.files import TreeError, copy_tree

#: what each submission's folder may hold in all (notebooks are at most 16 MiB each: c.Limits.notebook_bytes)
SUBMISSION_BYTES = 64 * 2**20
#: nbgrader's files beside the notebooks: the submission's time and the secret its feedback is filed under
METADATA = ("timestamp.txt", "submission_secret.txt")


class SubmissionRefused(RuntimeError):
    """A submission cannot be taken as it is (the message says why; it is the student's to read)."""


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


def inbound_folders(inbound: Path, assignments: set[str]) -> list[Submission]:
    """Every complete nbgrader submission folder of ``assignments`` in ``inbound`` (links, stray files and names
    whose timestamp cannot be read left out: such a name would sort after every real one)."""
    found = []
    for path in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        sub = parse_entry(path)
        if (
            sub is not None
            and sub.assignment in assignments
            and not path.is_symlink()
            and path.is_dir()
            and is_complete(path)
            and submission_time(sub.timestamp) is not None
        ):
            found.append(sub)
    return found


def latest_submissions(inbound: Path, assignments: set[str], check_owner: bool) -> dict[str, Submission]:
    """assignment/student -> that student's newest complete submission (nbgrader's timestamps sort)."""
    latest: dict[str, Submission] = {}
    for sub in inbound_folders(inbound, assignments):
        if check_owner and not owned_by_student(sub):
            continue
        newest = latest.get(sub.key)
        if newest is None or (sub.timestamp, sub.path.name) > (newest.timestamp, newest.path.name):
            latest[sub.key] = sub
    return latest


def forged_entries(inbound: Path, assignments: set[str]) -> list[Submission]:
    """Every entry of ``inbound`` named like a submission of ``assignments`` (complete or not: nbgrader's Collect
    does not wait for the last step of submit) that does not belong to the account it names: a folder, a link
    or a file another account made, or a name the system does not know."""
    found = []
    for path in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        sub = parse_entry(path)
        if sub is not None and sub.assignment in assignments and not owned_by_student(sub):
            found.append(sub)
    return found


def _free_name(folder: Path, name: str) -> Path:
    target, number = folder / name, 1
    while target.exists() or target.is_symlink():
        target, number = folder / f"{name}.{number}", number + 1
    return target


def quarantine(inbound: Path, assignments: set[str], folder: Path) -> list[str]:
    """Move every forged entry (``forged_entries``) from ``inbound`` to ``folder`` (the grader's own); return the
    names moved. A link is moved as a link, never followed."""
    moved = []
    for sub in forged_entries(inbound, assignments):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = _free_name(folder, sub.path.name)
        try:
            os.rename(sub.path, target)
        except FileNotFoundError:  # gone meanwhile
            continue
        except OSError:  # another filesystem: copy what can be read safely, then remove the original
            if sub.path.is_dir() and not sub.path.is_symlink():
                try:
                    copy_tree(sub.path, target, limit=SUBMISSION_BYTES)
                except TreeError:
                    pass
                shutil.rmtree(sub.path, ignore_errors=True)
            else:
                sub.path.unlink(missing_ok=True)
        moved.append(sub.path.name)
    return moved


def stage(sub: Submission, target: Path, limit: int = SUBMISSION_BYTES, check_owner: bool = True) -> list[str]:
    """Copy the submission's regular files (top level; no links; the student's own when ``check_owner``) into
    ``target`` once, at most ``limit`` bytes in all; return what was refused. SubmissionRefused when the folder
    itself is not the student's any more (swapped for a link or another account's folder since it was listed)."""
    uid = student_uid(sub.student) if check_owner else None
    if check_owner and uid is None:
        raise SubmissionRefused(f"{sub.student} is not an account of this machine")
    try:
        report = copy_tree(sub.path, target, limit=limit, owner=uid, recursive=False)
    except TreeError:
        raise SubmissionRefused(
            "the submission folder changed while it was being read (it is no longer the "
            "student's own folder); submit again"
        ) from None
    return [f"{sub.student}/{sub.assignment}/{why}" for why in report.skipped]


def release_feedback(course: Course, exchange: Path, assignment: str, student: str) -> None:
    """Hand the student's feedback HTML to nbgrader's exchange, filed under the timestamp and secret of the
    submission it grades (the grader's copy of them: never an earlier submission's, never none)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    submitted = course.submitted_dir / student / assignment
    target = course.feedback_dir / student / assignment
    missing = [name for name in METADATA if not (submitted / name).is_file()]
    for name in METADATA:
        (target / name).unlink(missing_ok=True)
    if missing:
        raise SubmissionRefused(
            f"the submission has no {' or '.join(missing)}: it was not made by nbgrader's "
            "submit, so its feedback cannot be filed for the student"
        )
    for name in METADATA:
        shutil.copyfile(submitted / name, target / name)
    for page in target.glob("*.html"):  # written 0600; nbgrader's copy keeps the mode, and the student must read
        page.chmod(0o644)  # it (the exchange's feedback folder is 0711: names are secret hashes)
    config = copy.deepcopy(course.config)
    config.Exchange.root = str(exchange)
    with working_folder(course.root):
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        outcome = api.release_feedback(assignment, student)
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader could not release {student}'s feedback on {assignment}: {outcome.get('log')}")


def submission_time(timestamp: str):
    """The UTC time of an nbgrader timestamp (as its folder names write it), or None when it cannot be read.

    >>> submission_time("2026-01-01 10:00:00.000000 UTC").year, submission_time("not a time")
    (2026, None)
    """
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(timestamp)
    except (ValueError, OverflowError, TypeError, AttributeError):
        return None


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's collect (the formgrader's *Collect*, ``nbgrader collect``), taking only folders that belong to
    the student they name and copying them without following links. nbgrader itself only warns about a folder
    owned by someone else ("cheating attempt?") and then imports it, and its copy follows links; and it picks
    each student's newest folder before any check, so a forgery dated later would hide the real one, and one
    folder with a name it cannot read stops the whole Collect.

    Configured for the class with ``c.ExchangeFactory.collect`` (``hub.classroom`` writes it)."""

    def init_src(self):
        """nbgrader's choice of each student's newest submission (before the due date, when asked), made among
        the folders that pass the checks only; every folder left out is named in the log, with why."""
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.exchange.default.collect import groupby
        from nbgrader.utils import check_mode

        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        if not check_mode(self.inbound_path, read=True, execute=True):
            self.fail(f"You don't have read permissions for the directory: {self.inbound_path}")
        student = self.coursedir.student_id or "*"
        records = []
        for path in sorted(Path(self.inbound_path).glob(f"{student}+{self.coursedir.assignment_id}+*")):
            sub = parse_entry(path)
            when = submission_time(sub.timestamp) if sub is not None else None
            why = (
                "its name is not a submission's"
                if sub is None
                else "it does not belong to the account it names"
                if not owned_by_student(sub)
                else "it is not a folder"
                if path.is_symlink() or not path.is_dir()
                else "its timestamp cannot be read"
                if when is None
                else None
            )
            if why:
                self.log.warning("%s: not collected (%s)", path.name, why)
                continue
            records.append({"username": sub.student, "filename": path.name, "timestamp": when})
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for found in groupby(records, lambda record: record["username"]).values():
            newest_first = self._sort_by_timestamp(found)
            in_time = [
                r
                for r in newest_first
                if self.duedate is not None and self.before_duedate and r["timestamp"] <= self.duedate
            ]
            self.src_records.append((in_time or newest_first)[0])

    def do_copy(self, src, dest, log=None):
        sub = parse_entry(Path(src))
        uid = student_uid(sub.student) if sub is not None else None
        if uid is None:
            raise RuntimeError(f"{Path(src).name} names no account of this machine: not collected")
        try:
            copy_tree(Path(src), Path(dest), limit=SUBMISSION_BYTES, owner=uid, hidden=False)
        except TreeError:  # swapped for a link (or another's folder) since it was listed: the others go on
            self.log.warning("%s changed while it was being collected: not collected", Path(src).name)


class CheckedList(ExchangeList):
    """nbgrader's list; of the exchange's inbound, only the folders the instructor can read as nbgrader's submit
    leaves them. nbgrader's own reads every folder's ``submission_secret.txt`` and stops at the first it cannot
    read: one student's folder made by hand (private files, a link in the name of a folder) would stop
    ``nbgrader list --inbound`` for the whole class.

    Configured for the class with ``c.ExchangeFactory.list`` (``hub.classroom`` writes it, instructor only)."""

    def init_dest(self):
        super().init_dest()
        if self.inbound:
            kept = []
            for name in self.assignments:
                why = _unlistable(Path(name))
                if why:
                    self.log.warning("%s: not listed (%s)", Path(name).name, why)
                else:
                    kept.append(name)
            self.assignments = kept


def _unlistable(path: Path) -> str | None:
    """Why nbgrader's list cannot read the inbound folder ``path``, or None when it can."""
    sub = parse_entry(path)
    if sub is None or not owned_by_student(sub):
        return "it does not belong to the account it names"
    if path.is_symlink() or not path.is_dir():
        return "it is not a folder"
    for name in ["submission_secret.txt", *(p.name for p in path.glob("*.ipynb"))]:
        file = path / name
        if (file.exists() or file.is_symlink()) and (
            file.is_symlink() or not file.is_file() or not os.access(file, os.R_OK)
        ):
            return f"{name} cannot be read"
    return None
