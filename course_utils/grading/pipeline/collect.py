"""Bring submissions into nbgrader's ``submitted/<student>/<assignment>/`` layout, safely.

Accepted inputs, mixed freely in one folder:

* ``<student>/<assignment>/*.ipynb`` (nbgrader's own layout, other files kept),
* ``<student>.ipynb`` (one notebook per student; needs ``assignment=``),
* ``<student>.zip`` (the assignment's notebooks at the top or inside one folder; needs ``assignment=``).

Anything that does not match a student id, an assignment or one of its notebooks is reported, never
silently dropped. Zips are read member by member: links, absolute or ``..`` paths, and archives that
unpack to more than ``MAX_UNPACKED`` bytes are refused.

    >>> report = collect(course, Path("inbox"), assignment="01_tensors_vs_numpy")  # doctest: +SKIP
    >>> report.collected, report.problems                                           # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from course_utils.grading.course import Course, is_safe_id
from course_utils.grading.files import copy_tree

MAX_UNPACKED = 200 * 2**20
MAX_MEMBERS = 500


@dataclass
class CollectReport:
    collected: list[tuple[str, str]] = field(default_factory=list)  # (student, assignment)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"collected {len(self.collected)} submission(s)"]
        lines += [f"  SKIPPED: {p}" for p in self.problems]
        return "\n".join(lines)


def _safe_member(info: zipfile.ZipInfo) -> tuple[PurePosixPath | None, str | None]:
    """(the member's relative path, None), or (None, why it is refused): links, folders, absolute or
    climbing paths, empty or dot names, hidden files and macOS resource forks."""
    mode = info.external_attr >> 16
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if info.is_dir():
        return None, None
    if stat.S_ISLNK(mode):
        return None, "a link"
    if path.is_absolute() or ".." in path.parts or not path.parts or path.name in ("", "."):
        return None, "an absolute, empty or outside path"
    if info.flag_bits & 0x1:
        return None, "encrypted"
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None, "a hidden file"
    return path, None


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> str | None:
    """Write one member to ``target``; return why it could not be (bad data, a name clash), never raise."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, length=2**20)
        return None
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError, ValueError) as error:
        if target.is_file():
            target.unlink()
        return f"{type(error).__name__}: {str(error)[:120]}"


def unpack_zip(archive: Path, dest: Path) -> list[str]:
    """Extract the safe members of ``archive`` into ``dest`` (flattening one top folder); return problems.

    Every member is checked and extracted on its own: a damaged, encrypted or clashing member is reported
    and skipped, and the archive's other members are still collected.
    """
    problems = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        return [f"{archive.name}: not a readable zip file ({error})"]
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_UNPACKED:
            return [f"{archive.name}: too large (over {MAX_MEMBERS} files or {MAX_UNPACKED // 2**20} MiB unpacked)"]
        members = []
        for info in infos:
            path, why = _safe_member(info)
            if why:
                problems.append(f"{archive.name}: refused member {info.filename!r} ({why})")
            elif path is not None:
                members.append((info, path))
        tops = {p.parts[0] for _, p in members if len(p.parts) > 1}
        flatten = len(tops) == 1 and all(len(p.parts) > 1 for _, p in members)
        for info, path in members:
            rel = PurePosixPath(*path.parts[1:]) if flatten else path
            failure = _extract(zf, info, dest.joinpath(*rel.parts))
            if failure:
                problems.append(f"{archive.name}: member {info.filename!r} could not be extracted ({failure}); skipped")
    return problems


def _install(course: Course, student: str, assignment: str, staged: Path, report: CollectReport) -> None:
    """Atomically replace ``submitted/<student>/<assignment>`` with ``staged`` after checking names."""
    expected = set(course.notebooks(assignment))
    found = {p.stem for p in staged.glob("*.ipynb")}
    for extra in sorted(found - expected):
        report.problems.append(
            f"{student}/{assignment}: {extra}.ipynb is not a notebook of this assignment "
            f"(expected {', '.join(sorted(expected))}); kept but not graded"
        )
    if not found & expected:
        report.problems.append(
            f"{student}/{assignment}: none of the expected notebooks "
            f"({', '.join(sorted(expected))}) was submitted; it will be graded 0"
        )
    target = course.submitted_dir / student / assignment
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{assignment}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
    report.collected.append((student, assignment))


def collect(course: Course, inbox: Path, assignment: str | None = None) -> CollectReport:
    """Collect every submission under ``inbox`` into the course's submitted folder (idempotent)."""
    report = CollectReport()
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"No submissions folder {inbox}.")
    if assignment is not None:
        course.check_assignment(assignment)
    course.submitted_dir.mkdir(parents=True, exist_ok=True)
    known = set(course.assignments())
    for entry in sorted(inbox.iterdir()):
        student = entry.stem if entry.is_file() else entry.name
        if entry.name.startswith("."):
            report.problems.append(f"{entry.name!r}: a hidden file or folder; skipped")
            continue
        if entry.is_symlink():
            report.problems.append(f"{entry.name}: is a link; refused")
            continue
        if not is_safe_id(student):
            report.problems.append(
                f"{entry.name}: {student!r} is not a usable student id (letters, digits and _ . @ + - only)"
            )
            continue
        staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=course.submitted_dir))
        try:
            _collect_entry(course, entry, student, assignment, known, staging, report)
        except OSError as error:  # one unreadable entry must not stop the others from being collected
            report.problems.append(f"{entry.name}: could not be collected ({type(error).__name__}: {error}); skipped")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _collect_entry(course, entry, student, assignment, known, staging, report) -> None:
    if entry.is_dir():
        for sub in sorted(entry.iterdir()):
            if not sub.is_dir() or sub.is_symlink():
                report.problems.append(f"{student}/{sub.name}: not an assignment folder; skipped")
            elif sub.name not in known:
                report.problems.append(
                    f"{student}/{sub.name}: no such assignment (the course has {', '.join(sorted(known))}); skipped"
                )
            else:
                staged = staging / sub.name
                staged.mkdir()
                copied = copy_tree(sub, staged, limit=MAX_UNPACKED)
                for skipped in copied.skipped:
                    name, why = skipped.split(": ", 1)
                    report.problems.append(f"{student}/{sub.name}/{name}: is {why}; not copied")
                _install(course, student, sub.name, staged, report)
        return
    if entry.suffix not in (".ipynb", ".zip"):
        report.problems.append(f"{entry.name}: neither a folder, a .ipynb nor a .zip; skipped")
        return
    if assignment is None:
        report.problems.append(f"{entry.name}: a single file needs --assignment to say which assignment it is")
        return
    staged = staging / assignment
    staged.mkdir()
    if entry.suffix == ".zip":
        problems = unpack_zip(entry, staged)
        report.problems += problems
        if problems and not any(staged.iterdir()):
            return
    else:
        notebooks = course.notebooks(assignment)
        if len(notebooks) != 1:
            report.problems.append(
                f"{entry.name}: {assignment} has {len(notebooks)} notebooks; submit a folder or a zip instead"
            )
            return
        shutil.copyfile(entry, staged / f"{notebooks[0]}.ipynb")
    _install(course, student, assignment, staged, report)
