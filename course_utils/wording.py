"""Sentences a learner reads in the test cell, in Validate and in the grade, written once so all three agree.

    >>> unanswered("arange_matrix")[:73]
    '`arange_matrix` is not written yet: replace `raise NotImplementedError()`'

No imports: Validate (in the Jupyter server) and the grader read these without loading torch.
"""

from __future__ import annotations


def unanswered(function: str | None = None) -> str:
    """What every side says of a task whose answer cell still raises nbgrader's ``NotImplementedError()`` stub."""
    who = f"`{function}`" if function else "This task"
    return (
        f"{who} is not written yet: replace `raise NotImplementedError()` in its answer cell with your code, "
        "run that cell, then run this test again."
    )
