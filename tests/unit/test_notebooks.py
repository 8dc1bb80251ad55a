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
LESSON_NAME = re.compile(r"^(\d\d)([b-z]?)_[a-z0-9_]+\.ipynb$")  # 07_... then 07b_...: a lesson in two parts
IGNORE_TAG = "nbval-ignore-output"  # nbval's cell tag: the output may vary; a hidden cell asserts what must hold
NBVAL_TAGS = {IGNORE_TAG, "nbval-skip", "raises-exception", "nbval-check-output"}
MATPLOTLIB_REPR = re.compile(r"<matplotlib\.[\w.]+ (object )?at 0x|^\[<matplotlib\.", re.MULTILINE)

LESSONS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def read_lesson(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def is_hidden(cell) -> bool:
    """A code cell JupyterLab shows collapsed: the checks that exist for the lessons' CI run, out of the way."""
    return bool(cell.metadata.get("jupyter", {}).get("source_hidden"))


def ignores_output(cell) -> bool:
    return IGNORE_TAG in cell.metadata.get("tags", [])


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
    assert not bad, f"lesson names must look like 01_topic_name.ipynb (a second part: 07b_topic_name.ipynb): {bad}"
    numbers = sorted({int(LESSON_NAME.match(n).group(1)) for n in names})
    assert numbers == list(range(1, len(numbers) + 1)), f"lessons must be numbered 01, 02, ... with no gaps: {names}"
    for name in names:
        number, part = LESSON_NAME.match(name).groups()
        if part:  # 07b needs a 07, 07c a 07b
            before = "" if part == "b" else chr(ord(part) - 1)
            assert any(LESSON_NAME.match(n).groups() == (number, before) for n in names), f"{name} has no earlier part"


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
    visible = [c for c in code_cells(notebook) if not is_hidden(c)]
    assert len(markdown) * 2 >= len(visible), (
        "explain before you compute: at least one markdown cell for every two code cells the learner sees"
    )


# ---------------------------------------------------------------- the learner sees a lesson, not its test harness


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_nbval_markers_are_cell_tags_not_comments(path):
    commented = [
        cell.source.splitlines()[0]
        for cell in code_cells(read_lesson(path))
        if re.search(r"^\s*#\s*(NBVAL_|PYTEST_VALIDATE_)", cell.source, re.MULTILINE)
    ]
    assert not commented, (
        f"mark cells with nbval's cell tags ({', '.join(sorted(NBVAL_TAGS))}), not comments: {commented}"
    )


def only_checks(source: str) -> bool:
    """True when a cell only asserts: assert statements, assert_close calls, and imports or names they use."""
    body = ast.parse(code_without_magics(source)).body
    checks = [
        node
        for node in body
        if isinstance(node, ast.Assert)
        or (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and dotted_name(node.value.func).endswith("assert_close")
        )
    ]
    rest = [
        node for node in body if node not in checks and not isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign))
    ]
    return bool(checks) and not rest


def test_the_check_cell_rule_tells_checks_from_code():
    assert only_checks("names = list(accuracy)\nassert accuracy[names[0]] > 0.5")
    assert only_checks("torch.testing.assert_close(a, b)")
    assert not only_checks("print(x)\nassert x > 0")
    assert not only_checks("x = train()")


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_cells_whose_output_is_ignored_are_followed_by_what_must_hold(path):
    cells = read_lesson(path).cells
    unchecked = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not ignores_output(cell):
            continue
        later = [c for c in cells[i + 1 :] if c.cell_type == "code"]
        while later and ignores_output(later[0]) and not is_hidden(later[0]):  # a run of tagged cells shares its check
            later = later[1:]
        if not (later and is_hidden(later[0])):
            unchecked.append(cell.source.splitlines()[0])
    assert not unchecked, (
        f"a cell tagged {IGNORE_TAG} must be followed (after any other tagged cells) by a hidden "
        f"cell that asserts what must hold: {unchecked}"
    )


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_hidden_cells_only_check_and_print_nothing(path):
    for cell in code_cells(read_lesson(path)):
        if is_hidden(cell):
            assert only_checks(cell.source), f"a hidden cell may only assert: {cell.source[:80]!r}"
            assert not cell.outputs, f"a hidden cell showed output: {cell.source[:80]!r}"


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_the_learner_sees_no_assert_statements(path):
    visible = [
        line.strip()
        for cell in code_cells(read_lesson(path))
        if not is_hidden(cell)
        for line in cell.source.splitlines()
        if re.match(r"\s*assert\b", line)
    ]
    assert not visible, f"move checks into a hidden cell after their cell (metadata jupyter.source_hidden): {visible}"


