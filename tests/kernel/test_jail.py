"""The jail, end to end: what a jailed kernel can see and do, and the limits that hold for all its processes
together. Each test runs a small notebook through ``run_job`` in a kernel forked from a jailed template."""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading

import nbformat
import pytest
import torch

from course_utils.grading.runner.jobs import Job, run_job
from course_utils.grading.runner.sandbox import JobLimits, mode, probe
from course_utils.grading.runner.uids import COUNT, FIRST_UID
from course_utils.records import RecordError, load_record_bytes

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")
LIMITS = JobLimits(cell_timeout=20, notebook_timeout=60, cpu_seconds=60, memory_bytes=3 * 2**30)


def jailed(*sources, limits=LIMITS, files=()):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = run_job(Job("alice", "hw", "hw", nbformat.writes(nb).encode(), list(files), None, limits, sandboxed=True))
    assert out.problem is None or "rejected" in out.problem, out.problem
    return out, nbformat.reads(out.notebook_json, as_version=4)


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_the_probe_passes_and_names_the_mode():
    assert probe() in ("root", "rootless")


def test_a_kernel_sees_its_own_files_and_the_course_package_only():
    out, nb = jailed(
        "import json, os, sys, course_utils\nprint(json.dumps([os.getuid(), os.getcwd(), "
        "sorted(os.listdir('.')), sorted(os.listdir(os.path.dirname(os.path.dirname(course_utils.__file__)))), "
        "[f for _, _, fs in os.walk('/var/tmp') for f in fs], "
        "len([p for p in os.listdir('/proc') if p.isdigit()])]))",
        files=[("data.csv", b"1,2\n")],
    )
    # repo_view: the course's folder as the jail shows it (the one holding course_utils; the venv may live
    # elsewhere, e.g. a worktree run with the main copy's venv)
    uid, cwd, files, repo_view, spool_seen, processes = json.loads(text(nb.cells[0]))
    assert cwd == "/submission" and files == ["data.csv"]
    assert "course_utils" in repo_view and not {"solutions", "grading", "tests", "exercises"} & set(repo_view)
    assert spool_seen == [], "the spool (other jobs' files) must not be visible"
    assert processes <= 3, "only the kernel and its supervisor live in its pid namespace"
    if mode() == "root":
        assert FIRST_UID <= uid < FIRST_UID + COUNT


def test_a_kernel_cannot_write_outside_its_folders_reach_the_network_or_signal_its_supervisor():
    code = (
        "import os, socket, sys\nbad = []\n"
        "for path in [sys.prefix + '/x', '/etc/x', '/usr/x', '/x', '/var/x', '/var/tmp/x']:\n"
        "    try:\n        open(path, 'w'); bad.append(path)\n    except OSError: pass\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); bad.append('net')\nexcept OSError: pass\n"
        "try:\n    os.kill(1, 9); bad.append('kill 1')\nexcept OSError: pass\n"
        "open('mine.txt', 'w').write('ok')\nprint(bad)"
    )
    out, nb = jailed(code, "print(open('mine.txt').read())")
    assert text(nb.cells[0]) == "[]\n" and text(nb.cells[1]) == "ok\n"


def test_memory_counts_every_process_of_the_kernel_together():
    hog = (
        "import subprocess, sys\nprocs = [subprocess.Popen([sys.executable, '-c', "
        "'import time; x = bytearray(700 * 2**20); time.sleep(30)']) for _ in range(4)]\n"
        "import time; time.sleep(30)"
    )
    out, _ = jailed(hog, limits=JobLimits(cell_timeout=40, notebook_timeout=60, memory_bytes=2 * 2**30))
    assert any("memory limit (2048 MiB for all the kernel's processes" in hit for hit in out.limits_hit), out.limits_hit


