"""Facts the lessons state, checked: the models they define are the benchmark's, and where a lesson
corrects a source article (or itself, issue 14), the correction stays in place.

Static or cheap: nothing here executes a notebook. Tagged cells (cell metadata "tags") mark the code
that must match bench/recipes.py: "model:improved_mlp" (lesson 07), "model:small_cnn" and
"recipe:small_cnn" (lesson 08).
"""
from __future__ import annotations

import ast
import re

import nbformat
import pytest
import torch
from torch import nn

from bench import recipes
from support import REPO

ROOT = REPO
NOTEBOOKS = ROOT / "notebooks"
BOX = "> **What the articles got wrong.**"


def lesson(stem: str):
    return nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)


def markdown(stem: str) -> str:
    return "\n\n".join(cell.source for cell in lesson(stem).cells if cell.cell_type == "markdown")


def tagged_cell(stem: str, tag: str):
    cells = [cell for cell in lesson(stem).cells if tag in cell.metadata.get("tags", [])]
    assert len(cells) == 1, f"{stem}: expected exactly one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def definitions_of(source: str, **context) -> dict:
    """Run only the imports, functions and classes of a cell (no training), with `context` as globals."""
    tree = ast.parse(source)
    tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    namespace = {"torch": torch, "nn": nn, "device": torch.device("cpu"), **context}
    exec(compile(tree, f"<{source.splitlines()[0]}>", "exec"), namespace)
    return namespace


def architecture(model: nn.Module) -> tuple[str, list]:
    """Every layer with its settings (the repr) and every parameter's name and shape."""
    return str(model), [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def keyword_value(tree, function: str, keyword: str):
    """The literal value of `keyword=` in the one call to `function` (a dotted name's last part) in `tree`."""
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == function]
    assert len(found) == 1, f"expected one call to {function}, found {len(found)}"
    return ast.literal_eval(next(k.value for k in found[0].keywords if k.arg == keyword))


# ---------------------------------------------------------------- the lesson models are the benchmark's


def test_lesson_07_builds_exactly_the_benchmarks_improved_mlp():
    build_mlp = definitions_of(tagged_cell("07_apparel_classifier", "model:improved_mlp").source)["build_mlp"]
    lesson_model = build_mlp(recipes.IMPROVED_MLP["hidden"])
    bench_model, _, _ = recipes.improved_mlp_parts(seed=0)
    assert architecture(lesson_model) == architecture(bench_model)
    for ours, theirs in zip(lesson_model.parameters(), bench_model.parameters()):  # same seed, same construction order
        assert torch.equal(ours, theirs)


