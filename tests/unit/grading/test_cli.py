"""course_utils.grading.cli: the one command line (pipeline, lab and hub commands in one parser), each pipeline
command the function of the same name in the module of the same name; bad input ends with a one-line error and
status 2."""

from __future__ import annotations

import importlib

import pytest

from course_utils.grading.cli import COMMANDS, GROUPS, main, parser


@pytest.mark.parametrize("name", ["release", "collect", "autograde", "feedback", "export", "stats"])
def test_every_pipeline_command_is_the_function_of_its_name_in_the_module_of_its_name(name):
    package = "authoring" if name == "stats" else "pipeline"
    module = importlib.import_module(f"course_utils.grading.{package}.{name}")
    assert callable(getattr(module, name)), f"course_utils.grading.{package}.{name} has no function {name}()"


@pytest.mark.parametrize(
    "argv",
    [
        ["hub", "watch", "--exchange", "x"],
        ["hub", "status"],
        ["hub", "regrade", "a"],
        ["hub", "up", "--roster", "r", "--instructor", "t"],
        ["hub", "down"],
        ["lab", "enable"],
        ["lab", "update"],
        ["config"],
        ["autograde"],
    ],
)
def test_every_tool_of_the_course_is_a_command_of_the_one_parser(argv):
    args = parser().parse_args(argv)
    assert args.command in [*COMMANDS.values(), *(c for _, group in GROUPS.values() for c in group.values())]


def test_the_course_may_be_named_before_or_after_the_command():
    assert parser().parse_args(["--course", "/c", "hub", "status"]).course == "/c"
    assert parser().parse_args(["hub", "status", "--course", "/d"]).course == "/d"
    assert parser().parse_args(["export"]).course == "."


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


def test_the_hub_watcher_gets_the_clusters_certificates_as_autograde_does(tiny_course, tmp_path, monkeypatch):
    # the watcher's Engine was built without c.Grader.certificates: with a scheduler it looked for the default
    # folder's certificate only (CertificateError, or another cluster's key)
    from course_utils.grading.hub import watcher

    with open(tiny_course.root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Grader.scheduler = 'tls://127.0.0.1:1'\nc.Grader.certificates = {str(tmp_path)!r}\n")
    seen = []
    monkeypatch.setattr(watcher, "watch", lambda settings, *_: seen.append(settings))
    assert main(["--course", str(tiny_course.root), "hub", "watch", "--exchange", str(tmp_path / "x")]) in (0, None)
    (settings,) = seen
    assert settings.scheduler == "tls://127.0.0.1:1" and settings.certificates == tmp_path
