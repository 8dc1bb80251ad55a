"""course_utils.grading.course: the course from nbgrader_config.py, its folders, assignments and digests."""

from __future__ import annotations

import os

import pytest

from course_utils.grading.course import Course, CourseError
from course_utils.grading.files import digest as files_digest
from support import REPO, submit


def test_every_folder_is_a_property_of_the_course(tiny_course):
    root = tiny_course.root
    assert tiny_course.source_dir == root / "solutions"
    assert tiny_course.submitted_dir == root / "grading" / "submitted"
    assert tiny_course.workspace == root / "grading"
    assert (tiny_course.references_dir, tiny_course.results_dir, tiny_course.export_dir) == (
        root / "grading" / "references",
        root / "grading" / "results",
        root / "grading" / "export",
    )
    assert tiny_course.source_notebook("hw", "hw") == root / "solutions" / "hw" / "hw.ipynb"


def test_a_missing_config_or_assignment_says_what_to_do(tmp_path, tiny_course):
    with pytest.raises(CourseError, match="No nbgrader_config.py .* --course PATH"):
        Course.load(tmp_path / "nowhere")
    with pytest.raises(CourseError, match="Unknown assignment 'nope'; the course has: hw"):
        tiny_course.notebooks("nope")


def test_the_repository_is_a_course_with_its_exercises():
    course = Course.load(REPO)
    assert "01_tensors_vs_numpy" in course.assignments()
    assert course.notebooks("01_tensors_vs_numpy") == ["01_tensors_vs_numpy_exercises"]


def test_submitted_students_are_safe_ids_with_a_real_folder(tiny_course):
    submit(tiny_course, "alice", None)
    submit(tiny_course, "bob", None)
    (tiny_course.submitted_dir / ".hidden" / "hw").mkdir(parents=True)
    (tiny_course.submitted_dir / "mallory").mkdir()
    os.symlink(tiny_course.submitted_dir / "alice" / "hw", tiny_course.submitted_dir / "mallory" / "hw")
    assert tiny_course.submitted_students("hw") == ["alice", "bob"]


def test_the_source_digest_follows_the_source(tiny_course):
    before = tiny_course.source_digest("hw")
    assert tiny_course.source_digest("hw") == before
    (tiny_course.source_dir / "hw" / "data.csv").write_text("1,2\n")
    assert tiny_course.source_digest("hw") != before
    extra = tiny_course.root / "nbgrader_config.py"
    assert tiny_course.source_digest("hw", extra) != tiny_course.source_digest("hw")


def test_files_digest_skips_folders_and_checkpoints(tmp_path):
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a.ipynb").write_text("x")
    assert files_digest([tmp_path, tmp_path / ".ipynb_checkpoints" / "a.ipynb"]) == files_digest([])
