"""Every lesson in notebooks/ is stored as one clean top-to-bottom run that a learner can read.

Fast static checks on the saved .ipynb files (nothing is executed here; `make lessons`
re-executes them and `pytest --nbval` compares fresh outputs with the stored ones).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
LESSON_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"
MATPLOTLIB_REPR = re.compile(r"<matplotlib\.[\w.]+ (object )?at 0x|^\[<matplotlib\.", re.MULTILINE)

LESSONS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def read_lesson(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def text_outputs(cell):
    """Every piece of text a code cell shows: streams, plain-text reprs, error messages."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.text
        elif output.output_type in ("execute_result", "display_data"):
            yield output.get("data", {}).get("text/plain", "")


def lesson_id(path: Path) -> str:
    return path.stem


def test_the_lessons_are_numbered_from_01_without_gaps():
    assert LESSONS, f"no notebooks found in {NOTEBOOKS_DIR}"
    names = [p.name for p in LESSONS]
    bad = [n for n in names if not LESSON_NAME.match(n)]
    assert not bad, f"lesson names must look like 01_topic_name.ipynb: {bad}"
    numbers = [int(LESSON_NAME.match(n).group(1)) for n in names]
    assert numbers == list(range(1, len(numbers) + 1)), f"lessons must be numbered 01, 02, ... with no gaps: {names}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_runs_on_the_course_python3_kernel(path):
    assert read_lesson(path).metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_every_code_cell_was_executed_once_in_order(path):
    counts = [cell.execution_count for cell in code_cells(read_lesson(path))]
    assert counts, "a lesson without code cells"
    assert counts == list(range(1, len(counts) + 1)), (
        f"execution counts {counts} are not 1..{len(counts)}: re-run the notebook top to bottom in a fresh kernel "
        f"with `.venv/bin/python scripts/execute_notebooks.py {path.relative_to(NOTEBOOKS_DIR.parent)}`"
    )


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_stored_results_carry_their_cells_execution_count(path):
    for cell in code_cells(read_lesson(path)):
        for output in cell.outputs:
            if output.output_type == "execute_result":
                assert output.execution_count == cell.execution_count, cell.source[:80]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_no_cell_stored_an_error(path):
    errors = [
        f"{out.ename}: {out.evalue}"
        for cell in code_cells(read_lesson(path))
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, f"stored error outputs: {errors}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_no_cell_is_empty(path):
    empty = [i for i, cell in enumerate(read_lesson(path).cells) if not cell.source.strip()]
    assert not empty, f"empty cells at positions {empty}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_opens_with_learning_goals(path):
    first = read_lesson(path).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.lstrip().startswith("# "), "the first cell starts with the lesson title"
    assert "learning goals" in first.source.lower()


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_closes_with_a_recap_and_what_comes_next(path):
    last = read_lesson(path).cells[-1]
    assert last.cell_type == "markdown"
    text = last.source.lower()
    assert "recap" in text
    assert "next" in text


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_is_prose_first(path):
    notebook = read_lesson(path)
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    assert len(markdown) * 2 >= len(code_cells(notebook)), (
        "explain before you compute: at least one markdown cell for every two code cells"
    )


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_cells_whose_output_is_ignored_still_assert_what_must_hold(path):
    unchecked = [
        cell.source.splitlines()[0]
        for cell in code_cells(read_lesson(path))
        if IGNORE_MARKER in cell.source and not re.search(r"^\s*assert\b", cell.source, re.MULTILINE)
    ]
    assert not unchecked, f"cells marked {IGNORE_MARKER} without an assert: {unchecked}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_no_matplotlib_object_reprs_in_outputs(path):
    leaked = [
        text[:80]
        for cell in code_cells(read_lesson(path))
        for text in text_outputs(cell)
        if MATPLOTLIB_REPR.search(text)
    ]
    assert not leaked, f"end plotting cells with plt.show() so no object repr is stored: {leaked}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_no_warnings_in_checked_cells(path):
    noisy = [
        cell.source.splitlines()[0]
        for cell in code_cells(read_lesson(path))
        if IGNORE_MARKER not in cell.source
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stderr"
    ]
    assert not noisy, f"cells writing to stderr (warnings?) outside {IGNORE_MARKER} cells: {noisy}"
