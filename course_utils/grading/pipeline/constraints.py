"""The trusted side of stated constraints: check the submitted notebook's cells, which the kernel cannot change.

    >>> constraint_problems(notebook_json, reference_records)  # doctest: +SKIP
    {'ex02_matmul_by_broadcasting': '`matmul_by_broadcasting` uses `@` (matrix multiplication), ...'}

A constrained task's test cell calls ``course_utils.constraints.constrained``, which records (kind
``"constraint"``) the function it constrains, the rules, the other functions it may use and those it must
use. The grader takes those parameters from the *solution's* records, never from the student's, and runs the
static rules of ``course_utils.constraints`` (the one rule set both sides share) over every code cell of the
notebook the kernel executed: the cell defining the function must obey the rules, and no other cell may
rebind it or patch what it uses. ``scoring`` turns a problem into 0 points for that task, with the message.
No learner code runs here: cells are only parsed.
"""
from __future__ import annotations

import nbformat

from course_utils.constraint_rules import notebook_problems

#: how many problems a message lists (the first is usually the one to fix)
SHOWN = 3


def constrained_tasks(reference: dict) -> dict[str, dict]:
    """grade id -> the parameters of its constraint record, for every constrained task of a reference."""
    return {key.split("/")[0]: entry["params"] for key, entry in sorted(reference.items())
            if isinstance(entry, dict) and entry.get("kind") == "constraint"}


def code_sources(notebook) -> list[str]:
    """The source of every code cell of a notebook (a NotebookNode or its JSON text), in order."""
    nb = nbformat.reads(notebook, as_version=4) if isinstance(notebook, str) else notebook
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def constraint_problems(notebook, reference: dict, shipped=()) -> dict[str, str]:
    """grade id -> what breaks the task's constraint, for each constrained task of ``reference`` that fails.

    ``notebook`` is the notebook as the kernel executed it (None when there is none: every constrained task
    fails); ``shipped`` names the Python modules the submission ships beside it.
    """
    tasks = constrained_tasks(reference)
    if not tasks:
        return {}
    try:
        sources = code_sources(notebook) if notebook is not None else None
    except Exception:  # not a notebook: nothing to check, so nothing can pass
        sources = None
    if sources is None:
        return {g: "the submitted code could not be read for the constraint check" for g in tasks}
    problems = {}
    for grade_id, params in tasks.items():
        try:
            found = notebook_problems(sources, str(params["function"]), list(params["rules"]),
                                      list(params.get("uses", [])), list(params.get("require", [])), set(shipped))
        except Exception as error:  # a grader bug must fail closed, never pass a task
            found = [f"the constraint check could not run ({type(error).__name__})"]
        if found:
            more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
            problems[grade_id] = "; ".join(found[:SHOWN]) + more
    return problems


def shipped_modules(relative_paths) -> set[str]:
    """Top-level Python module names a submission's extra files provide (``helper.py`` -> ``helper``)."""
    names = set()
    for rel in relative_paths:
        parts = str(rel).replace("\\", "/").split("/")
        if len(parts) > 1:
            names.add(parts[0])
        elif parts[0].endswith((".py", ".pyc", ".so", ".pyd")):
            names.add(parts[0].split(".")[0])
    return names
