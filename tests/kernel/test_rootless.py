"""Grading without root: the same jail from unprivileged user namespaces. As root, the test grades a tiny course
as the unprivileged user ``nobody`` (giving it, for the test's duration only, the right to pass through the
folders that lead to the course's Python and package)."""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.grading.pipeline.results import load_result, result_totals
from support import REPO, make_tiny_course, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")]


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


def test_an_unprivileged_instructor_grades_in_the_same_jail(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("this run is unprivileged already: every sandboxed test here is the rootless case")
    nobody = pwd.getpwnam("nobody")
    root = Path("/var/tmp") / f"rootless-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    course = make_tiny_course(root / "course")
    submit(course, "right", "def double(x):\n    return x + x\n")
    submit(course, "escape", "import os\ntry:\n    os.setuid(0); print('setuid worked')\nexcept OSError:\n"
                             "    print('no')\nopen('/etc/owned', 'w')\n")
    for folder, _, files in os.walk(root):
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    try:
        with passable_by_others([Path(os.path.realpath(sys.executable)).parent, Path(sys.prefix), REPO]):
            done = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                                   sys.executable, "-m", "course_utils.grading", "--course", str(course.root),
                                   "autograde", "hw", "--workers", "1"], env=env, capture_output=True, text=True,
                                  timeout=600, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        assert result_totals(load_result(course, "hw", "right"))[0] == 2.0
        escape = load_result(course, "hw", "escape")
        assert result_totals(escape)[0] == 0.0
        assert not Path("/etc/owned").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
