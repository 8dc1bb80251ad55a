"""Sample submissions built from the current release and solution notebooks: for dry runs, tests and benchmarks.

    >>> nb = solved(release_nb, solution_nb)                  # everything right   # doctest: +SKIP
    >>> nb = answered(release_nb, {"ex01_arange_matrix": src})  # one answer filled in  # doctest: +SKIP
    >>> students = honest_class(release_nb, solution_nb, 20)  # (student, notebook, points earned)  # doctest: +SKIP

Built, not stored: the exercise notebooks evolve, and a stored copy would go stale. ``solved`` works for
any exercise; ``honest_class`` builds a class of exercise 01 (five tasks of 2 points, answer cells
``<task>_answer``) with correct, partial and wrong answers and no attack, which plain nbgrader grades
correctly too (the grading benchmark compares both graders on it).
"""
from __future__ import annotations

import copy

from course_utils.grading.cells import answer_sources, grade_id, is_answer_cell

TASKS = ["ex01_arange_matrix", "ex01_numpy_to_float_tensor", "ex01_dataframe_to_tensors",
         "ex01_pairwise_differences", "ex01_join_and_reshape"]
WRONG = {  # plausible wrong answers to exercise 01: right names, wrong values
    "ex01_arange_matrix": "def arange_matrix(rows, cols, dtype=torch.float32):\n    return torch.zeros(rows, cols, dtype=dtype)\n",
    "ex01_numpy_to_float_tensor": "def numpy_to_float_tensor(array):\n    return torch.zeros(array.shape)\n",
    "ex01_dataframe_to_tensors": "def dataframe_to_tensors(frame, target):\n    return torch.zeros(1), torch.zeros(1)\n",
    "ex01_pairwise_differences": "def pairwise_differences(x):\n    return torch.zeros(len(x), len(x))\n",
    "ex01_join_and_reshape": "def join_and_reshape(a, b, cols):\n    return torch.zeros(1)\n",
}


def cell_of(nb, grade_id_: str):
    """The cell of ``nb`` with this nbgrader grade id."""
    return next(c for c in nb.cells if grade_id(c) == grade_id_)


def without_markers(source: str) -> str:
    """A solution cell's source as a student would write it: the BEGIN/END SOLUTION lines removed."""
    return "".join(line for line in source.splitlines(keepends=True)
                   if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def solution_answers(solution_nb, tasks=TASKS) -> dict[str, str]:
    """task -> the solution's answer source (with its markers), for the given tasks."""
    return {t: cell_of(solution_nb, f"{t}_answer").source for t in tasks}


def answered(release_nb, answers: dict[str, str]):
    """The release with the given tasks' answer cells (``<task>_answer``) filled in, the rest untouched."""
    nb = copy.deepcopy(release_nb)
    for task, source in answers.items():
        cell_of(nb, f"{task}_answer").source = source
    return nb


def solved(release_nb, solution_nb):
    """What a student who gets everything right hands in: the release, each answer cell as in the solution."""
    nb = copy.deepcopy(release_nb)
    answers = answer_sources(solution_nb)
    for cell in nb.cells:
        if is_answer_cell(cell) and grade_id(cell) in answers:
            cell.source = without_markers(answers[grade_id(cell)])
    return nb


def honest_class(release_nb, solution_nb, n: int) -> list[tuple[str, object, float]]:
    """``n`` honest 01 submissions, (student, notebook, points earned): full, partial and wrong answers mixed.

    Student i answers the first ``i % 6`` tasks right and, when i is odd, the next one with a wrong answer.
    """
    answers = solution_answers(solution_nb)
    students = []
    for i in range(n):
        right = i % (len(TASKS) + 1)
        chosen = {t: answers[t] for t in TASKS[:right]}
        if i % 2 and right < len(TASKS):
            chosen[TASKS[right]] = WRONG[TASKS[right]]
        students.append((f"student{i:03d}", answered(release_nb, chosen), 2.0 * right))
    return students
