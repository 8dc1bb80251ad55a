"""course_utils.grading.execute and .kernel: a notebook runs as far as it gets, and the limit that stopped it
is named. These run real kernels without the jail (rlimits only), so they need no bubblewrap."""
from __future__ import annotations

import nbformat
import pytest

from course_utils import env
from course_utils.grading.execute import run_notebook
from course_utils.grading.kernel import JailedKernelManager, plain_env
from course_utils.grading.sandbox import Limits

LIMITS = Limits(cell_timeout=5, notebook_timeout=60, cpu_seconds=60, output_bytes=4096)


def run(tmp_path, *sources, limits=LIMITS):
    work, records = tmp_path / "w", tmp_path / "r"
    work.mkdir()
    records.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    return run_notebook(nb, work, records, limits, None, tmp_path / "kernel.log")


def test_every_cell_runs_and_errors_stay_in_their_cell(tmp_path):
    result = run(tmp_path, "print('hello')", "1 / 0", "print('after')")
    outputs = [cell.outputs for cell in result.notebook.cells]
    assert outputs[0][0]["text"] == "hello\n"
    assert outputs[1][0]["ename"] == "ZeroDivisionError"
    assert outputs[2][0]["text"] == "after\n"
    assert result.limits_hit == [] and not result.kernel_died and result.stopped_by is None


def test_a_cell_past_its_time_limit_is_interrupted_and_the_rest_still_runs(tmp_path):
    result = run(tmp_path, "while True: pass", "print('next')")
    assert result.notebook.cells[0].outputs[-1]["ename"] == "CellTimeoutError"
    assert result.notebook.cells[1].outputs[0]["text"] == "next\n"
    assert result.limits_hit == ["cell time limit (5 s) in cell 0"]


def test_a_kernel_that_dies_is_reported_not_raised(tmp_path):
    result = run(tmp_path, "import os; os._exit(3)", "print('never')")
    assert result.kernel_died and "the kernel died (exit status 3)" in result.stopped_by


def test_output_past_the_budget_is_dropped_with_a_note(tmp_path):
    result = run(tmp_path, "for i in range(2000): print('x' * 50)")
    texts = "".join(o.get("text", "") for o in result.notebook.cells[0].outputs)
    assert "output limit reached" in texts and len(texts) < 3 * LIMITS.output_bytes
    assert result.limits_hit == ["output limit (4 KiB): later output dropped"]


def test_the_unjailed_kernel_gets_the_graders_environment_only(tmp_path):
    result = run(tmp_path, "import os; print(os.environ['COURSE_DEVICE'], os.environ['COURSE_RECORD_FILE'], "
                           "os.environ.get('HOME'), 'SECRET' in os.environ)")
    device, record_file, home, secret = result.notebook.cells[0].outputs[0]["text"].split()
    assert device == "cpu" and record_file == str(tmp_path / "r" / "records.pt")
    assert home == str(tmp_path / "w") and secret == "False"


def test_the_kernel_command_carries_the_rlimits():
    km = JailedKernelManager(jail=None, limits=Limits(cpu_seconds=7), kernel_name="python3")
    assert km.format_kernel_cmd()[:3] == ["prlimit", "--cpu=7", f"--as={Limits().memory_bytes}"]
    assert plain_env(Limits(), "/w", "/r")[env.CACHE_DIR] == "/w"


@pytest.fixture(autouse=True)
def no_secret(monkeypatch):
    monkeypatch.setenv("SECRET", "the grader's own environment must not reach a kernel")
