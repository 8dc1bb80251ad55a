"""The trusted side of stated constraints: the submitted answer cell, checked by the rules the test cell applies.

    >>> answer_problems(answer_cell_source, task_reference)  # doctest: +SKIP
    {'ex02_matmul_by_broadcasting/constraint': '`matmul_by_broadcasting` uses `@` (matrix multiplication) on ...'}

A constrained task's test cell calls ``course_utils.constraints.constrained``, which records (kind
``"constraint"``) the function it constrains, the rules, the names of the functions the test cell provides
(``uses``) and those the function must call. The grader takes those parameters from the *solution's* records,
never from the student's, and runs ``constraint_rules.answer_cell_problems`` (the one check both sides run) on
the task's answer cell as submitted: the same cell the task's own job runs (``pipeline.tasks``). A problem
becomes that check's outcome, worded as the test cell words it (``constraint_rules.summary``). No learner code
runs here: the cell is only parsed.
"""

from __future__ import annotations

from course_utils.constraint_rules import answer_cell_problems, summary


def constraint_keys(reference: dict) -> dict[str, dict]:
    """key -> the parameters of its constraint record, for every constraint record of a reference, in order."""
    return {
        key: entry["params"]
        for key, entry in reference.items()
        if isinstance(entry, dict) and entry.get("kind") == "constraint"
    }


def answer_problems(answer: str | None, reference: dict) -> dict[str, str]:
    """key -> what the test cell says about ``answer`` (an answer cell's source), for each constraint record of
    ``reference`` it breaks; a missing answer cell breaks them all."""
    problems = {}
    for key, params in constraint_keys(reference).items():
        function = str(params["function"])
        if answer is None:
            problems[key] = f"`{function}` is not in this task's answer cell: the grade judges that cell alone"
            continue
        try:
            found = answer_cell_problems(
                answer, function, list(params["rules"]), list(params.get("uses", [])), list(params.get("require", []))
            )
        except Exception as error:  # a grader bug must fail closed, never pass a task
            found = [f"the constraint check could not run ({type(error).__name__})"]
        if found:
            problems[key] = summary(found)
    return problems


def constraint_problems(notebook, reference: dict) -> dict[str, str]:
    """grade id -> what the test cell says of the task's answer cell in ``notebook`` (a NotebookNode), for each
    constrained task of ``reference`` whose answer cell breaks its constraint (the first broken record's words)."""
    from course_utils.grading.pipeline.tasks import answer_id_of, answer_source

    found = {}
    for task in dict.fromkeys(key.split("/")[0] for key in constraint_keys(reference)):
        records = {k: v for k, v in reference.items() if k.startswith(task + "/")}
        problems = answer_problems(answer_source(notebook, answer_id_of(notebook, task)), records)
        if problems:
            found[task] = next(iter(problems.values()))
    return found
