"""course_utils.grading.authoring.copying: a solution that a lesson or its own prompt gives away is found, however
renamed."""

from __future__ import annotations

import nbformat

from course_utils.grading.authoring.copying import (
    Corpus,
    copied_share,
    prompt_code,
    solution_code,
    task_copies,
)

LESSON = Corpus.of(
    [
        "import torch\n\n\ndef sigmoid(z):\n    return 1 / (1 + torch.exp(-z))\n",
        "x = torch.arange(12).reshape(3, 4)\nprint(x[:, None] - x[None, :])",
    ]
)


def task_notebook(prompt: str, answer: str) -> nbformat.NotebookNode:
    def cell(kind, source, gid, **extra):
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        return make(
            source,
            metadata={
                "nbgrader": {
                    "grade_id": gid,
                    "locked": kind != "answer",
                    "solution": kind == "answer",
                    "grade": kind == "test",
                    **extra,
                }
            },
        )

    return nbformat.v4.new_notebook(
        cells=[
            cell("md", prompt, "ex_t_prompt"),
            cell("answer", answer, "ex_t_answer"),
            cell("test", "check(f(1))", "ex_t", points=2),
        ]
    )


def answer(body: str) -> str:
    return f'def f(values):\n    """Doc."""\n    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION\n'


def test_a_renamed_lesson_line_is_found_and_a_new_one_is_not():
    copied = task_copies(
        task_notebook("Write f.", answer("    return 1 / (1 + torch.exp(-values))  # mine")), "a", LESSON
    )[0]
    assert (copied.found, copied.total, copied.passable, copied.points) == (1, 1, True, 2.0)
    new = task_copies(
        task_notebook("Write f.", answer("    return torch.exp(-torch.logaddexp(0 * values, -values))")), "a", LESSON
    )[0]
    assert (new.found, new.passable) == (0, False)


def test_an_expression_inside_a_lesson_statement_counts():
    copied = task_copies(
        task_notebook("Write f.", answer("    return values[:, None] - values[None, :]")), "a", LESSON
    )[0]
    assert copied.passable


def test_code_in_the_prompt_counts_too():
    prompt = "Compute `values.sum() / len(values)` and return it.\n\n```python\nvalues = values.float()\n```"
    assert prompt_code(prompt) == ["values = values.float()\n", "values.sum() / len(values)"]
    body = "    values = values.float()\n    return values.sum() / len(values)"
    copied = task_copies(task_notebook(prompt, answer(body)), "a", Corpus.of([]))[0]
    assert (copied.found, copied.total) == (2, 2)


def test_only_the_solution_region_is_compared_and_shares_weigh_points():
    assert solution_code(answer("    y = 1\n    return y")).splitlines() == ["y = 1", "return y"]
    copies = task_copies(
        task_notebook(
            "Write f.", answer("    y = values[:, None] - values[None, :]\n    return y.abs().max(dim=1).values")
        ),
        "a",
        LESSON,
    )
    assert (copies[0].found, copies[0].total) == (1, 2)
    assert copied_share(copies) == (0.0, 0.5)
