"""Every lesson in notebooks/ is stored as one clean top-to-bottom run that a learner can read.

Fast static checks on the saved .ipynb files (nothing is executed here; `make lessons`
re-executes them and `pytest --nbval` compares fresh outputs with the stored ones).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from support import REPO

NOTEBOOKS_DIR = REPO / "notebooks"
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


# ---------------------------------------------------------------- reading the code of a lesson


def code_without_magics(source: str) -> str:
    """A cell's Python, with IPython magics (`%matplotlib inline`, `!pip ...`) blanked out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def parsed_cells(notebook):
    for cell in code_cells(notebook):
        yield cell, ast.parse(code_without_magics(cell.source))


def dotted_name(node) -> str:
    """`torch.export.save` for the expression torch.export.save; '' for anything that is not a dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def calls(tree):
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


# ---------------------------------------------------------------- every lesson points at its exercise

EXERCISE_POINTER = re.compile(r"\*\*Now do\*\* `exercises/([^`/]+)/([^`/]+)`")
EXERCISES_DIR = NOTEBOOKS_DIR.parent / "exercises"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_ends_by_pointing_at_its_own_exercise_notebook(path):
    last_paragraph = read_lesson(path).cells[-1].source.rstrip().split("\n\n")[-1]
    match = EXERCISE_POINTER.match(last_paragraph)
    assert match, f"the lesson's last words must be: **Now do** `exercises/{path.stem}/{path.stem}_exercises.ipynb`"
    assert match.groups() == (path.stem, f"{path.stem}_exercises.ipynb")
    if (EXERCISES_DIR / path.stem).is_dir():  # exercises 08 and 09 are being written on another branch
        assert (EXERCISES_DIR / path.stem / f"{path.stem}_exercises.ipynb").is_file()


# ---------------------------------------------------------------- determinism on every device

RANDOM_DRAWS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                "bernoulli", "multinomial", "poisson", "empty"}  # empty: uninitialised memory is no better


def draws_on_a_device(tree) -> list[str]:
    """Calls such as torch.randn(..., device=device): a GPU's generator gives other numbers for the same seed."""
    return [ast.unparse(node)[:80] for node in calls(tree)
            if dotted_name(node.func).startswith("torch.") and dotted_name(node.func).split(".")[-1] in RANDOM_DRAWS
            and any(keyword.arg == "device" for keyword in node.keywords)]


def test_the_device_draw_check_catches_a_draw_on_a_device():
    tree = ast.parse("x = torch.randn(200, device=device)\ny = torch.randn(200).to(device)\nz = torch.zeros(3, device=device)")
    assert draws_on_a_device(tree) == ["torch.randn(200, device=device)"]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_no_lesson_draws_seeded_random_numbers_on_a_device(path):
    found = [draw for _, tree in parsed_cells(read_lesson(path)) for draw in draws_on_a_device(tree)]
    assert not found, f"draw on the CPU, then move with .to(device), so every device sees the same numbers: {found}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_timing_waits_for_every_kind_of_accelerator(path):
    source = "\n".join(cell.source for cell in code_cells(read_lesson(path)))
    if "torch.cuda.synchronize" in source:
        assert "torch.mps.synchronize" in source, "a timing that waits for CUDA must wait for Apple's MPS too"


# ---------------------------------------------------------------- lessons leave no files behind

WRITES_TO = {  # function name -> position of the path argument (keyword "path" also counts)
    "torch.save": 1, "torch.export.save": 1, "np.save": 0, "np.savez": 0, "open": 0,
    "export_competition_layout": 0, "write_submission": 2,
}
WRITING_METHODS = {"savefig": 0, "to_csv": 0, "to_json": 0, "to_parquet": 0}


