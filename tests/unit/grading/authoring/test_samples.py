import nbformat

from course_utils.grading.authoring.samples import SCRATCH_CELLS, with_scratch


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercise"),
        nbformat.v4.new_code_cell("import torch"),
        nbformat.v4.new_code_cell(
            "def answer(x):\n    return x\n",
            metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "t_answer", "locked": False}},
        ),
    ]
    return nb


def test_scratch_cells_go_after_the_set_up_cell_and_the_second_def_at_the_end_without_touching_the_original():
    nb = _notebook()
    one = with_scratch(nb, "import os")
    assert [c.source for c in one.cells][1:3] == ["import torch", SCRATCH_CELLS["import os"]]
    every = with_scratch(nb, *SCRATCH_CELLS)
    assert len(every.cells) == len(nb.cells) + len(SCRATCH_CELLS) == 3 + 12
    added = [c.source for c in every.cells[2:-2]]
    assert sorted(added) == sorted(s for s in SCRATCH_CELLS.values() if s is not None)
    assert every.cells[-1].source.startswith("def answer(*args, **kwargs):")
    assert len(nb.cells) == 3  # the notebook given is left as it was