HARNESS_WORDS = re.compile(
    r"\bbench(/|\.py|\b)|\bnbval\b|NBVAL_|tested on|the course is tested|a test (checks|fails)|"
    r"\bCI\b|\bassert(s|ed|ion)?\b|output is not compared|instead of comparing|"
    r"cells? checks?\b|checks? (only )?what held",
    re.IGNORECASE,
)


def test_the_harness_rule_catches_talk_of_tests_and_machines():
    for said in [
        "On the 2-core machine the course is tested on, it took 3 s",
        "The benchmark in `bench/recipes.py`",
        "a test checks that the two definitions stay the same",
        "so this cell's output is not compared",
        "the asserts above check only what held",
        "`make bench` measures it",
        "the cell checks that it reached",
    ]:
        assert HARNESS_WORDS.search(said), said
    assert not HARNESS_WORDS.search("The test set is scored once, at the end; a benchmark of a model's accuracy")


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_the_prose_says_nothing_of_tests_benchmarks_or_the_machines_they_run_on(path):
    found = [
        match.group(0)
        for cell in read_lesson(path).cells
        if cell.cell_type == "markdown"
        for match in HARNESS_WORDS.finditer(cell.source)
    ]
    assert not found, f"a lesson talks about PyTorch, not about its test harness: {found}"


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
        if not ignores_output(cell)
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stderr"
    ]
    assert not noisy, f"cells writing to stderr (warnings?) that are not tagged {IGNORE_TAG}: {noisy}"


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


def exercise_of(path: Path) -> str:
    """The exercise a lesson points at: its own, or for a second part (07b) the first part's (07's)."""
    number, part = LESSON_NAME.match(path.name).groups()
    if not part:
        return path.stem
    return next(p.stem for p in LESSONS if LESSON_NAME.match(p.name).groups() == (number, ""))


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lesson_ends_by_pointing_at_its_own_exercise_notebook(path):
    last_paragraph = read_lesson(path).cells[-1].source.rstrip().split("\n\n")[-1]
    stem = exercise_of(path)
    match = EXERCISE_POINTER.match(last_paragraph)
    assert match, f"the lesson's last words must be: **Now do** `exercises/{stem}/{stem}_exercises.ipynb`"
    assert match.groups() == (stem, f"{stem}_exercises.ipynb")
    assert (EXERCISES_DIR / stem / f"{stem}_exercises.ipynb").is_file()


# ---------------------------------------------------------------- determinism on every device

RANDOM_DRAWS = {
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "bernoulli",
    "multinomial",
    "poisson",
    "empty",
}  # empty: uninitialised memory is no better


def draws_on_a_device(tree) -> list[str]:
    """Calls such as torch.randn(..., device=device): a GPU's generator gives other numbers for the same seed."""
    return [
        ast.unparse(node)[:80]
        for node in calls(tree)
        if dotted_name(node.func).startswith("torch.")
        and dotted_name(node.func).split(".")[-1] in RANDOM_DRAWS
        and any(keyword.arg == "device" for keyword in node.keywords)
    ]


def test_the_device_draw_check_catches_a_draw_on_a_device():
    tree = ast.parse(
        "x = torch.randn(200, device=device)\ny = torch.randn(200).to(device)\nz = torch.zeros(3, device=device)"
    )
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
    "torch.save": 1,
    "torch.export.save": 1,
    "np.save": 0,
    "np.savez": 0,
    "open": 0,
    "export_competition_layout": 0,
    "write_submission": 2,
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
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax")):
                continue
        target = (
            node.args[position]
            if len(node.args) > position
            else next((k.value for k in node.keywords if k.arg == "path"), None)
        )
        if target is not None and is_literal_path(target):
            found.append(ast.unparse(node)[:80])
    return found


