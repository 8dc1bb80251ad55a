"""git, run the one way the course runs it: in a folder, output as text, a clear error when it fails.

>>> git(Path("."), "rev-parse", "--is-inside-work-tree")   # doctest: +SKIP
'true'
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: who the course's own commits are by (the lessons repo of a classroom)
COURSE_IDENTITY = {
    "GIT_AUTHOR_NAME": "course",
    "GIT_AUTHOR_EMAIL": "course@localhost",
    "GIT_COMMITTER_NAME": "course",
    "GIT_COMMITTER_EMAIL": "course@localhost",
}


class GitError(RuntimeError):
    """A git command failed; the message names it, the folder and git's own words."""


def git(folder: Path, *args: str, check: bool = True, as_course: bool = False) -> str:
    """``git -C folder args...``'s output (stripped); GitError when it fails and ``check``.

    ``as_course`` commits as the course (``COURSE_IDENTITY``) rather than whoever runs it."""
    env = {**os.environ, **COURSE_IDENTITY} if as_course else None
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {folder}: {done.stderr.strip()[:500]}")
    return done.stdout.strip()


def tracked_files(repo: Path) -> list[str]:
    """The repository's files: what git tracks plus new files it does not ignore (relative paths, no links)."""
    out = git(repo, "ls-files", "-z", "-c", "-o", "--exclude-standard")
    return sorted(f for f in set(out.split("\0")) if f and (repo / f).is_file() and not (repo / f).is_symlink())
