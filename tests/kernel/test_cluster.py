"""Grading past one machine: the course's TLS scheduler and two worker processes started from the command line
(``python -m course_utils.grading cluster ...``) on loopback, one worker killed mid-run. Every submission is
graded exactly once, with the points its answer earns, and the gradebook holds one row per student. And no one
but the grader can use the cluster: a real unprivileged local user's ``distributed.Client`` is refused, whether
it speaks TLS without the course's certificate or plain TCP, and cannot read the certificate."""

from __future__ import annotations

import json
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
from course_utils.grading.runner import cluster as cluster_module
from support import REPO, as_user, local_user, make_tiny_course, passable_by_others, submit

pytestmark = pytest.mark.slow
SLOW_RIGHT = "import time\ndef double(x):\n    time.sleep(0.0)\n    return 2 * x\ntime.sleep(2)\n"
SLOW_WRONG = "import time\ndef double(x):\n    return x\ntime.sleep(2)\n"
#: what a student tries with the cluster's addresses: join as a client and run code as the grader's user
INTRUDER = """
import json, sys
from distributed import Client
tried = {}
for address in sys.argv[1:]:
    try:
        with Client(address, timeout=10) as client:
            client.run_on_scheduler(lambda: open("/tmp/owned-by-dask", "w").write("x"))
            tried[address] = "ran code"
    except Exception as error:
        tried[address] = type(error).__name__
for path in sys.stdin.read().split():
    try:
        open(path).read(); tried[path] = "read"
    except OSError as error:
        tried[path] = type(error).__name__
print(json.dumps(tried))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*argv: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "course_utils.grading", "cluster", *argv],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )


@pytest.fixture()
def certificates(tmp_path):
    return cluster_module.make_certificates(tmp_path / "certs")


@pytest.fixture()
def cluster(tmp_path, certificates):
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    processes = {
        "scheduler": start(
            "scheduler", "--port", str(port), "--certificates", str(certificates), log=tmp_path / "scheduler.log"
        )
    }
    deadline = time.monotonic() + 120
    while "scheduler at" not in (tmp_path / "scheduler.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in ("w1", "w2"):
        processes[name] = start(
            "worker",
            address,
            "--nthreads",
            "1",
            "--name",
            name,
            "--certificates",
            str(certificates),
            log=tmp_path / f"{name}.log",
        )
    try:
        with Client(address, timeout=60, security=cluster_module.security(certificates)) as client:
            client.wait_for_workers(2, timeout=180)
        yield address, processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def attack_as_student(addresses: list[str], readable: list[Path]) -> dict:
    """Run ``INTRUDER`` as a fresh unprivileged local user; what each attempt came to."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root to create a local user")
    Path("/tmp/owned-by-dask").unlink(missing_ok=True)
    with (
        local_user(f"cgstudent{os.getpid() % 10000}") as user,
        passable_by_others([Path(os.path.realpath(sys.executable)).parent, Path(sys.prefix), REPO]),
    ):
        done = as_user(
            user,
            [sys.executable, "-c", INTRUDER, *addresses],
            input=" ".join(map(str, readable)),
            timeout=300,
            cwd="/tmp",
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not Path("/tmp/owned-by-dask").exists(), "a student ran code through the grader's cluster"
    return json.loads(done.stdout.splitlines()[-1])


def test_a_student_cannot_join_the_tls_cluster_nor_read_its_certificate(cluster, certificates):
    # before: tcp:// without authentication; run_on_scheduler(f) ran as uid 0 in the grader and the workers
    address, _ = cluster
    port = address.rsplit(":", 1)[1]
    tried = attack_as_student([address, f"tcp://127.0.0.1:{port}"], [certificates / "cluster.key"])
    assert tried[address] != "ran code" and tried[f"tcp://127.0.0.1:{port}"] != "ran code", tried
    assert tried[str(certificates / "cluster.key")] == "PermissionError", tried
    assert oct(os.stat(certificates / "cluster.key").st_mode & 0o777) == "0o600"


def test_the_cluster_refuses_plain_tcp_and_serves_no_web_pages(cluster):
    address, processes = cluster
    with pytest.raises(cluster_module.CertificateError, match="TLS only"):
        cluster_module.check_address(address.replace("tls://", "tcp://"))
    import psutil

    ports = {
        c.laddr
        for p in processes.values()
        for proc in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        for c in proc.net_connections()
        if c.status == "LISTEN"
    }
    assert ports and all(laddr.ip == "127.0.0.1" for laddr in ports), ports
    assert http_answers(ports) == {}, "a member serves Dask's pages"


def http_answers(listening) -> dict:
    """The ports among ``listening`` that answer 200 to one of Dask's informative routes."""
    import urllib.error
    import urllib.request

    answered = {}
    for laddr in listening:
        for route in ("/json/identity.json", "/info/logs", "/metrics", "/eventstream", "/health", "/status"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{laddr.port}{route}", timeout=3) as response:
                    answered[(laddr.port, route)] = response.status
            except (urllib.error.URLError, OSError, ValueError):
                continue
    return answered


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(tmp_path, cluster, certificates):
    address, processes = cluster
    course = make_tiny_course(tmp_path / "course")
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Grader.certificates = {str(certificates)!r}\n")
    expected = {}
    for i in range(10):
        right = i % 2 == 0
        submit(course, f"s{i:02d}", SLOW_RIGHT if right else SLOW_WRONG)
        expected[f"s{i:02d}"] = 2.0 if right else 0.0
    sandbox = [] if shutil.which("bwrap") else ["--no-sandbox"]
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "course_utils.grading",
            "--course",
            str(course.root),
            "autograde",
            "hw",
            "--scheduler",
            address,
            *sandbox,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Client(address, timeout=30, security=cluster_module.security(certificates)) as watcher:
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
