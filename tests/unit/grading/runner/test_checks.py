"""What the grader takes from a worker, a kernel's client and its own notes: a worker's result is checked as
untrusted input (``engine.checked_output``), every message is metered (``provisioner.Meter``), the notebook size
cap is computed cell by cell, and the limit notes say what happened."""

from __future__ import annotations

import nbformat

from course_utils.grading.runner.engine import checked_output
from course_utils.grading.runner.execute import _cap_notebook_size, _kernel_death_reason, traffic_budget
from course_utils.grading.runner.jobs import Job, JobOutput
from course_utils.grading.runner.provisioner import Meter
from course_utils.grading.runner.relay import MESSAGE_COST
from course_utils.grading.runner.sandbox import JobLimits

JOB = Job("alice", "hw", "hw", b"{}", [], None, JobLimits(), True)


def test_a_plausible_worker_result_is_kept():
    out = JobOutput(
        "alice",
        "hw",
        "hw",
        notebook_json="{}",
        records_bytes=b"x",
        seconds=1.5,
        limits_hit=["a note"],
        stages={"run_s": 1.0, "kernel_cpu_s": None},
    )
    assert checked_output(out, JOB) is out


def test_a_forged_or_broken_worker_result_becomes_an_internal_error_of_that_notebook():
    forged = [
        {"student": "bob"},
        {"records_bytes": "not bytes"},
        {"records_bytes": b"x" * (JobLimits().record_bytes + 1)},
        {"notebook_json": "x" * (4 * JobLimits().notebook_bytes + 2**21)},
        {"seconds": float("nan")},
        {"limits_hit": "a string"},
        {"limits_hit": ["x" * 5000]},
        {"problem": 42},
        {"stages": {"k": "v"}},
        {"internal_error": "no"},
    ]
    for fields in forged:
        out = JobOutput("alice", "hw", "hw")
        for name, value in fields.items():
            setattr(out, name, value)
        checked = checked_output(out, JOB)
        assert checked is not out and checked.internal_error and checked.student == "alice", fields
    assert checked_output({"student": "alice"}, JOB).internal_error


def test_the_meter_counts_every_message_and_trips_past_its_budget():
    meter = Meter(budget=30 * (MESSAGE_COST + 200) + 100)  # every message costs MESSAGE_COST beyond its bytes
    assert all(meter.count([b"x" * 100, b"y" * 100]) for _ in range(30))
    assert not meter.count([b"z" * 5000]) and meter.tripped == "traffic" and meter.messages == 31


def test_the_traffic_budget_grows_with_cells_and_the_output_budget():
    limits = JobLimits()
    assert traffic_budget(limits, 10) < traffic_budget(limits, 11) < traffic_budget(limits, 11) + limits.output_bytes


def test_the_size_cap_drops_outputs_from_the_end_until_the_notebook_fits():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x", outputs=[nbformat.v4.new_output("stream", name="stdout", text="y" * 100_000)]
            )
            for _ in range(10)
        ]
    )
    assert _cap_notebook_size(nb, JobLimits(notebook_bytes=500_000))
    kept = ["removed" not in cell.outputs[0]["text"] for cell in nb.cells]
    assert kept == [True] * 4 + [False] * 6 and len(nbformat.writes(nb)) <= 500_000
    assert not _cap_notebook_size(nb, JobLimits(notebook_bytes=500_000))


def test_limit_notes_name_what_happened():
    limits = JobLimits(cpu_seconds=10)
    none = {"wall": False, "traffic": False, "malformed": False}
    assert "killed by SIGKILL (not by a limit" in _kernel_death_reason(
        None, {"exit": -9, "cpu_seconds": 1}, limits, none
    )
    assert "CPU-time limit" in _kernel_death_reason(None, {"exit": -9, "cpu_seconds": 11}, limits, none)
    assert "CPU-time limit" in _kernel_death_reason(None, {"exit": -24}, limits, none)
    assert "message size limit (32 MiB" in _kernel_death_reason(None, {"killed_for": "message"}, limits, none)
    assert "kept sending" in _kernel_death_reason(None, {"killed_for": "traffic"}, limits, none)
    assert "cannot read" in _kernel_death_reason(None, {}, limits, dict(none, malformed=True))
    assert "exit status 3" in _kernel_death_reason(None, {"exit": 3}, limits, none)
