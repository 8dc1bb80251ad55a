"""Student folders, read once and never through a link: the one place the grader walks, copies or hashes files.

    >>> report = copy_tree(Path("inbox/alice/01_x"), Path("staging/01_x"))   # doctest: +SKIP
    >>> report.copied, report.skipped                                         # doctest: +SKIP

Every folder below ``course/submitted/``, the exchange or a student's home is controlled by someone who may
swap a file for a link between two looks at it. So a tree is walked through directory handles: each folder is
opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's handle, each file with ``O_NOFOLLOW``, and
what is checked (a regular file, its owner, its size) is the very file that is then read. Links, devices,
pipes and sockets are never opened; they are reported. Sizes are capped by both the apparent size and the
blocks allocated, so a sparse file cannot turn 32 KiB of a student's quota into gigabytes of the grader's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: folders no grading step wants: Jupyter's checkpoints
SKIPPED_FOLDERS = frozenset({".ipynb_checkpoints"})


class TreeError(OSError):
    """The folder itself cannot be read safely (missing, a link, not a folder, or not its owner's)."""


@dataclass
class CopyReport:
    """What a copy did: files copied, and what it refused, each with the reason (relative paths)."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: why"
    bytes: int = 0

    @property
    def links(self) -> list[str]:
        return [s.split(": ", 1)[0] for s in self.skipped if s.endswith(": a link")]


def _kind(mode: int) -> str:
    return (
        "a link"
        if stat.S_ISLNK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a pipe"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )


def open_folder(path: Path, owner: int | None = None) -> int:
    """A handle on the folder ``path`` itself (never a link to one), optionally checked to belong to ``owner``."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as error:
        raise TreeError(
            error.errno, f"{path} cannot be opened as a folder without following links ({error.strerror})"
        ) from None
    if owner is not None and os.fstat(fd).st_uid != owner:
        os.close(fd)
        raise TreeError(f"{path} does not belong to the account it should (uid {owner})")
    return fd


def _walk(dir_fd: int, prefix: str, hidden: bool) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """(relative path, parent handle, name, lstat) for every entry below ``dir_fd``, folders after their files."""
    with os.scandir(dir_fd) as entries:
        found = sorted((entry.name, entry.stat(follow_symlinks=False)) for entry in entries)
    for name, info in found:
        rel = f"{prefix}{name}"
        if name in SKIPPED_FOLDERS or (not hidden and name.startswith(".")):
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:  # swapped for a link (or removed) since it was listed
                yield rel, dir_fd, name, os.stat_result((stat.S_IFLNK,) + (0,) * 9)
                continue
            try:
                yield from _walk(child, f"{rel}/", hidden)
            finally:
                os.close(child)
        else:
            yield rel, dir_fd, name, info


def _chunks(handle, room: int) -> Iterator[bytes]:
    """The file's bytes in chunks of at most 1 MiB, at most ``room + 1`` of them (one more tells it is over)."""
    left = room + 1
    while left > 0:
        chunk = handle.read(min(left, 2**20))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _read(dir_fd: int, name: str, owner: int | None, room: int, sha=None) -> tuple[bytes | None, str | None]:
    """The file's bytes (at most ``room``; fed to ``sha`` instead of kept, when given), or None and why not."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        return None, "a link" if error.errno == getattr(os, "ELOOP", 40) else f"unreadable ({error.strerror})"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, _kind(info.st_mode)
        if owner is not None and info.st_uid != owner:
            return None, "owned by another account"
        if max(info.st_size, info.st_blocks * 512) > room:
            return None, "over the size limit"
        parts, size = [], 0
        for chunk in _chunks(handle, room):
            size += len(chunk)
            if sha is not None:
                sha.update(chunk)
            else:
                parts.append(chunk)
    if size > room:
        return None, "over the size limit"
    return b"".join(parts), None


def read_tree(
    folder: Path,
    *,
    limit: int,
    owner: int | None = None,
    hidden: bool = True,
    include: Callable[[str], bool] = lambda rel: True,
    recursive: bool = True,
    report: CopyReport | None = None,
) -> list[tuple[str, bytes]]:
    """The regular files below ``folder`` as (relative path, bytes), read once through handles, at most
    ``limit`` bytes in all (later files are refused); what is refused goes into ``report``."""
    report = report if report is not None else CopyReport()
    files = []
    root = open_folder(Path(folder), owner)
    try:
        for rel, parent, name, info in _walk(root, "", hidden):
            if not recursive and "/" in rel:
                continue
            if not stat.S_ISREG(info.st_mode):
                report.skipped.append(f"{rel}: {_kind(info.st_mode)}")
                continue
            if not include(rel):
                continue
            data, why = _read(parent, name, owner, limit - report.bytes)
            if why:
                report.skipped.append(f"{rel}: {why}")
                continue
            files.append((rel, data))
            report.copied.append(rel)
            report.bytes += len(data)
    finally:
        os.close(root)
    return files


def write_tree(files: list[tuple[str, bytes]], dest: Path) -> None:
    """Write (relative path, bytes) pairs below ``dest`` (made by the grader: no part of it is a link)."""
    dest = Path(dest)
    for rel, data in files:
        target = dest / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def copy_tree(
    src: Path,
    dest: Path,
    *,
    limit: int = 2**40,
    owner: int | None = None,
    hidden: bool = True,
    recursive: bool = True,
    include: Callable[[str], bool] = lambda rel: True,
) -> CopyReport:
    """Copy the regular files below ``src`` into ``dest`` (see ``read_tree``); return what was done."""
    report = CopyReport()
    write_tree(
        read_tree(src, limit=limit, owner=owner, hidden=hidden, include=include, recursive=recursive, report=report),
        dest,
    )
    Path(dest).mkdir(parents=True, exist_ok=True)
    return report


def regular_files(folder: Path, hidden: bool = False) -> list[str]:
    """Relative paths of the regular files below ``folder`` (links and special files left out), not opened."""
    try:
        root = open_folder(Path(folder))
    except TreeError:
        return []
    try:
        return [rel for rel, _, _, info in _walk(root, "", hidden) if stat.S_ISREG(info.st_mode)]
    finally:
        os.close(root)


def digest(paths) -> str:
    """SHA-256 over the names and contents of the regular files among ``paths`` (checkpoints skipped).

    >>> len(digest([Path("nbgrader_config.py")]))
    64
    """
    sha = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if path.is_file() and not path.is_symlink() and ".ipynb_checkpoints" not in path.parts:
            sha.update(path.name.encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def tree_digest(folder: Path, *extra) -> str:
    """SHA-256 over every entry below ``folder`` (relative names, file bytes, links as such) and ``extra``."""
    sha = hashlib.sha256()
    try:
        root = open_folder(Path(folder))
    except TreeError:
        root = None
    if root is not None:
        try:
            for rel, parent, name, info in _walk(root, "", hidden=True):
                sha.update(repr(rel).encode() + b"\0")
                if not stat.S_ISREG(info.st_mode) or _read(parent, name, None, 2**62, sha)[1]:
                    sha.update(b"\0link")
        finally:
            os.close(root)
    sha.update(repr(extra).encode())
    return sha.hexdigest()
