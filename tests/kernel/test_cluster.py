"""Grading past one machine: a real ``dask scheduler`` and two ``dask worker`` processes started from the command
line on loopback, one of them killed mid-run. Every submission is graded exactly once, with the points its
answer earns, and the gradebook holds one row per student."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dask.distributed import Client
from nbgrader.api import Gradebook

from course_utils.grading.pipeline.results import load_result, result_totals
from support import make_tiny_course, submit

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SLOW_RIGHT = "import time\ndef double(x):\n    time.sleep(0.0)\n    return 2 * x\ntime.sleep(2)\n"
SLOW_WRONG = "import time\ndef double(x):\n    return x\ntime.sleep(2)\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*argv: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dask"), *argv], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture()
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = {"scheduler": start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                                    log=tmp_path / "scheduler.log")}
    for name in ("w1", "w2"):
        processes[name] = start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                                "--host", "127.0.0.1", log=tmp_path / f"{name}.log")
    try:
        yield address, processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(tmp_path, cluster):
    address, processes = cluster
    course = make_tiny_course(tmp_path / "course")
    expected = {}
    for i in range(10):
        right = i % 2 == 0
        submit(course, f"s{i:02d}", SLOW_RIGHT if right else SLOW_WRONG)
        expected[f"s{i:02d}"] = 2.0 if right else 0.0
    sandbox = [] if shutil.which("bwrap") else ["--no-sandbox"]
    run = subprocess.Popen([sys.executable, "-m", "course_utils.grading", "--course", str(course.root), "autograde",
                            "hw", "--scheduler", address, *sandbox], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    with Client(address, timeout=30) as watcher:
        w1 = next(a for a, info in watcher.scheduler_info()["workers"].items() if info.get("name") == "w1")
        deadline, busy = time.monotonic() + 300, []
        while time.monotonic() < deadline and run.poll() is None and not busy:
            busy = [key for key in watcher.processing(workers=[w1]).get(w1, ()) if "grade-" in str(key)]
            time.sleep(0.1)
        assert busy and run.poll() is None, "w1 never started a grading job"
        os.killpg(processes["w1"].pid, signal.SIGKILL)  # mid-job: w1 is running a student's notebook
        processes["w1"].wait()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    assert "graded 10, unchanged 0" in out, out
    got = {s: result_totals(load_result(course, "hw", s))[0] for s in expected}
    assert got == expected
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        submissions = gb.assignment_submissions("hw")
        assert sorted(s.student.id for s in submissions) == sorted(expected)
    assert "Remove worker" in (tmp_path / "scheduler.log").read_text()
