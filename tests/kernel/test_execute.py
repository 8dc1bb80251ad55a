"""course_utils.grading.runner.execute, .kernel, .template and .jobs without the jail: a notebook runs in a kernel
forked from the template, as far as it gets, and the limit that stopped it is named (tests/kernel/test_jail.py runs
the same jailed)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys

import nbformat
import pytest
from jupyter_client.provisioning import KernelProvisionerBase

from course_utils.grading.runner.execute import CappedClient
from course_utils.grading.runner.jobs import Job, run_job
from course_utils.grading.runner.provisioner import QuickReadyClient, template_kernel_manager
from course_utils.grading.runner.sandbox import JobLimits
from course_utils.records import load_record_bytes
from support import REPO

LIMITS = JobLimits(cell_timeout=5, notebook_timeout=60, cpu_seconds=60, output_bytes=4096)


def run(*sources, limits=LIMITS, files=()):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = run_job(Job("alice", "hw", "hw", nbformat.writes(nb).encode(), list(files), None, limits, sandboxed=False))
    return out, nbformat.reads(out.notebook_json, as_version=4) if out.notebook_json else None


def texts(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def test_every_cell_runs_and_errors_stay_in_their_cell():
    out, nb = run("print('hello')", "1 / 0", "print('after')")
    assert texts(nb.cells[0]) == "hello\n"
    assert nb.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert texts(nb.cells[2]) == "after\n"
    assert out.limits_hit == [] and out.problem is None


def test_a_cell_past_its_time_limit_is_interrupted_and_the_rest_still_runs():
    out, nb = run("while True: pass", "print('next')")
    assert nb.cells[0].outputs[-1]["ename"] == "CellTimeoutError"
    assert texts(nb.cells[1]) == "next\n"
    assert out.limits_hit == ["cell time limit (5 s) in cell 0"]


def test_a_kernel_that_dies_is_reported_not_raised():
    out, _ = run("import os; os._exit(3)", "print('never')")
    assert any("the kernel died (exit status 3)" in hit for hit in out.limits_hit), out.limits_hit


def test_output_past_the_budget_is_dropped_with_a_note_display_updates_included():
    out, nb = run("for i in range(2000): print('x' * 50)")
    assert "output limit reached" in texts(nb.cells[0]) and len(texts(nb.cells[0])) < 3 * LIMITS.output_bytes
    assert out.limits_hit == ["output limit (4 KiB): later output dropped"]
    out, nb = run(
        "from IPython.display import display, update_display\nh = display('a', display_id=True)\n"
        "for i in range(200): h.update('y' * 1000)"
    )
    assert out.limits_hit == ["output limit (4 KiB): later output dropped"]
    assert len(nbformat.writes(nb)) < 20_000


def test_the_kernel_gets_the_graders_environment_only_and_its_files(monkeypatch):
    monkeypatch.setenv("SECRET", "the grader's own environment must not reach a kernel")
    out, nb = run(
        "import os; print(os.environ['COURSE_DEVICE'], 'SECRET' in os.environ, open('data.txt').read())",
        files=[("data.txt", b"given")],
    )
    assert texts(nb.cells[0]) == "cpu False given\n"


def test_records_come_back_as_bytes_the_grader_reads_safely():
    out, _ = run("import torch\nfrom course_utils.checks import record\nrecord('ex_a/x', torch.arange(3))")
    records = load_record_bytes(out.records_bytes, LIMITS.record_bytes)
    assert records["ex_a/x"]["value"].tolist() == [0, 1, 2]


def test_the_submission_folder_joins_sys_path_only_when_the_notebook_runs():
    planted = b"open('/tmp/planted-ran', 'w').write('x')\nraise SystemExit('planted module ran')\n"
    out, nb = run(
        "import os; print(os.path.exists('/tmp/planted-ran'))",
        "import helper; print(helper.VALUE)",
        files=[("ipykernel_launcher.py", planted), ("jedi.py", planted), ("helper.py", b"VALUE = 7\n")],
    )
    assert texts(nb.cells[0]) == "False\n" and texts(nb.cells[1]) == "7\n"


def test_a_notebook_that_is_not_one_is_a_problem_not_a_crash():
    out = run_job(Job("alice", "hw", "hw", b'{"cells": "rm -rf /", "nbformat": 4}', [], None, LIMITS, False))
    assert out.problem.startswith("hw.ipynb is not a valid notebook")
    big = JobLimits(notebook_bytes=1000)
    out = run_job(Job("alice", "hw", "hw", b" " * 2000, [], None, big, False))
    assert "over the 0 MiB limit" in out.problem or "over the" in out.problem


def test_a_missing_notebook_is_a_problem():
    assert run_job(Job("alice", "hw", "hw", None, [], None, LIMITS, False)).problem == "hw.ipynb was not submitted"


def test_the_kernel_is_a_template_job_through_jupyter_clients_provisioner_api():
    km, job = template_kernel_manager(None, {"job_dir": "/var/tmp/x"})
    assert isinstance(job, KernelProvisionerBase) and km.provisioner is job
    assert km.transport == "ipc" and km.connection_file == "/var/tmp/x/ipc/kernel.json"
    assert not km.autorestart  # a kernel stopped for a limit must stay stopped


def test_interrupts_go_through_the_control_channel_and_the_connection_is_ipc_in_the_job(tmp_path):
    (tmp_path / "ipc").mkdir()
    km, job = template_kernel_manager(None, {"job_dir": str(tmp_path)})
    km.kernel_spec.interrupt_mode = "signal"
    asyncio.run(job.pre_launch())
    assert km.kernel_spec.interrupt_mode == "message"
    written = json.loads((tmp_path / "ipc" / "kernel.json").read_text())
    assert written["transport"] == "ipc" and written["ip"] == str(tmp_path / "ipc" / "k")


def test_the_kernel_client_is_ready_without_a_fifth_of_a_second_of_silence():
    km, _ = template_kernel_manager(None, {"job_dir": "/var/tmp/x"})
    client = km.client()
    assert isinstance(client, QuickReadyClient)
    assert type(client).wait_for_ready is QuickReadyClient.wait_for_ready  # what nbclient calls


HUGE_MESSAGE = """
import json, resource, sys
sys.path[:0] = ["tests", "tests/kernel"]
from test_execute import run, texts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out, nb = run("print('before')",
              "from IPython.display import display\\ndisplay({'text/plain': 'x' * (200 * 2**20)}, raw=True)",
              "print('after')")
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
print(json.dumps([grew, out.problem, out.limits_hit, len(out.notebook_json), [texts(c) for c in nb.cells]]))
"""


def test_a_kernel_that_sends_one_huge_message_is_stopped_before_the_grader_reads_it():
    # in a process of its own, so that the peak resident size is this run's: parsing a 200 MiB display
    # message would cost the grader several times that; the job's relay refuses it at its first frame's header
    # and stops the kernel, so the next cell never runs
    done = subprocess.run([sys.executable, "-c", HUGE_MESSAGE], capture_output=True, text=True, timeout=300, cwd=REPO)
    grew_mib, problem, limits_hit, size, outputs = json.loads(done.stdout.splitlines()[-1])
    assert grew_mib < JobLimits().message_bytes // 2**20, f"the grader's peak grew by {grew_mib} MiB"
    assert problem is None and size < 2**20 and outputs[0] == "before\n" and outputs[2] == ""
    assert any("message size limit (32 MiB" in hit and "before the grader read it" in hit for hit in limits_hit), (
        limits_hit
    )


def test_a_worker_keeps_no_thread_or_zmq_context_of_the_notebooks_it_ran():
    run("1")
    threads = len(os.listdir("/proc/self/task"))  # every thread, ZMQ's I/O threads included
    for _ in range(3):
        run("1")
    assert len(os.listdir("/proc/self/task")) == threads
    gc.collect()  # a client in a reference cycle (an earlier test's traceback) is garbage, not kept
    assert not [o for o in gc.get_objects() if isinstance(o, CappedClient)]


def test_every_cell_sees_the_output_of_the_first_although_readiness_is_quick():
    out, nb = run("print('first')", "print('second')")
    assert (texts(nb.cells[0]), texts(nb.cells[1])) == ("first\n", "second\n") and out.problem is None


@pytest.fixture(autouse=True)
def no_leftover(tmp_path):
    yield
