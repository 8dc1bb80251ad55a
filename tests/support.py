"""What many tests share: the repository's root and a tiny nbgrader course (``from support import ...``).

``make_tiny_course`` makes a whole nbgrader course in a folder, with the repository's ``nbgrader_config.py``
and one assignment ``hw`` of one notebook with one task (``ex_double``: write ``double(x)``; a visible check
and a hidden record). The grading modules' tests run on it. ``local_user`` makes a real unprivileged account
for an attack (as root), ``passable_by_others`` lets it reach the venv's Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
TINY_ANSWER = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
TINY_TEST = (
    "import torch\nfrom course_utils.checks import check_tensor, record\n\n"
    'check_tensor(double(torch.ones(2)), torch.full((2,), 2.0), key="ex_double/visible")\n'
    '### BEGIN HIDDEN TESTS\nrecord("ex_double/hidden", double(torch.arange(3.0)))\n### END HIDDEN TESTS\n'
)


def tiny_notebook(answer: str = TINY_ANSWER) -> nbformat.NotebookNode:
    """The ``hw`` source notebook: a locked prompt, the answer cell and the locked test cell (2 points)."""
    prompt = nbformat.v4.new_markdown_cell("Write `double(x)`, returning `2 * x`.")
    prompt.metadata["nbgrader"] = {
        "grade": False,
        "solution": False,
        "locked": True,
        "grade_id": "ex_double_prompt",
        "schema_version": 3,
    }
    cell = nbformat.v4.new_code_cell(answer)
    cell.metadata["nbgrader"] = {
        "grade": False,
        "solution": True,
        "locked": False,
        "grade_id": "ex_double_answer",
        "schema_version": 3,
    }
    test = nbformat.v4.new_code_cell(TINY_TEST)
    test.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "points": 2,
        "grade_id": "ex_double",
        "schema_version": 3,
    }
    nb = nbformat.v4.new_notebook(cells=[prompt, cell, test])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_tiny_course(root: Path):
    """A course under ``root`` with the repository's config and assignment ``hw`` (notebook ``hw``)."""
    from course_utils.grading.course import Course

    (root / "solutions" / "hw").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    nbformat.write(tiny_notebook(), root / "solutions" / "hw" / "hw.ipynb")
    return Course.load(root)


def submit(course, student: str, answer: str | None, assignment: str = "hw"):
    """Put ``student``'s ``hw`` notebook (the release with this answer) into the course's submitted folder."""
    nb = tiny_notebook(answer if answer is not None else "def double(x):\n    raise NotImplementedError()\n")
    folder = course.submitted_dir / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "hw.ipynb")
    return folder


def execute(nb, cwd: Path, record_file: Path | None = None, **variables: str):
    """Run a notebook top to bottom in a real kernel with nbclient (errors kept in the outputs), with these
    environment ``variables`` added; returns it."""
    import os

    from nbclient import NotebookClient

    env = {k: v for k, v in os.environ.items() if k != "COURSE_RECORD_FILE"} | variables
    if record_file is not None:
        env["COURSE_RECORD_FILE"] = str(record_file)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    return nb


@contextlib.contextmanager
def passable_by_others(paths):
    """Add o+x to every folder on the way to ``paths`` that lacks it; put the modes back afterwards."""
    changed = {}
    for path in paths:
        for folder in [Path(path), *Path(path).parents]:
            mode = folder.stat().st_mode
            if folder.is_dir() and not mode & stat.S_IXOTH and folder not in changed:
                changed[folder] = mode
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed.items():
            os.chmod(folder, stat.S_IMODE(mode))


@contextlib.contextmanager
def local_user(name: str):
    """A real, unprivileged local account (a student with a shell), removed afterwards; yields its pwd entry."""
    import pwd

    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)


def as_user(user, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` (a pwd entry), with no groups and a minimal environment."""
    import sys

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv],
        env=env,
        capture_output=True,
        text=True,
        **kwargs,
    )
