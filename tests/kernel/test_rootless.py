"""Grading without root: the same jail from unprivileged user namespaces. As root, the test grades a tiny course
as the unprivileged user ``nobody`` (giving it, for the test's duration only, the right to pass through the
folders that lead to the course's Python and package)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.grading.pipeline.results import load_result, result_totals
from support import REPO, make_tiny_course, passable_by_others, submit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)"),
]


def test_an_unprivileged_instructor_grades_in_the_same_jail(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("this run is unprivileged already: every sandboxed test here is the rootless case")
    nobody = pwd.getpwnam("nobody")
    root = Path("/var/tmp") / f"rootless-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    course = make_tiny_course(root / "course")
    submit(course, "right", "def double(x):\n    return x + x\n")
    submit(
        course,
        "escape",
        "import os\ntry:\n    os.setuid(0); print('setuid worked')\nexcept OSError:\n"
        "    print('no')\nopen('/etc/owned', 'w')\n",
    )
    for folder, _, files in os.walk(root):
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    try:
        with passable_by_others([Path(os.path.realpath(sys.executable)).parent, Path(sys.prefix), REPO]):
            done = subprocess.run(
                [
                    "setpriv",
                    f"--reuid={nobody.pw_uid}",
                    f"--regid={nobody.pw_gid}",
                    "--clear-groups",
                    sys.executable,
                    "-m",
                    "course_utils.grading",
                    "--course",
                    str(course.root),
                    "autograde",
                    "hw",
                    "--workers",
                    "1",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                cwd=root,
            )
        assert done.returncode == 0, done.stderr[-3000:]
        assert result_totals(load_result(course, "hw", "right"))[0] == 2.0
        escape = load_result(course, "hw", "escape")
        assert result_totals(escape)[0] == 0.0
        assert not Path("/etc/owned").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


ROOTLESS_ATTACKS = """
import json, sys
sys.path[:0] = ["tests", "tests/kernel"]
from test_attacks import DEV, LOOK, PLANT, jailed, notes, text
from course_utils.grading.runner.sandbox import JobLimits, mode
assert mode() == "rootless"
_, first = jailed(PLANT)
_, second = jailed(LOOK)
hog = ("import os\\nchunk = b'x' * 2**24\\nfds = [os.memfd_create(f'hog{i}') for i in range(16)]\\n"
       "for fd in fds:\\n    for _ in range(15):\\n        os.write(fd, chunk)\\nprint('held')")
memfd, _ = jailed(hog, limits=JobLimits(cell_timeout=60, notebook_timeout=120, memory_bytes=2 * 2**30))
_, probe = jailed("import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
                  "print(libc.unshare(0x10000000), libc.syscall(425, 1, 0), open('/proc/self/status').read().split("
                  "'CapBnd:')[1].split()[0])")
print(json.dumps([text(first.cells[0]), text(second.cells[0]), notes(memfd), text(probe.cells[0]), DEV]))
"""


def test_rootless_jobs_leave_nothing_for_the_next_and_memfd_counts(tmp_path):
    # before: bwrap's /dev was one tmpfs for every job of a template, writable by every kernel (uid 0 of the
    # template's user namespace): 6 x 200 MiB planted there, seen by a later student with two keyring keys
    if os.geteuid() != 0:
        pytest.skip("this run is unprivileged already: the other kernel tests are the rootless case")
    nobody = pwd.getpwnam("nobody")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    with passable_by_others([Path(os.path.realpath(sys.executable)).parent, Path(sys.prefix), REPO]):
        done = subprocess.run(
            [
                "setpriv",
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                sys.executable,
                "-c",
                ROOTLESS_ATTACKS,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=REPO,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    planted, looked, memfd, probe, dev = json.loads(done.stdout.splitlines()[-1])
    assert "/dev/planted" not in planted and "('key', -1)" in planted, planted
    assert looked.strip() == str([("shm", -1), ("dev", dev)]), looked
    assert "memory limit (2048 MiB" in memfd, memfd
    assert probe.split() == ["-1", "-1", "0000000000000000"], probe
