"""``make update``: bring the course's updates into your clone without losing your edits or outputs.

    $ make update                      # or: python -m course_utils.grading lab update [--repo .]

It merges the way the hub merges the lessons into each student's home on every login (nbgitpuller's
``GitPuller``, the tool JupyterHub courses use): your changed files are committed ("Automatic commit by
nbgitpuller"), files you deleted come back, untracked files that the update brings under the same name
are renamed with a timestamp, and the update is merged with ``git merge -Xours``, so where your edit and
the course's change touch the same lines, yours wins; the rest of the course's change arrives.

A notebook is JSON: a line-wise merge of two edits of the same notebook can, rarely, leave it unreadable.
Every notebook the merge touched is checked; one that does not read is restored to your version, and the
course's new version is written beside it as ``<name>.course-update.ipynb``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat

from course_utils.grading.git import GitError, git

REPO = Path(__file__).resolve().parents[3]


class UpdateError(GitError):
    """The clone cannot be updated; the message says what to do."""


def upstream(repo: Path) -> tuple[str, str]:
    """(the URL of ``origin``, the branch it tracks) for the clone at ``repo``, or an UpdateError saying why not."""
    if git(repo, "rev-parse", "--is-inside-work-tree", check=False) != "true":
        raise UpdateError(f"{repo} is not a git clone: get the course with git clone, then make update pulls updates.")
    branch = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if not branch:
        raise UpdateError("You are not on a branch (detached HEAD): git switch main, then make update.")
    tracked = git(repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", check=False)
    if not tracked:
        raise UpdateError(f"Branch {branch} tracks no remote branch: git branch --set-upstream-to=origin/{branch}")
    remote, _, remote_branch = tracked.partition("/")
    if remote != "origin":
        raise UpdateError(
            f"Branch {branch} tracks {tracked}; make update pulls from origin (the course's repository): "
            f"git branch --set-upstream-to=origin/{remote_branch}"
        )
    return git(repo, "remote", "get-url", "origin"), remote_branch


def _unreadable(path: Path) -> str | None:
    try:
        nbformat.read(path, as_version=4)
        return None
    except Exception as error:  # JSON or schema: the merge left something that is not a notebook
        return f"{type(error).__name__}: {str(error)[:200]}"


def repair_notebooks(repo: Path, before: str) -> list[str]:
    """Check every notebook the merge since ``before`` changed; restore unreadable ones to your version and
    write the course's version beside them. Returns what was done, one line per notebook."""
    notes = []
    if not git(repo, "rev-parse", "--quiet", "--verify", "HEAD^2", check=False):
        return notes  # no merge commit (nothing of yours to merge with): the course's files as they are
    changed = git(repo, "diff", "--name-only", before, "HEAD", "--", "*.ipynb").splitlines()
    for name in changed:
        path = repo / name
        if not path.is_file() or (why := _unreadable(path)) is None:
            continue
        theirs = path.with_name(path.stem + ".course-update.ipynb")
        theirs.write_text(git(repo, "show", f"HEAD^2:{name}") + "\n")
        path.write_text(git(repo, "show", f"HEAD^1:{name}") + "\n")
        git(
            repo,
            "-c",
            "user.email=course@localhost",
            "-c",
            "user.name=course update",
            "commit",
            "-q",
            "-m",
            f"Keep my version of {name} (the merged notebook did not read: {why[:80]})",
            "--",
            name,
        )
        notes.append(
            f"{name}: your edits and the course's update could not be merged into one notebook ({why}); "
            f"your version is kept, the course's new version is {theirs.relative_to(repo)}"
        )
    return notes


def update(repo: Path = REPO, echo=print) -> list[str]:
    """Merge the course's updates into the clone at ``repo`` (see the module docstring); return the notes of
    notebooks that needed repair."""
    from nbgitpuller.pull import GitPuller

    repo = Path(repo).resolve()
    url, branch = upstream(repo)
    before = git(repo, "rev-parse", "HEAD")
    try:
        for line in GitPuller(url, str(repo), branch=branch).update():
            echo(line.rstrip())
    except subprocess.CalledProcessError as error:
        raise UpdateError(
            f"The update could not be merged ({' '.join(error.cmd)} exited {error.returncode}); "
            f"your work is safe in git (git log). Ask for help with the output above."
        ) from error
    return repair_notebooks(repo, before) if git(repo, "rev-parse", "HEAD") != before else []
