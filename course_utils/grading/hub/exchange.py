"""The nbgrader exchange, as the watcher reads it: submissions in ``inbound/``, feedback out.

    >>> parse_entry(Path("alice+01_tensors_vs_numpy+2026-01-01 10:00:00.000000 UTC+abc"))
    Submission(student='alice', assignment='01_tensors_vs_numpy', timestamp='2026-01-01 10:00:00.000000 UTC', path=...)

nbgrader's submit writes ``inbound/<student>+<assignment>+<timestamp>+<random>/`` and, as its last step, opens
the folder up (``0777``). Every folder there was written by a student's account, who can change it at any
moment: so it is read once, through ``grading.files`` (opened without following links, the folder and every
file checked to belong to the student it names, sizes capped), into a folder of the grader's own, and only
that copy is used afterwards. A folder that names one student but belongs to another account is moved out of
the exchange into the grader's quarantine, so that neither the watcher nor the formgrader's *Collect*
(``OwnerCheckedCollect``, nbgrader's collect with the same checks) imports it.
"""

from __future__ import annotations

import copy
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect

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
    """Every complete nbgrader submission folder of ``assignments`` in ``inbound`` (links and stray files left out)."""
    found = []
    for path in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        sub = parse_entry(path)
        if (
            sub is not None
            and sub.assignment in assignments
            and not path.is_symlink()
            and path.is_dir()
            and is_complete(path)
        ):
            found.append(sub)
    return found


def latest_submissions(inbound: Path, assignments: set[str], check_owner: bool) -> dict[str, Submission]:
    """assignment/student -> that student's newest complete submission (nbgrader's timestamps sort)."""
    latest: dict[str, Submission] = {}
    for sub in inbound_folders(inbound, assignments):
        if check_owner and not owned_by_student(sub):
            continue
        if sub.key not in latest or (sub.timestamp, sub.path.name) > (
            latest[sub.key].timestamp,
            latest[sub.key].path.name,
        ):
            latest[sub.key] = sub
    return latest


def quarantine(inbound: Path, assignments: set[str], folder: Path) -> list[str]:
    """Move every folder that names a student but belongs to another account (a forgery, or a name the system
    does not know) from ``inbound`` to ``folder`` (the grader's own); return their names."""
    moved = []
    for sub in inbound_folders(inbound, assignments):
        if owned_by_student(sub):
            continue
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.rename(sub.path, folder / sub.path.name)
        except OSError:  # another filesystem: copy what can be read safely, then remove the original
            copy_tree(sub.path, folder / sub.path.name, limit=SUBMISSION_BYTES)
            shutil.rmtree(sub.path, ignore_errors=True)
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
        outcome = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config).release_feedback(
            assignment, student
        )
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader could not release {student}'s feedback on {assignment}: {outcome.get('log')}")


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's collect (the formgrader's *Collect*, ``nbgrader collect``), taking only folders that belong to
    the student they name and copying them without following links. nbgrader itself only warns about a folder
    owned by someone else ("cheating attempt?") and then imports it, and its copy follows links.

    Configured for the class with ``c.ExchangeFactory.collect`` (``hub.classroom`` writes it)."""

    def init_src(self):
        super().init_src()
        kept = []
        for record in self.src_records:
            sub = parse_entry(Path(self.inbound_path) / record["filename"])
            if sub is not None and owned_by_student(sub):
                kept.append(record)
            else:
                self.log.warning("%s does not belong to the account it names: not collected", record["filename"])
        self.src_records = kept

    def do_copy(self, src, dest, log=None):
        sub = parse_entry(Path(src))
        uid = student_uid(sub.student) if sub is not None else None
        if uid is None:
            raise RuntimeError(f"{Path(src).name} names no account of this machine: not collected")
        copy_tree(Path(src), Path(dest), limit=SUBMISSION_BYTES, owner=uid, hidden=False)
