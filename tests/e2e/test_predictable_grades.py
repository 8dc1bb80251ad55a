"""Issue 27, end to end: a grade the learner can predict, through the real autograde (sandbox included).

One autograde call (2 workers) grades, for each of the 9 exercises:

* the solved notebook, the solved notebook with every harmless scratch cell of ``samples.SCRATCH_CELLS`` added
  (an import, a magic, ``!ls``, ``torch.exp?``, ``F = torch.nn.functional``, ``globals()``, a second experimental
  ``def`` at the end...), and each scratch cell alone in one of the exercises (taken in turn): every task keeps
  every point. A cell that cost a point alone costs it among the others too (none undoes another), so the
  notebook with all of them covers each exercise at a ninth of the cost of one notebook per cell;
* rounds of ``samples.BYPASSES`` (ways around a stated constraint) and ``samples.ACCEPTED`` (legitimate answers
  the constraint must let through), one attempt per constrained task per notebook (tasks are judged apart).

Validate (``CourseValidator``: a real kernel, the notebook as the learner has it) runs every round notebook. For
each attempt, the test cell (the error it shows), Validate (the task's points in its summary) and the grade give
the same verdict, the expected one, and a denial is said in the same words in all three. The one exception is by
design: an attack on the kernel's own check (``samples.KERNEL_ATTACKS``) fools the learner's kernel, never the grade.

``python tests/e2e/test_predictable_grades.py`` prints the tables of the closing note from a run's folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.authoring.samples import (
    ACCEPTED,
    BYPASSES,
    KERNEL_ATTACKS,
    SCRATCH_CELLS,
    attempting,
    rounds,
    solved,
    with_scratch,
)
from course_utils.grading.cells import grade_id
from course_utils.grading.course import Course
from course_utils.grading.pipeline.references import reference_key
from course_utils.grading.pipeline.results import load_result
from support import REPO

ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if any(p.glob("*.ipynb")))
ATTEMPTS = {**BYPASSES, **ACCEPTED}
ALL_SCRATCH = "scratch-all"  # the student whose notebooks have every scratch cell

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)"),
]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def plan_submissions(release: dict, solution: dict) -> tuple[dict, dict]:
    """(student -> {assignment: notebook}, student -> {task: attempt name}) for the whole battery."""
    students, attempts = defaultdict(dict), {}
    for assignment in ASSIGNMENTS:
        rel, sol = release[assignment], solution[assignment]
        students["solved"][assignment] = solved(rel, sol)
        students[ALL_SCRATCH][assignment] = with_scratch(solved(rel, sol), *SCRATCH_CELLS)
        prefix = f"ex{assignment[:2]}"
        for label, entries in (("bypass", BYPASSES), ("accepted", ACCEPTED)):
            for number, round_ in enumerate(rounds(entries, prefix)):
                student = f"{label}-{assignment[:2]}-{number}"
                students[student][assignment] = attempting(rel, sol, {t: ATTEMPTS[n][1] for t, n in round_.items()})
                attempts[student] = round_
    for number, kind in enumerate(SCRATCH_CELLS):  # each cell alone, in the exercises in turn
        assignment = ASSIGNMENTS[number % len(ASSIGNMENTS)]
        students[f"scratch-{_slug(kind)}"][assignment] = with_scratch(
            solved(release[assignment], solution[assignment]), kind
        )
    return students, attempts


def _validate(path: str) -> str:
    """Validate one notebook as the learner's JupyterLab does; the executed notebook (JSON) it judged."""
    from course_utils.grading.lab.validate import CourseValidator

    seen = {}

    class Capturing(CourseValidator):
        def _get_failed_cells(self, nb):
            seen["nb"] = nbformat.writes(nb)
            return super()._get_failed_cells(nb)

    Capturing().validate(path)
    return seen["nb"]


