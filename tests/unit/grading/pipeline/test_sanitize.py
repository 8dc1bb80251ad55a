"""course_utils.grading.pipeline.sanitize: nbgrader's autograde sanitizers on a snapshot of the gradebook, with
nbgrader's own ``CheckCellMetadata`` as the reference for the faster metadata check."""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbgrader.nbgraderformat import (
    SchemaTooNewError,
    SchemaTooOldError,
    ValidationError,
)
from nbgrader.preprocessors import CheckCellMetadata

from course_utils.grading.pipeline.sanitize import FastCheckCellMetadata
from support import REPO

SOLUTION = REPO / "solutions" / "01_tensors_vs_numpy" / "01_tensors_vs_numpy_exercises.ipynb"


def graded_cell(nb):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))


def spoil(change):
    nb = nbformat.read(SOLUTION, as_version=4)
    change(graded_cell(nb).metadata.nbgrader)
    return nb


CASES = {
    "the solution itself": lambda meta: None,
    "points that are not a number": lambda meta: meta.update(points="ten"),
    "a required key missing": lambda meta: meta.pop("grade"),
    "an unknown cell type": lambda meta: meta.update(cell_type="spreadsheet"),
    "an older schema": lambda meta: meta.update(schema_version=1),
    "a newer schema": lambda meta: meta.update(schema_version=99),
}


def outcome(preprocessor, nb):
    try:
        preprocessor.preprocess(copy.deepcopy(nb), {})
    except (ValidationError, SchemaTooOldError, SchemaTooNewError) as error:
        return type(error).__name__, str(error)
    return "ok", ""


@pytest.mark.parametrize("case", CASES)
def test_the_metadata_check_decides_exactly_as_nbgraders_own(case):
    nb = spoil(CASES[case])
    assert outcome(FastCheckCellMetadata(), nb) == outcome(CheckCellMetadata(), nb)


def test_spoilt_metadata_is_refused():
    assert outcome(FastCheckCellMetadata(), spoil(CASES["points that are not a number"]))[0] == "ValidationError"
