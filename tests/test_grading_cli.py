"""course_utils.grading.cli: one table of commands, each the function of the same name in the module of the
same name; bad input ends with a one-line error and status 2."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from course_utils.grading.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_the_function_of_its_name_in_the_module_of_its_name(name):
    module = importlib.import_module(f"course_utils.grading.{name}")
    assert callable(getattr(module, name)), f"course_utils.grading.{name} has no function {name}()"


def test_the_readme_commands_are_all_there():
    assert {"release", "collect", "autograde", "feedback", "export"} <= set(COMMANDS)


def test_a_missing_course_is_a_one_line_error(tmp_path, capsys):
    assert main(["--course", str(tmp_path), "export"]) == 2
    assert capsys.readouterr().err.startswith("error: No nbgrader_config.py in")


def test_an_unknown_assignment_is_a_one_line_error(tiny_course, capsys):
    assert main(["--course", str(tiny_course.root), "autograde", "nope", "--no-sandbox"]) == 2
    assert "Unknown assignment 'nope'; the course has: hw" in capsys.readouterr().err


def test_stats_counts_tasks_and_tests(tiny_course, capsys):
    assert main(["--course", str(tiny_course.root), "stats", "--static"]) == 0
    assert "| hw | 1 | 2 | 1 | 1 |" in capsys.readouterr().out


def test_the_module_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and all(name in done.stdout for name in COMMANDS)
