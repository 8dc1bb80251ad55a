"""course_utils.grading.config: the grader's settings come from nbgrader_config.py, as nbgrader's do."""

from __future__ import annotations

from course_utils.grading.config import describe
from course_utils.grading.course import Course


def _course(tiny_course, extra: str) -> Course:
    config = tiny_course.root / "nbgrader_config.py"
    config.write_text(config.read_text() + "\n" + extra)
    return Course.load(tiny_course.root)


def test_limits_are_read_from_nbgrader_config(tiny_course):
    course = _course(tiny_course, "c.Limits.memory_bytes = 2 * 2**30\nc.Limits.cell_timeout = 30\n")
    assert course.limits.memory_bytes == 2 * 2**30 and course.limits.cell_timeout == 30
    assert course.limits.notebook_timeout == 900  # at least three cells' worth, and the default otherwise


def test_the_cell_timeout_follows_nbgraders_execute_timeout_unless_set(tiny_course):
    course = _course(tiny_course, "c.Execute.timeout = 400\n")
    assert course.limits.cell_timeout == 400 and course.limits.notebook_timeout == 1200


def test_grader_and_watcher_settings(tiny_course):
    course = _course(tiny_course, "c.Grader.workers = 3\nc.Watcher.min_interval = 5.0\nc.Grader.keep_jobs = True\n")
    assert course.setting("Grader", "workers") == 3 and course.setting("Watcher", "min_interval") == 5.0
    assert course.setting("Grader", "keep_jobs") is True and course.setting("Watcher", "poll") == 1.0


def test_describe_lists_every_setting_with_its_effective_value(tiny_course):
    text = describe(_course(tiny_course, "c.Limits.nproc = 99\n").config)
    assert "c.Limits.nproc = 99" in text and "c.Limits.cell_timeout = 300" in text  # Execute.timeout of the repo
    assert "c.Grader.workers = 0" in text and "c.Watcher.min_interval = 60.0" in text
