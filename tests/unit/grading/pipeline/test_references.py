"""course_utils.grading.pipeline.references: the solution's records are cached under a key that covers all they
depend on."""

from __future__ import annotations

import pytest
import torch

from course_utils.grading.course import CourseError
from course_utils.grading.pipeline import references
from course_utils.grading.runner.jobs import JobOutput

RECORDS = {"ex_double/hidden": {"kind": "tensor", "value": torch.arange(3.0) * 2, "params": {}}}


def test_the_key_changes_with_the_source_and_with_any_course_module(tiny_course, tmp_path, monkeypatch):
    key = references.reference_key(tiny_course, "hw")
    assert key == references.reference_key(tiny_course, "hw") and torch.__version__ in key
    (tiny_course.source_dir / "hw" / "hw.ipynb").write_text(
        (tiny_course.source_dir / "hw" / "hw.ipynb").read_text().replace("2 * x", "x * 2")
    )
    changed_source = references.reference_key(tiny_course, "hw")
    assert changed_source != key
    package = tmp_path / "course_utils"
    package.mkdir()
    for module in references.PACKAGE_ROOT.glob("*.py"):
        (package / module.name).write_bytes(module.read_bytes())
    monkeypatch.setattr(references, "PACKAGE_ROOT", package)
    assert references.reference_key(tiny_course, "hw") == changed_source
    (package / "data.py").write_text((package / "data.py").read_text() + "\n# changed\n")
    assert references.reference_key(tiny_course, "hw") != changed_source


def test_stored_references_are_found_under_their_key_only(tiny_course):
    out = JobOutput(references.REFERENCE, "hw", "hw")
    stored = references.store_reference(tiny_course, out, RECORDS, "key-1")
    assert torch.equal(stored["ex_double/hidden"]["value"], RECORDS["ex_double/hidden"]["value"])
    assert references.cached_reference(tiny_course, "hw", "hw", "key-1").keys() == RECORDS.keys()
    assert references.cached_reference(tiny_course, "hw", "hw", "key-2") is None
    assert sorted(p.name for p in (tiny_course.references_dir / "hw").iterdir()) == ["hw.key", "hw.pt"]


def test_a_solution_that_did_not_run_cleanly_is_refused(tiny_course):
    for out, records in (
        (JobOutput(references.REFERENCE, "hw", "hw", limits_hit=["memory limit"]), RECORDS),
        (JobOutput(references.REFERENCE, "hw", "hw", problem="hw.ipynb was not submitted"), {}),
        (JobOutput(references.REFERENCE, "hw", "hw"), {}),
    ):
        with pytest.raises(CourseError, match="nothing trusted to grade against"):
            references.store_reference(tiny_course, out, records, "k")


def test_the_reference_job_runs_the_source_unsanitized(tiny_course):
    job = references.reference_job(tiny_course, "hw", "hw", sandboxed=False)
    assert job.notebook_bytes == tiny_course.source_notebook("hw", "hw").read_bytes() and job.snapshot is None
    assert job.student == references.REFERENCE


def test_a_solution_that_fails_its_own_test_cell_is_refused(tiny_course):
    import nbformat

    from support import tiny_notebook

    nb = tiny_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="CheckFailure", evalue="x", traceback=[])]
    out = JobOutput(references.REFERENCE, "hw", "hw", notebook_json=nbformat.writes(nb))
    with pytest.raises(CourseError, match="its own test cell.s. ex_double fail"):
        references.store_reference(tiny_course, out, RECORDS, "k")
