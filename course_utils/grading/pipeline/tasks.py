"""Constrained tasks are graded on their answer cell alone: one small notebook per task, run in a fresh kernel.

    >>> constrained_task_ids(source_nb)                                        # doctest: +SKIP
    ['ex02_matmul_by_broadcasting']
    >>> nb = task_notebook(source_nb, submitted_nb, "ex02_matmul_by_broadcasting")  # doctest: +SKIP

A task whose test cell calls ``constrained(...)`` states a constraint ("without @"). The grader judges it on
its answer cell, as the learner's test cell does: it builds a notebook of the source's set-up cells (the locked
code cells before the task that are neither answers nor tests), the task's answer cell as submitted, and the
task's test cell from the source (hidden tests included), and runs it as a job of its own (the runner's ``Job``
runs any notebook). That job's records replace the full notebook's for the task, and the trusted static check
reads the same answer cell (``constraints.answer_problems``). No other cell of the submission runs, so no scratch
cell (an import, a magic, ``F = torch.nn.functional``, a redefinition after the test) can change such a grade.
"""

from __future__ import annotations

import ast
import copy

import nbformat

from course_utils.grading.cells import grade_id, graded_cells, is_answer_cell, is_test_cell, read_notebook

#: joins a notebook's name and a task's grade id into the name of the task's job
SEPARATOR = "::"


def job_name(notebook: str, task: str) -> str:
    """The name of a task's job (and of its reference records).

    >>> job_name("02_matrix_operations_exercises", "ex02_matmul_by_broadcasting")
    '02_matrix_operations_exercises::ex02_matmul_by_broadcasting'
    """
    return f"{notebook}{SEPARATOR}{task}"


def split_job_name(name: str) -> tuple[str, str | None]:
    """(notebook, task) of a job's name; the task is None for a whole notebook's job.

    >>> split_job_name("hw::ex_double"), split_job_name("hw")
    (('hw', 'ex_double'), ('hw', None))
    """
    notebook, _, task = name.partition(SEPARATOR)
    return notebook, task or None


def file_stem(name: str) -> str:
    """A job's name as a file name (no ``:``).

    >>> file_stem("hw::ex_double")
    'hw.ex_double'
    """
    return name.replace(SEPARATOR, ".")


def _calls_constrained(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(
        isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == "constrained" or getattr(node.func, "attr", None) == "constrained")
        for node in ast.walk(tree)
    )


def constrained_task_ids(source) -> list[str]:
    """Grade ids of the tasks of a source notebook (or its path) whose test cell calls ``constrained``.

    >>> test = nbformat.v4.new_code_cell("safe = constrained(f, 'matmul', key='ex_p/constraint')")
    >>> test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "ex_p", "points": 1}
    >>> constrained_task_ids(nbformat.v4.new_notebook(cells=[test]))
    ['ex_p']
    """
    return [
        grade_id(cell)
        for cell in read_notebook(source).cells
        if is_test_cell(cell) and grade_id(cell) and _calls_constrained(cell.source)
    ]


def answer_source(notebook, answer_id: str | None) -> str | None:
    """The source of the first code cell of ``notebook`` that is the answer cell ``answer_id`` (None if absent)."""
    if answer_id is None or notebook is None:
        return None
    for cell in notebook.cells:
        if cell.get("cell_type") == "code" and is_answer_cell(cell) and grade_id(cell) == answer_id:
            source = cell.get("source", "")
            return source if isinstance(source, str) else "".join(source)
    return None


def answer_id_of(source, task: str) -> str | None:
    """The answer cell's grade id for ``task`` in a source notebook (or its path)."""
    return next((c.answer_id for c in graded_cells(source) if c.grade_id == task), None)


def task_notebook(source, submitted, task: str) -> nbformat.NotebookNode:
    """The notebook that judges ``task``: the source's set-up cells, the submitted answer cell, the source's test cell.

    ``submitted`` is the learner's notebook (a NotebookNode, or None when there is none: the answer cell is then
    empty); an answer cell it lacks is empty too, so the test fails as it would in the learner's notebook.
    """
    source = read_notebook(source)
    answer_id = answer_id_of(source, task)
    cells = []
    for cell in source.cells:
        if cell.cell_type != "code":
            continue
        if is_test_cell(cell) and grade_id(cell) == task:
            template = next((c for c in source.cells if is_answer_cell(c) and grade_id(c) == answer_id), None)
            answer = nbformat.v4.new_code_cell(answer_source(submitted, answer_id) or "")
            if template is not None:
                answer.metadata["nbgrader"] = copy.deepcopy(template.metadata.get("nbgrader", {}))
            test = nbformat.v4.new_code_cell(cell.source)
            test.metadata["nbgrader"] = copy.deepcopy(cell.metadata.get("nbgrader", {}))
            cells += [answer, test]
            break
        if not is_test_cell(cell) and not is_answer_cell(cell):
            setup = nbformat.v4.new_code_cell(cell.source)
            setup.metadata["nbgrader"] = copy.deepcopy(cell.metadata.get("nbgrader", {}))
            cells.append(setup)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = copy.deepcopy(source.metadata)
    return nb


def read_submitted(data: bytes | None) -> nbformat.NotebookNode | None:
    """The submitted notebook for picking its answer cells (None when it is missing or not a notebook)."""
    if data is None:
        return None
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        return nb if isinstance(getattr(nb, "cells", None), list) else None
    except Exception:  # not UTF-8, not JSON, not a notebook: its answer cells are empty
        return None