def test_the_file_check_catches_relative_paths_and_spares_temporary_folders():
    tree = ast.parse(
        'torch.save(m, "model.pt")\nexport_competition_layout("apparel_data")\n'
        'fig.savefig(f"plot_{name}.png")\nopen("log.txt", "w")\nopen("notes.txt")\n'
        'torch.save(m, folder / "model.pt")\nexport_competition_layout(cache_dir() / "apparel_data")\n'
        'torch.save(m, f"{folder}/model.pt")\nPath("out").mkdir()\n'
    )
    assert writes_next_to_the_notebook(tree) == [
        "torch.save(m, 'model.pt')",
        "export_competition_layout('apparel_data')",
        "fig.savefig(f'plot_{name}.png')",
        "open('log.txt', 'w')",
        "Path('out').mkdir()",
    ]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lessons_write_files_only_into_temporary_or_cache_folders(path):
    notebook = read_lesson(path)
    found = [write for _, tree in parsed_cells(notebook) for write in writes_next_to_the_notebook(tree)]
    found += [
        cell.source.splitlines()[0] for cell in code_cells(notebook) if cell.source.lstrip().startswith("%%writefile")
    ]
    assert not found, (
        f"a lesson must not leave files next to itself (the learner's checkout): write into a "
        f"tempfile.TemporaryDirectory() or course_utils.data.cache_dir(): {found}"
    )


# ---------------------------------------------------------------- a lesson's name means one thing


def course_helper_names() -> set[str]:
    import inspect

    from course_utils import data, plots, train

    names = set(train.__all__)
    for module in (data, plots):
        names |= {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__
        }
    return names


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_lessons_do_not_reuse_a_course_helper_name_for_something_else(path):
    defined = {
        node.name
        for _, tree in parsed_cells(read_lesson(path))
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
    clash = defined & course_helper_names()
    assert not clash, f"these names already mean a course_utils helper; call yours something else: {sorted(clash)}"


# ---------------------------------------------------------------- numbers in the prose quote the outputs

DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d{2,}%?|\d+\.\d+%)(?![\w.])")
NOT_QUOTES = {  # decimals in the prose that quote no output of the lesson, and why
    ("06_sigmoid_network_from_scratch", "0.20"): "arithmetic: the slope formula at a = 1 is about 0.20",
    ("06_sigmoid_network_from_scratch", "0.98"): "a quote of the article's outputs",
    ("06_sigmoid_network_from_scratch", "0.97"): "a quote of the article's outputs",
    ("09_beyond_the_basics", "0.13"): "a torchvision version",
    ("09_beyond_the_basics", "2.13"): "a PyTorch version",
}


def unquoted_decimals(notebook, lesson: str) -> list[str]:
    shown = "\n".join(
        [cell.source for cell in code_cells(notebook)]
        + [text for cell in code_cells(notebook) for text in text_outputs(cell)]
    )
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        prose = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$\n]*\$", "", cell.source, flags=re.S)
        found += [
            number for number in DECIMAL.findall(prose) if number not in shown and (lesson, number) not in NOT_QUOTES
        ]
    return found


def test_the_quote_check_catches_a_number_that_differs_from_its_output():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("The mean is 0.2860 and the std 0.3529."),
            nbformat.v4.new_code_cell(
                "print(mean, std)", outputs=[nbformat.v4.new_output("stream", text="0.2859 0.3529\n")]
            ),
        ]
    )
    assert unquoted_decimals(notebook, "07_apparel_classifier") == ["0.2860"]


@pytest.mark.parametrize("path", LESSONS, ids=lesson_id)
def test_decimals_in_the_prose_are_the_ones_the_outputs_show(path):
    unquoted = unquoted_decimals(read_lesson(path), path.stem)
    assert not unquoted, (
        f"numbers in the text must be what the cells print (re-run and copy them, or print them): {unquoted}"
    )