def is_literal_path(node) -> bool:
    """A path written out in the code ("x.pt", f"{name}.csv", Path("data")): relative to the notebook's folder."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):  # f"{folder}/x.pt" starts at a variable's folder; f"x{i}.pt" is relative
        return bool(node.values) and isinstance(node.values[0], ast.Constant)
    if isinstance(node, ast.Call) and dotted_name(node.func) in {"Path", "pathlib.Path", "str"}:
        return bool(node.args) and is_literal_path(node.args[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return is_literal_path(node.left)
    return False


def writes_next_to_the_notebook(tree) -> list[str]:
    found = []
    for node in calls(tree):
        name = dotted_name(node.func)
        position = WRITES_TO.get(name)
        if position is None and isinstance(node.func, ast.Attribute):
            position = WRITING_METHODS.get(node.func.attr)
            if node.func.attr in {"write_text", "write_bytes", "mkdir"} and is_literal_path(node.func.value):
                found.append(ast.unparse(node)[:80])
                continue
        if position is None:
            continue
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax")):
                continue
        target = node.args[position] if len(node.args) > position else next(
            (k.value for k in node.keywords if k.arg == "path"), None)
        if target is not None and is_literal_path(target):
            found.append(ast.unparse(node)[:80])
    return found


def test_the_file_check_catches_relative_paths_and_spares_temporary_folders():
    tree = ast.parse('torch.save(m, "model.pt")\nexport_competition_layout("apparel_data")\n'
                     'fig.savefig(f"plot_{name}.png")\nopen("log.txt", "w")\nopen("notes.txt")\n'
                     'torch.save(m, folder / "model.pt")\nexport_competition_layout(cache_dir() / "apparel_data")\n'
                     'torch.save(m, f"{folder}/model.pt")\nPath("out").mkdir()\n')
    assert writes_next_to_the_notebook(tree) == [
        "torch.save(m, 'model.pt')", "export_competition_layout('apparel_data')", "fig.savefig(f'plot_{name}.png')",
        "open('log.txt', 'w')", "Path('out').mkdir()"]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lessons_write_files_only_into_temporary_or_cache_folders(path):
    notebook = read_lesson(path)
    found = [write for _, tree in parsed_cells(notebook) for write in writes_next_to_the_notebook(tree)]
    found += [cell.source.splitlines()[0] for cell in code_cells(notebook) if cell.source.lstrip().startswith("%%writefile")]
    assert not found, (f"a lesson must not leave files next to itself (the learner's checkout): write into a "
                       f"tempfile.TemporaryDirectory() or course_utils.data.cache_dir(): {found}")


# ---------------------------------------------------------------- a lesson's name means one thing


def course_helper_names() -> set[str]:
    import inspect

    from course_utils import data, plots, train

    names = set(train.__all__)
    for module in (data, plots):
        names |= {name for name, value in vars(module).items()
                  if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__}
    return names


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lessons_do_not_reuse_a_course_helper_name_for_something_else(path):
    defined = {node.name for _, tree in parsed_cells(read_lesson(path)) for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    clash = defined & course_helper_names()
    assert not clash, f"these names already mean a course_utils helper; call yours something else: {sorted(clash)}"


# ---------------------------------------------------------------- numbers in the prose quote the outputs

DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d{2,}%?|\d+\.\d+%)(?![\w.])")
NOT_QUOTES = {  # decimals in the prose that quote no output of the lesson, and why
    ("06_sigmoid_network_from_scratch", "0.20"): "arithmetic: the slope formula at a = 1 is about 0.20",
    ("08_convolutional_network", "92.5%"): "the benchmark's target, not a result",
    ("09_beyond_the_basics", "0.13"): "a torchvision version",
    ("09_beyond_the_basics", "2.13"): "a PyTorch version",
}


def unquoted_decimals(notebook, lesson: str) -> list[str]:
    shown = "\n".join([cell.source for cell in code_cells(notebook)] + [text for cell in code_cells(notebook)
                                                                         for text in text_outputs(cell)])
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        prose = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$\n]*\$", "", cell.source, flags=re.S)
        found += [number for number in DECIMAL.findall(prose)
                  if number not in shown and (lesson, number) not in NOT_QUOTES]
    return found


def test_the_quote_check_catches_a_number_that_differs_from_its_output():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("The mean is 0.2860 and the std 0.3529."),
        nbformat.v4.new_code_cell("print(mean, std)", outputs=[nbformat.v4.new_output("stream", text="0.2859 0.3529\n")]),
    ])
    assert unquoted_decimals(notebook, "07_apparel_classifier") == ["0.2860"]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_decimals_in_the_prose_are_the_ones_the_outputs_show(path):
    unquoted = unquoted_decimals(read_lesson(path), path.stem)
    assert not unquoted, (f"numbers in the text must be what the cells print (re-run and copy them, or print them): "
                          f"{unquoted}")