@pytest.fixture(scope="module")
def battery(tmp_path_factory, solution_runs):
    course = tmp_path_factory.mktemp("predictable")
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "solutions", course / "solutions")
    released = subprocess.run(
        [sys.executable, "-m", "course_utils.grading", "--course", str(course), "release"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert released.returncode == 0, released.stderr[-3000:]
    loaded = Course.load(course)
    for assignment in ASSIGNMENTS:  # the whole notebooks' references from this session's solution runs
        folder = loaded.references_dir / assignment
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution_runs[assignment].record_file, folder / f"{assignment}_exercises.pt")
        (folder / f"{assignment}_exercises.key").write_text(reference_key(loaded, assignment))
    name = {a: f"{a}_exercises.ipynb" for a in ASSIGNMENTS}
    release = {a: nbformat.read(course / "exercises" / a / name[a], as_version=4) for a in ASSIGNMENTS}
    solution = {a: nbformat.read(course / "solutions" / a / name[a], as_version=4) for a in ASSIGNMENTS}
    students, attempts = plan_submissions(release, solution)
    to_validate = {}
    for student, notebooks in students.items():
        for assignment, nb in notebooks.items():
            folder = course / "grading" / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / name[assignment])
            if student in attempts:
                copy = course / "validate" / student / name[assignment]
                copy.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, copy)
                to_validate[student] = str(copy)
    with ProcessPoolExecutor(2) as pool:
        validating = {student: pool.submit(_validate, path) for student, path in to_validate.items()}
        done = subprocess.run(
            [sys.executable, "-m", "course_utils.grading", "--course", str(course), "autograde", "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=5400,
        )
        validated = {student: nbformat.reads(future.result(), as_version=4) for student, future in validating.items()}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (course / "battery.json").write_text(
        json.dumps({"students": {s: sorted(n) for s, n in students.items()}, "attempts": attempts})
    )
    return loaded, students, attempts, validated


def graded_points(course, student: str, assignment: str) -> dict[str, tuple[float, float, str]]:
    entry = load_result(course, assignment, student)["notebooks"][f"{assignment}_exercises"]
    return {c["grade_id"]: (c["score"], c["max_score"], c["message"]) for c in entry["cells"]}


def test_scratch_cells_never_change_a_grade(battery):
    course, students, _, _ = battery
    changed = []
    for assignment in ASSIGNMENTS:
        before = {g: p[0] for g, p in graded_points(course, "solved", assignment).items()}
        assert before == {g: p[1] for g, p in graded_points(course, "solved", assignment).items()}, assignment
        for student in scratch_students(students, assignment):
            after = graded_points(course, student, assignment)
            changed += [(assignment, student, g, after[g][2]) for g in before if after[g][0] != before[g]]
    assert len([s for a in ASSIGNMENTS for s in scratch_students(students, a)]) == len(ASSIGNMENTS) + len(SCRATCH_CELLS)
    assert not changed, changed


def scratch_students(students: dict, assignment: str) -> list[str]:
    """The students whose notebook of ``assignment`` has scratch cells added (all of them, or one)."""
    return [s for s, notebooks in students.items() if s.startswith("scratch-") and assignment in notebooks]


def verdicts(battery) -> list[dict]:
    """One row per attempt: the test cell's, Validate's and the grade's verdicts and words."""
    from course_utils.grading.lab.validate import error_detail, task_results

    course, students, attempts, validated = battery
    rows = []
    for student, round_ in attempts.items():
        assignment = next(iter(students[student]))
        executed = validated[student]
        grade = graded_points(course, student, assignment)
        results = dict(
            zip(
                [
                    grade_id(c)
                    for c in executed.cells
                    if grade_id(c) in grade and c.cell_type == "code" and not c.metadata["nbgrader"].get("solution")
                ],
                task_results(executed),
            )
        )
        for task, name in round_.items():
            cell = next(c for c in executed.cells if grade_id(c) == task)
            error = next((o for o in cell.outputs if o.output_type == "error"), None)
            rows.append(
                {
                    "attempt": name,
                    "task": task,
                    "expected": "accepted" if name in ACCEPTED else "denied",
                    "test cell": "denied" if error else "accepted",
                    "said": error.evalue if error else "",
                    "validate": "accepted" if results[task].passed else "denied",
                    "validate_detail": error_detail(cell),
                    "grade": "accepted" if grade[task][0] == grade[task][1] else "denied",
                    "grade_message": grade[task][2],
                }
            )
    return rows


def test_bypasses_are_caught_and_legitimate_answers_accepted_alike_in_the_test_cell_validate_and_the_grade(battery):
    rows = verdicts(battery)
    assert {r["attempt"] for r in rows} == set(ATTEMPTS)
    wrong = []
    for r in rows:
        kernel = "accepted" if r["attempt"] in KERNEL_ATTACKS else r["expected"]
        if (r["test cell"], r["validate"], r["grade"]) != (kernel, kernel, r["expected"]):
            wrong.append(r)
        elif r["test cell"] == "denied" and not (r["said"] in r["validate_detail"] and r["said"] in r["grade_message"]):
            wrong.append({**r, "problem": "not the same words"})
    assert not wrong, json.dumps(wrong, indent=1)


def test_every_other_task_of_a_round_keeps_its_points(battery):
    """Attempts at one task never cost another: each round notebook's other tasks keep every point."""
    course, students, attempts, _ = battery
    for student, round_ in attempts.items():
        assignment = next(iter(students[student]))
        for task, (score, top, message) in graded_points(course, student, assignment).items():
            if task not in round_:
                assert score == top, (student, task, message)


def tables(folder: Path) -> str:
    """The closing note's tables from a finished battery's course folder."""
    course = Course.load(folder)
    plan = json.loads((folder / "battery.json").read_text())
    lines = ["| scratch cells | " + " | ".join(a[:2] for a in ASSIGNMENTS) + " |", "|---" * 10 + "|"]
    for kind in ["all", *SCRATCH_CELLS]:
        cells = []
        for assignment in ASSIGNMENTS:
            student = f"scratch-{_slug(kind)}"
            if assignment not in plan["students"].get(student, []):
                cells.append("")
                continue
            before = sum(p[0] for p in graded_points(course, "solved", assignment).values())
            after = sum(p[0] for p in graded_points(course, student, assignment).values())
            cells.append(f"{before:g}→{after:g}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    by_rule = defaultdict(lambda: [0, 0, 0])
    for student, round_ in plan["attempts"].items():
        assignment = next(a for a in ASSIGNMENTS if student.split("-")[1] == a[:2])
        grade = graded_points(course, student, assignment)
        for task, name in round_.items():
            if name in BYPASSES:
                rule = name.split(":")[0]
                by_rule[rule][0] += 1
                by_rule[rule][1] += name not in KERNEL_ATTACKS
                by_rule[rule][2] += grade[task][0] == 0
    lines += [
        "",
        "| rule | bypasses | denied by the test cell (by design) | caught by the grade |",
        "|---|---|---|---|",
    ]
    lines += [f"| {rule} | {n} | {tc} | {g} |" for rule, (n, tc, g) in sorted(by_rule.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    print(tables(Path(sys.argv[1])))
