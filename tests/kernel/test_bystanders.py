"""One submission never costs another student anything: not in another grading run on the same machine (no two
live kernels share a uid, so one student's processes cannot starve another's kernel), and not through a full
disk (a submission cannot fill the grading folder, and when the disk is full anyway nobody is scored 0 for it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from course_utils.grading.pipeline.results import load_result, result_totals
from course_utils.grading.runner.sandbox import mode
from support import make_tiny_course, submit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)"),
]
HONEST = "import os, time\nprint('uid', os.getuid())\ntime.sleep(8)\ndef double(x):\n    return 2 * x\n"
HOG = (
    "import os, time\nprint('uid', os.getuid())\nkids = 0\nfor _ in range(240):\n    if os.fork() == 0:\n"
    "        time.sleep(30); os._exit(0)\n    kids += 1\nprint('forked', kids)\ntime.sleep(8)\n"
    "def double(x):\n    return 2 * x\n"
)


def autograde(course, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "course_utils.grading",
            "--course",
            str(course.root),
            "autograde",
            "hw",
            "--workers",
            "2",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def uid_of(course, student) -> int:
    nb = nbformat.read(course.autograded_dir / student / "hw" / "hw.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    return int(text.split("uid ")[1].split()[0])


def test_two_runs_at_once_share_no_uid_and_one_students_processes_starve_no_one(tmp_path):
    if mode() != "root":
        pytest.skip("without root every kernel is uid 0 of its own user namespace: there are no uids to share")
    first, second = make_tiny_course(tmp_path / "a"), make_tiny_course(tmp_path / "b")
    submit(first, "hog", HOG)
    submit(first, "a1", HONEST)
    submit(second, "b1", HONEST)
    submit(second, "b2", HONEST)
    runs = [autograde(first), autograde(second)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    scores = {
        s: result_totals(load_result(c, "hw", s))[0]
        for c, ss in ((first, ["hog", "a1"]), (second, ["b1", "b2"]))
        for s in ss
    }
    assert scores == {"hog": 2.0, "a1": 2.0, "b1": 2.0, "b2": 2.0}
    uids = [uid_of(first, "hog"), uid_of(first, "a1"), uid_of(second, "b1"), uid_of(second, "b2")]
    assert len(set(uids)) == 4, uids


@pytest.fixture()
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for the grading folder needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_submission_cannot_fill_the_disk_and_a_full_disk_scores_no_one_zero(small_disk):
    course = make_tiny_course(small_disk / "course")
    filler = (
        "import os\nfor folder in ('.', '/tmp'):\n    try:\n        with open(os.path.join(folder, 'f'), 'wb') as h:\n"
        "            while True: h.write(b'x' * 2**24)\n    except OSError as e: print(folder, e.strerror)\n"
        "def double(x):\n    return 2 * x\n"
    )
    submit(course, "filler", filler)
    for student in ("honest1", "honest2"):
        submit(course, student, "def double(x):\n    return 2 * x\n")
    run = autograde(course)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    assert {s: result_totals(load_result(course, "hw", s))[0] for s in ("filler", "honest1", "honest2")} == {
        "filler": 2.0,
        "honest1": 2.0,
        "honest2": 2.0,
    }
    used = shutil.disk_usage(small_disk).used
    assert used < 32 * 2**20, f"the grading folder's disk holds {used} bytes"
    # now the disk is full for reasons of its own: a changed submission cannot be graded, and is not scored 0
    submit(course, "honest2", "def double(x):\n    return x + x\n")
    with open(small_disk / "ballast", "wb") as ballast:
        try:
            while True:
                ballast.write(b"x" * 2**20)
        except OSError:
            pass
    run = autograde(course)
    out, err = run.communicate(timeout=600)
    assert run.returncode != 0
    assert "not graded" in out.lower() or "could not be updated" in err
    assert result_totals(load_result(course, "hw", "honest2"))[0] == 2.0  # the earlier result stands
    (small_disk / "ballast").unlink()
    time.sleep(0.5)
    run = autograde(course)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    assert "graded 1, unchanged 2" in out