def final_recipe_of_lesson_07() -> dict:
    """The recipe the lesson's try_change(...) calls add up to, in order."""
    recipe = {}
    for cell in lesson("07_apparel_classifier").cells:
        if cell.cell_type != "code":
            continue
        python = "\n".join("" if line.startswith("%") else line for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(python)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "try_change":
                recipe.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
    return recipe


def test_lesson_07s_last_row_is_the_benchmarks_recipe():
    recipe, bench = final_recipe_of_lesson_07(), recipes.IMPROVED_MLP
    assert recipe == {"standardised": True, "hidden": bench["hidden"], "one_cycle": True, "lr": bench["max_lr"],
                      "smoothing": bench["label_smoothing"], "weight_decay": bench["weight_decay"],
                      "batch_size": bench["batch_size"], "epochs": bench["epochs"]}


def test_lesson_07s_training_helper_uses_the_benchmarks_optimizer_schedule_and_loss():
    tree = ast.parse(tagged_cell("07_apparel_classifier", "model:improved_mlp").source)
    assert keyword_value(tree, "AdamW", "fused") is True
    called = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {"torch.optim.AdamW", "torch.optim.lr_scheduler.OneCycleLR", "nn.CrossEntropyLoss", "TensorBatches"} <= called


def test_lesson_08_builds_exactly_the_benchmarks_small_cnn():
    small_cnn = definitions_of(tagged_cell("08_convolutional_network", "model:small_cnn").source)["small_cnn"]
    torch.manual_seed(0)
    lesson_model = small_cnn()
    torch.manual_seed(0)
    bench_model = recipes.small_cnn()
    assert architecture(lesson_model) == architecture(bench_model)
    for ours, theirs in zip(lesson_model.parameters(), bench_model.parameters()):
        assert torch.equal(ours, theirs)


def test_lesson_08_trains_with_the_benchmarks_hyper_parameters():
    tree = ast.parse(tagged_cell("08_convolutional_network", "recipe:small_cnn").source)
    bench = recipes.SMALL_CNN
    assert keyword_value(tree, "Adam", "lr") == bench["max_lr"]
    assert keyword_value(tree, "OneCycleLR", "max_lr") == bench["max_lr"]
    assert keyword_value(tree, "TensorBatches", "batch_size") == bench["batch_size"]
    assert keyword_value(tree, "CrossEntropyLoss", "label_smoothing") == bench["label_smoothing"]
    assert f"{bench['epochs']} epochs" in markdown("08_convolutional_network")  # the lesson names the bench's budget


def test_the_tag_check_finds_a_lesson_model_that_drifted():
    drifted = definitions_of("def small_cnn(dropout=0.25):\n    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.Flatten())")
    assert architecture(drifted["small_cnn"]()) != architecture(recipes.small_cnn())


# ---------------------------------------------------------------- corrections that must stay corrected


def test_lesson_01_states_the_view_rule_that_torch_follows():
    transposed = torch.arange(6).view(2, 3).T
    assert not transposed.is_contiguous() and transposed.view(3, 1, 2).shape == (3, 1, 2)  # works: strides fit
    with pytest.raises(RuntimeError):
        transposed.view(6)  # merging the two axes does not
    text = markdown("01_tensors_vs_numpy")
    assert "needs a contiguous tensor" not in text and "strides" in text


def test_lesson_07_names_the_case_studys_network_and_its_missing_zero_grad():
    text = markdown("07_apparel_classifier")
    assert "500 units" in text and "never `optimizer.zero_grad()`" in text
    assert "one hidden layer of 64" not in text  # the old, wrong attribution
    assert "passes 88%" not in text and "passes 90%" in text


def test_lesson_07_says_which_way_round_its_grey_scale_is_drawn():
    text = markdown("07_apparel_classifier")
    assert "0 (black)" in text and "`gray_r`" in text


def test_lesson_06_lists_all_four_slips_of_the_articles_scratch_network():
    box = next(cell.source for cell in lesson("06_sigmoid_network_from_scratch").cells
               if cell.cell_type == "markdown" and BOX in cell.source)
    assert [int(n) for n in re.findall(r"^> (\d)\. ", box, re.M)] == [1, 2, 3, 4]
    assert "**output** layer's error" in box and "never reaches the output" in box


def test_the_deprecations_are_named_where_the_lessons_meet_them():
    assert "deprecated" in markdown("02_matrix_operations") and "`.mT`" in markdown("02_matrix_operations")
    lesson_09 = markdown("09_beyond_the_basics")
    assert "ResNet18_Weights.DEFAULT" in lesson_09 and "resnet18(weights=" in lesson_09
    assert "`pretrained=`" in lesson_09 and "TorchScript" in lesson_09 and "deprecated" in lesson_09


@pytest.mark.parametrize("stem", ["02_matrix_operations", "03_autograd", "05_neural_networks",
                                  "06_sigmoid_network_from_scratch", "07_apparel_classifier", "09_beyond_the_basics"])
def test_where_a_lesson_departs_from_an_article_a_box_says_why(stem):
    boxes = [cell.source for cell in lesson(stem).cells if cell.cell_type == "markdown" and BOX in cell.source]
    assert boxes, f"{stem} departs from a source article; say where and why in a '{BOX}' box"
    for box in boxes:
        start = box.index(BOX)
        block = box[start:].split("\n\n")[0]
        assert all(line.startswith(">") for line in block.splitlines()), "the box is one quoted block"


def test_lesson_05_no_longer_carries_the_topics_moved_to_lesson_09():
    text = markdown("05_neural_networks")
    code = "\n".join(cell.source for cell in lesson("05_neural_networks").cells if cell.cell_type == "code")
    for moved in ["torch.export", "DistributedDataParallel", "optimizer.load_state_dict", "requires_grad = False"]:
        assert moved not in code, f"{moved} belongs to lesson 09 now"
    assert "lesson 09" in text.lower()


def test_lesson_03_keeps_to_autograd():
    code = "\n".join(cell.source for cell in lesson("03_autograd").cells if cell.cell_type == "code")
    assert "torch.jit" not in code and "autograd.Function" not in code
    assert "torch.autograd.Function" in "\n".join(c.source for c in lesson("06_sigmoid_network_from_scratch").cells)


# ---------------------------------------------------------------- the README and the lessons agree


def test_the_readme_lists_the_lessons_from_first_to_last():
    readme = (ROOT / "README.md").read_text()
    stems = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert f"`{stems[0]}` … `{stems[-1]}`" in readme


def test_every_helper_the_readme_introduces_is_used_by_a_lesson():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("Helpers you will meet"):]
    block = block[block.index("```python"):block.index("```", block.index("```python") + 3)]
    helpers = re.search(r"from course_utils import (.+)", block).group(1).split(", ")
    code = "\n".join(cell.source for path in sorted(NOTEBOOKS.glob("*.ipynb"))
                     for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    unused = [name for name in helpers if not re.search(rf"\b{name}\(", code)]
    assert not unused, f"the README promises helpers no lesson uses: {unused}"
