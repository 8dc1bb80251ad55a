"""What each side imports, in a fresh Python: the learner's side never the grader, the grader's light commands
never torch, the student's copy only what it carries (subprocesses: a clean sys.modules each)."""

from __future__ import annotations

import subprocess
import sys

from course_utils.grading.cli import COMMANDS


def test_the_learner_side_never_imports_the_grader():
    code = (
        "import sys, course_utils.checks, course_utils.compare; "
        "bad = [m for m in sys.modules if m.startswith('course_utils.grading')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_feedback_export_and_results_never_import_torch():
    code = (
        "import sys\nimport course_utils.grading.pipeline.feedback, course_utils.grading.pipeline.export, "
        "course_utils.grading.pipeline.results, course_utils.grading.cli\nprint('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_module_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and all(name in done.stdout for name in COMMANDS)


def test_the_graders_constraint_check_and_the_lab_side_never_import_torch():
    code = (
        "import sys\nimport course_utils.grading.pipeline.constraints, course_utils.constraint_rules, "
        "course_utils.grading.lab.validate\nprint('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
