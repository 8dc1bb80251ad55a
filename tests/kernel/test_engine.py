"""course_utils.grading.runner.engine and the kernel template it shares: the default LocalCluster is in-process, its
workers share one template, every notebook still gets a kernel of its own, and the template lives as long as
the engine (tests/kernel/test_cluster.py covers a real scheduler with worker processes)."""

from __future__ import annotations

import shutil
import threading

import nbformat
import psutil
import pytest

from course_utils.grading.runner.engine import Engine
from course_utils.grading.runner.jobs import Job
from course_utils.grading.runner.provisioner import Template
from course_utils.grading.runner.sandbox import JobLimits

LIMITS = JobLimits(cell_timeout=20, notebook_timeout=60, cpu_seconds=60)
#: the kernel's pid, and its grandparent's (kernel -> supervisor -> template)
WHO = (
    "import os\n"
    "supervisor = os.getppid()\n"
    "print(os.getpid(), open(f'/proc/{supervisor}/stat').read().rsplit(')', 1)[1].split()[1])"
)


def job(student: str, *sources: str, sandboxed: bool = False) -> Job:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return Job(student, "hw", "hw", nbformat.writes(nb).encode(), [], None, LIMITS, sandboxed)


def printed(out) -> str:
    nb = nbformat.reads(out.notebook_json, as_version=4)
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.outputs if o.get("output_type") == "stream")


def test_the_default_cluster_runs_its_workers_in_the_graders_process():
    with Engine(workers=2) as engine:
        workers = engine.client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(address.startswith("inproc://") for address in workers)
        assert engine.n_workers == 2


def test_its_workers_share_one_template_and_each_notebook_gets_a_fresh_kernel():
    with Engine(workers=2) as engine:
        outputs = [out for _, out in engine.run([job(f"s{i}", WHO) for i in range(6)])]
        (template,) = Template._shared.values()
        pairs = [printed(out).split() for out in outputs]
    assert all(out.problem is None for out in outputs), [out.problem for out in outputs]
    assert {template_pid for _, template_pid in pairs} == {str(template.process.pid)}
    assert len({kernel for kernel, _ in pairs}) == 6, "no two notebooks share a kernel"


def test_past_four_workers_they_are_worker_processes_of_a_few_threads_each_sharing_a_template():
    with Engine(workers=6) as engine:
        workers = engine.client.scheduler_info()["workers"]
        assert sorted(info["nthreads"] for info in workers.values()) == [3, 3] and engine.n_workers == 6
        assert not any(address.startswith("inproc://") for address in workers)
        outputs = [out for _, out in engine.run([job(f"s{i}", WHO) for i in range(8)])]
    assert all(out.problem is None for out in outputs), [out.problem for out in outputs]
    pairs = [printed(out).split() for out in outputs]
    assert len({kernel for kernel, _ in pairs}) == 8 and len({template for _, template in pairs}) <= 2


def test_the_template_closes_with_the_engine():
    with Engine(workers=1) as engine:
        list(engine.run([job("alice", "1")]))
        (template,) = Template._shared.values()
    assert not Template._shared and template.process.poll() is not None


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")
def test_a_jailed_template_outlives_the_thread_that_started_it():
    # bwrap --die-with-parent ties the jail to the thread that forked it; a thread that ends must not take it along
    Template.close_shared()
    starter = threading.Thread(target=Template.shared, args=(True, LIMITS))
    starter.start()
    starter.join()
    try:
        (template,) = Template._shared.values()
        with Engine(workers=1) as engine:
            ((_, out),) = engine.run([job("alice", "print(6 * 7)", sandboxed=True)])
            assert template.process.poll() is None
        assert out.problem is None and printed(out) == "42\n"
    finally:
        Template.close_shared()


def _listening(process: psutil.Process) -> set:
    return {
        c.laddr
        for p in [process, *process.children(recursive=True)]
        for c in p.net_connections()
        if c.status == "LISTEN"
    }


def test_the_in_process_cluster_serves_no_web_pages_and_listens_on_loopback_only():
    # before: 8787 and random ports on 0.0.0.0 served /json/identity.json, /info/logs, /metrics, /eventstream
    from kernel.test_cluster import http_answers

    with Engine(workers=2):
        ports = _listening(psutil.Process())
        assert ports and all(laddr.ip == "127.0.0.1" for laddr in ports), ports
        assert http_answers(ports) == {}


def test_worker_processes_speak_tls_on_loopback_and_a_student_cannot_join():
    # before: scheduler, nannies and workers on TCP without TLS; a student's Client ran code as root
    from kernel.test_cluster import attack_as_student, http_answers

    with Engine(workers=6) as engine:
        ports = _listening(psutil.Process())
        assert ports and all(laddr.ip == "127.0.0.1" for laddr in ports), ports
        address = engine.client.scheduler_info()["address"]
        workers = list(engine.client.scheduler_info()["workers"])
        assert address.startswith("tls://127.0.0.1:") and all(w.startswith("tls://127.0.0.1:") for w in workers)
        assert http_answers(ports) == {}
        tcp = address.replace("tls://", "tcp://")
        tried = attack_as_student([address, tcp, workers[0]], [])
    assert "ran code" not in tried.values(), tried


@pytest.mark.parametrize("sandboxed", [False, True])
def test_kernels_run_the_course_utils_the_grader_imported(sandboxed):
    # the venv's editable install may name another checkout (run from a worktree): the jail then had no
    # course_utils at all, and an unjailed template silently ran the other checkout's runner
    if sandboxed and shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap (make sandbox-tools)")
    import course_utils

    with Engine(workers=1) as engine:
        ((_, out),) = engine.run(
            [job("alice", "import course_utils\nprint(course_utils.__file__)", sandboxed=sandboxed)]
        )
    assert out.problem is None, out.problem
    assert printed(out).strip() == course_utils.__file__