def test_cpu_time_counts_every_process_of_the_kernel_together():
    spin = (
        "import subprocess, sys\nprocs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) "
        "for _ in range(3)]\nimport time; time.sleep(40)"
    )
    out, _ = jailed(spin, limits=JobLimits(cell_timeout=50, notebook_timeout=60, cpu_seconds=4))
    assert any("CPU-time limit (4 s for all the kernel's processes)" in hit for hit in out.limits_hit), out.limits_hit
    assert out.stages["kernel_cpu_s"] < 4 + 3 * 2, "stopped soon after the limit"


def test_everything_a_kernel_writes_is_under_a_quota():
    fill = (
        "import errno\nwritten = 0\ntry:\n    with open('big.bin', 'wb') as f:\n"
        "        for _ in range(64):\n            f.write(b'x' * 2**20); written += 1\n"
        "except OSError as e:\n    print('stopped', errno.errorcode[e.errno], written)"
    )
    out, nb = jailed(fill, limits=JobLimits(cell_timeout=20, notebook_timeout=60, disk_bytes=16 * 2**20))
    assert text(nb.cells[0]).startswith("stopped ENOSPC")


def test_a_fork_bomb_stops_at_the_process_limit():
    bomb = (
        "import os, time\nkids = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n        kids += 1\nexcept OSError:\n    pass\nprint(kids)"
    )
    out, nb = jailed(bomb, limits=JobLimits(cell_timeout=20, notebook_timeout=40, nproc=64))
    stopped = any("process limit (64 processes and threads)" in h for h in out.limits_hit)
    refused = text(nb.cells[0]).strip().isdigit() and int(text(nb.cells[0])) < 64
    assert stopped or refused, (out.limits_hit, text(nb.cells[0]))


def test_a_record_file_that_is_a_link_or_too_big_is_rejected():
    link = (
        "import os\nos.makedirs('/records', exist_ok=True)\nos.symlink('/etc/passwd', os.environ['COURSE_RECORD_FILE'])"
    )
    out, _ = jailed(link)
    assert "was it replaced by a link" in out.problem
    big = "open(__import__('os').environ['COURSE_RECORD_FILE'], 'wb').write(b'x' * (3 * 2**20))"
    out, _ = jailed(big, limits=JobLimits(cell_timeout=20, notebook_timeout=60, record_bytes=2**20))
    assert "over the 1 MiB limit" in out.problem


def test_records_too_deep_or_too_big_unpacked_are_refused():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    buffer = io.BytesIO()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # what a kernel can do before it records such a value
    try:
        torch.save({"ex_a/x": {"kind": "value", "value": deep, "params": {}}}, buffer)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(RecordError, match="nested more than"):
        load_record_bytes(buffer.getvalue(), 2**26)
    buffer = io.BytesIO()
    torch.save({"ex_a/x": {"kind": "tensor", "value": torch.zeros(1).expand(2**28), "params": {}}}, buffer)
    assert len(buffer.getvalue()) < 10_000
    with pytest.raises(RecordError, match="more than 64 MiB"):
        load_record_bytes(buffer.getvalue(), 2**26)


def test_files_of_the_submission_never_run_before_the_notebook():
    planted = b"import sys; sys.stderr.write('PLANTED RAN'); raise SystemExit(3)\n"
    out, nb = jailed(
        "import sys; print('ok', [m for m in sys.modules if m in ('helper',)])",
        files=[
            ("ipykernel_launcher.py", planted),
            ("numpy.py", planted),
            ("IPython.py", planted),
            ("zmq.py", planted),
            ("jedi.py", planted),
        ],
    )
    assert text(nb.cells[0]) == "ok []\n" and not out.limits_hit


def test_concurrent_kernels_never_share_a_uid():
    if mode() != "root":
        pytest.skip("without root every kernel is uid 0 of its own user namespace: there are no uids to share")
    uids, errors = [], []

    def one():
        try:
            _, nb = jailed("import os, time; time.sleep(2); print(os.getuid())")
            uids.append(int(text(nb.cells[0])))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(uids)) == 3, (uids, errors)
