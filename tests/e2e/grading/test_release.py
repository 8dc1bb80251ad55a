"""course_utils.grading.pipeline.release: nbgrader's generate_assignment, into exercises/ or elsewhere."""

from __future__ import annotations

import nbformat

from course_utils.grading.pipeline.release import ensure_released, in_gradebook, release


def test_release_writes_the_student_version_and_records_the_cells(tiny_course):
    assert release(tiny_course) == ["hw"]
    released = (tiny_course.root / "exercises" / "hw" / "hw.ipynb").read_text()
    assert "raise NotImplementedError()" in released and "BEGIN SOLUTION" not in released
    assert "BEGIN HIDDEN TESTS" not in released and "ex_double/hidden" not in released
    assert in_gradebook(tiny_course, "hw")


def test_release_into_another_folder_leaves_the_course_alone(tiny_course, tmp_path):
    release(tiny_course, into=tmp_path / "elsewhere")
    nb = nbformat.read(tmp_path / "elsewhere" / "hw" / "hw.ipynb", as_version=4)
    assert "NotImplementedError" in nb.cells[1].source
    assert not (tiny_course.root / "exercises").exists() and not tiny_course.db_path.exists()


def test_ensure_released_releases_again_only_when_the_source_changed(tiny_course, monkeypatch):
    import course_utils.grading.pipeline.release as module

    calls = []
    real = module.release
    monkeypatch.setattr(module, "release", lambda course, names: calls.append(names) or real(course, names))
    ensure_released(tiny_course, "hw")
    ensure_released(tiny_course, "hw")
    assert calls == [["hw"]]
    source = tiny_course.source_notebook("hw", "hw")
    source.write_text(source.read_text().replace("returning", "which returns"))
    ensure_released(tiny_course, "hw")
    assert calls == [["hw"], ["hw"]]
