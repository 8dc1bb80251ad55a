"""nbgrader's autograde sanitizers, runnable on any worker: the gradebook's copy of the source travels with the job.

    >>> snapshot = SourceSnapshot.from_gradebook(
    ...     course, "01_tensors_vs_numpy", "01_tensors_vs_numpy_exercises")  # doctest: +SKIP
    >>> nb = sanitize(nb, snapshot)  # on a worker, no database needed  # doctest: +SKIP

Before grading, nbgrader clears a submission's outputs, removes duplicated grade ids, restores the
kernelspec, puts back every locked cell (hidden tests included) and every deleted grade cell from the
gradebook, and checks the metadata. ``OverwriteCells`` reads the gradebook for that; here it reads a
plain-data snapshot of the same rows, taken once per notebook by the grader, so a worker on another
machine needs no access to the instructor's gradebook. The cell logic stays nbgrader's own.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace

import jsonschema
from nbconvert.exporters.exporter import ResourcesDict
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells

from course_utils.grading.cells import grade_id


@dataclass
class SourceSnapshot:
    """The gradebook's rows for one source notebook, as plain data (picklable, JSON-able)."""

    notebook: str
    assignment: str
    kernelspec: str | None
    source_cells: list[dict]  # name, cell_type, locked, checksum, source (in order)
    grade_cells: dict[str, float]  # name -> max_score
    solution_cells: list[str]
    task_cells: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_gradebook(cls, db_url: str, course_id: str, assignment: str, notebook: str) -> SourceSnapshot:
        with Gradebook(db_url, course_id=course_id) as gb:
            nb = gb.find_notebook(notebook, assignment)
            return cls(
                notebook,
                assignment,
                nb.kernelspec,
                [
                    {
                        "name": c.name,
                        "cell_type": c.cell_type,
                        "locked": c.locked,
                        "checksum": c.checksum,
                        "source": c.source,
                    }
                    for c in nb.source_cells
                ],
                {c.name: float(c.max_score) for c in nb.grade_cells},
                [c.name for c in nb.solution_cells],
                {c.name: float(c.max_score) for c in nb.task_cells},
            )


class _SnapshotGradebook:
    """The three lookups ``OverwriteCells`` makes, answered from a snapshot."""

    def __init__(self, snapshot: SourceSnapshot):
        self.snapshot = snapshot
        self.cells = {c["name"]: SimpleNamespace(**c) for c in snapshot.source_cells}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def find_notebook(self, notebook: str, assignment: str):
        s = self.snapshot
        return SimpleNamespace(
            source_cells=[self.cells[c["name"]] for c in s.source_cells],
            grade_cells=[SimpleNamespace(name=n, max_score=p) for n, p in s.grade_cells.items()],
            solution_cells=[SimpleNamespace(name=n) for n in s.solution_cells],
            task_cells=[SimpleNamespace(name=n, max_score=p) for n, p in s.task_cells.items()],
        )

    def find_source_cell(self, name: str, notebook: str, assignment: str):
        if name not in self.cells:
            raise MissingEntry()
        return self.cells[name]

    def find_graded_cell(self, name: str, notebook: str, assignment: str):
        points = self.snapshot.grade_cells.get(name, self.snapshot.task_cells.get(name))
        if points is None:
            raise MissingEntry()
        return SimpleNamespace(name=name, max_score=points)


class SnapshotOverwriteCells(OverwriteCells):
    """nbgrader's ``OverwriteCells`` reading a ``SourceSnapshot`` instead of the gradebook."""

    def __init__(self, snapshot: SourceSnapshot, **kw):
        super().__init__(add_missing_cells=True, **kw)
        self.snapshot = snapshot

    def preprocess(self, nb, resources):
        self.notebook_id, self.assignment_id = self.snapshot.notebook, self.snapshot.assignment
        self.gradebook = _SnapshotGradebook(self.snapshot)
        nb, resources = super(OverwriteCells, self).preprocess(nb, resources)
        nb, resources = self.add_missing_grade_cells(nb, resources)
        nb, resources = self.add_missing_task_cells(nb, resources)
        return nb, resources


class _SchemaCheckedOnce(MetadataValidator):
    """nbgrader's metadata validator, with its JSON schema checked once per process instead of once per cell.

    ``jsonschema.validate`` re-validates the schema itself on every call, a cost paid per cell (timed in
    docs/performance.md). Cells of another schema version go to nbgrader's own method (and its errors).
    """

    _validator = None

    def validate_cell(self, cell) -> None:
        meta = cell.metadata.get("nbgrader")
        if meta is None or meta.get("schema_version", 0) != self.schema_version:
            return super().validate_cell(cell)
        if _SchemaCheckedOnce._validator is None:
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            _SchemaCheckedOnce._validator = cls(self.schema)
        error = jsonschema.exceptions.best_match(_SchemaCheckedOnce._validator.iter_errors(meta))
        if error is not None:
            raise error


class FastCheckCellMetadata(CheckCellMetadata):
    """nbgrader's ``CheckCellMetadata`` (the same checks, log and error) on ``_SchemaCheckedOnce``."""

    def preprocess(self, nb, resources):
        try:
            _SchemaCheckedOnce().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            raise ValidationError("Notebook failed to validate; the nbgrader metadata may be corrupted.") from None
        return nb, resources


def _drop_idless_metadata(nb) -> None:
    """DeduplicateIds leaves ``nbgrader: {}`` behind, which OverwriteCells trips on."""
    for cell in nb.cells:
        if "nbgrader" in cell.metadata and grade_id(cell) is None:
            del cell.metadata["nbgrader"]


def sanitize(nb, snapshot: SourceSnapshot):
    """What ``nbgrader autograde`` does to a submission before running it (see the module docstring)."""
    resources = ResourcesDict(nbgrader={"assignment": snapshot.assignment, "notebook": snapshot.notebook})
    for pp in (ClearOutput(), DeduplicateIds()):
        nb, resources = pp.preprocess(nb, resources)
    if snapshot.kernelspec:
        import json

        nb.metadata["kernelspec"] = json.loads(snapshot.kernelspec)
    _drop_idless_metadata(nb)
    for pp in (SnapshotOverwriteCells(snapshot), FastCheckCellMetadata()):
        nb, resources = pp.preprocess(nb, resources)
    return nb
