"""Facts the lessons state, checked: the models they define are the benchmark's, and where a lesson
corrects a source article (or itself, issue 14), the correction stays in place.

Static or cheap: nothing here executes a notebook. Tagged cells (cell metadata "tags") mark the code
that must match bench/recipes.py: "model:improved_mlp" and "recipe:improved_mlp" (lesson 07b: IMPROVED_MLP,
trained for LESSON08_MLP's 25 epochs), "model:small_cnn" and "recipe:small_cnn" (lesson 08: FAST_CNN's network,
trained as LESSON08_SHORT, next to LESSON08_MLP). Change a recipe in the lesson's one tagged cell and in
bench/recipes.py together, then re-execute the lesson.
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
#: the source articles, where this checkout has them (beside the checkout, or beside its worktrees' folder)
ARTICLES = next(
    (p for p in (ROOT.parent / "shared" / "reference", ROOT.parent.parent / "shared" / "reference") if p.is_dir()),
    ROOT.parent / "shared" / "reference",
)


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
    tree.body = [
        node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
    ]
    namespace = {"torch": torch, "nn": nn, "device": torch.device("cpu"), **context}
    exec(compile(tree, f"<{source.splitlines()[0]}>", "exec"), namespace)
    return namespace


def architecture(model: nn.Module) -> tuple[str, list]:
    """Every layer with its settings (the repr) and every parameter's name and shape."""
    return str(model), [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def keyword_value(tree, function: str, keyword: str):
    """The literal value of `keyword=` in the one call to `function` (a dotted name's last part) in `tree`."""
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == function
    ]
    assert len(found) == 1, f"expected one call to {function}, found {len(found)}"
    return ast.literal_eval(next(k.value for k in found[0].keywords if k.arg == keyword))


# ---------------------------------------------------------------- the lesson models are the benchmark's


def test_lesson_07b_builds_exactly_the_benchmarks_improved_mlp():
    build_mlp = definitions_of(tagged_cell("07b_improving_the_classifier", "model:improved_mlp").source)["build_mlp"]
    recipe = recipe_dict("07b_improving_the_classifier", "recipe:improved_mlp", "RECIPE")
    lesson_model = build_mlp(recipe["hidden"], norm=recipe["norm"])  # the network the lesson's RECIPE trains
    bench_model, _, _ = recipes.improved_mlp_parts(seed=0)
    assert architecture(lesson_model) == architecture(bench_model)
    for ours, theirs in zip(lesson_model.parameters(), bench_model.parameters()):  # same seed, same construction order
        assert torch.equal(ours, theirs)


def recipe_dict(stem: str, tag: str, name: str) -> dict:
    """The literal dict assigned to `name` in the lesson's cell tagged `tag`, e.g. RECIPE = dict(...)."""
    tree = ast.parse(tagged_cell(stem, tag).source)
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)
    ]
    assert isinstance(value, ast.Call) and getattr(value.func, "id", None) == "dict", f"{name} = dict(...) expected"
    return {k.arg: ast.literal_eval(k.value) for k in value.keywords}


def test_lesson_07bs_final_recipe_is_the_benchmarks():
    recipe, bench = recipe_dict("07b_improving_the_classifier", "recipe:improved_mlp", "RECIPE"), recipes.IMPROVED_MLP
    # the lesson trains the recipe for 25 epochs on its 54,000 images: the run the benchmark measures as
    # LESSON08_MLP (IMPROVED_MLP itself trains 40 epochs on all 60,000, which the lesson quotes)
    assert recipes.LESSON08_MLP == {**bench, "epochs": recipes.LESSON08_MLP["epochs"]}
    assert recipe == {
        "standardised": True,
        "hidden": bench["hidden"],
        "norm": bench["norm"],
        "one_cycle": True,
        "lr": bench["max_lr"],
        "smoothing": bench["label_smoothing"],
        "weight_decay": bench["weight_decay"],
        "batch_size": bench["batch_size"],
        "shift": bench["max_shift"],
        "epochs": recipes.LESSON08_MLP["epochs"],
    }
    # what the lesson's train_recipe cannot do, the benchmark's recipe must not do either
    assert not bench["flip"] and not bench["flip_tta"] and bench["ema"] is None


def test_lesson_07bs_training_helper_uses_the_benchmarks_optimizer_schedule_and_loss():
    tree = ast.parse(tagged_cell("07b_improving_the_classifier", "model:improved_mlp").source)
    assert keyword_value(tree, "AdamW", "fused") is True
    called = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {
        "torch.optim.AdamW",
        "torch.optim.lr_scheduler.OneCycleLR",
        "nn.CrossEntropyLoss",
        "TensorBatches",
        "Augment",  # the random shifts (IMPROVED_MLP's max_shift)
        "nn.BatchNorm1d",
    } <= called


def test_lesson_07bs_ablation_takes_parts_out_of_the_full_length_recipe_and_nothing_mutates_it():
    code = "\n".join(c.source for c in lesson("07b_improving_the_classifier").cells if c.cell_type == "code")
    assert "train_recipe(**{**RECIPE, **change})" in code  # every ablation row is the final recipe minus one part
    assert "RECIPE.update" not in code and "recipe.update" not in code and "try_change" not in code


def test_lesson_08_builds_exactly_the_benchmarks_small_cnn():
    fast_cnn = definitions_of(tagged_cell("08_convolutional_network", "model:small_cnn").source)["fast_cnn"]
    torch.manual_seed(0)
    lesson_model = fast_cnn()
    torch.manual_seed(0)
    bench = recipes.FAST_CNN
    bench_model = recipes.conv_net(bench["widths"], bench["head"], bench["dropout"], bench["pool_first"])
    assert architecture(lesson_model) == architecture(bench_model)
    for ours, theirs in zip(lesson_model.parameters(), bench_model.parameters()):
        assert torch.equal(ours, theirs)


def test_lesson_08_trains_with_the_benchmarks_hyper_parameters():
    cnn = recipe_dict("08_convolutional_network", "recipe:small_cnn", "CNN_RECIPE")
    short = recipes.LESSON08_SHORT  # the recipe's short run: FAST_CNN for 4 epochs on the lesson's 54,000 images
    assert short == {**recipes.FAST_CNN, "epochs": short["epochs"]}
    keys = ("batch_size", "max_lr", "weight_decay", "label_smoothing", "max_shift", "flip", "epochs")
    assert cnn == {k: short[k] for k in keys}
    assert short["flip_tta"] and short["bf16"] == "auto" and short["ema"] is None
    mlp = recipe_dict("08_convolutional_network", "recipe:small_cnn", "MLP_RECIPE")
    bench_mlp = recipes.LESSON08_MLP  # the MLP it is compared with: lesson 07b's final recipe, as long as 07b trains it
    keys = ("hidden", "norm", "batch_size", "max_lr", "weight_decay", "label_smoothing", "max_shift", "flip", "epochs")
    assert mlp == {k: bench_mlp[k] for k in keys}
    lesson_07b = recipe_dict("07b_improving_the_classifier", "recipe:improved_mlp", "RECIPE")
    assert (mlp["hidden"], mlp["norm"], mlp["max_shift"], mlp["epochs"]) == (
        lesson_07b["hidden"],
        lesson_07b["norm"],
        lesson_07b["shift"],
        lesson_07b["epochs"],
    )
    code = "\n".join(c.source for c in lesson("08_convolutional_network").cells if c.cell_type == "code")
    tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%")))
    called = {ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    optimizer = "torch.optim.AdamW(model.parameters(), lr=CNN_RECIPE['max_lr'], weight_decay=CNN_RECIPE['weight_decay']"
    assert optimizer + ", fused=True)" in called
    for used in [
        "memory_format=torch.channels_last",
        "fast_bfloat16()",  # bfloat16 autocast where the CPU has it (bf16="auto")
        "flip=True)",  # test-time flips (flip_tta): predict(..., flip=True)
    ]:
        assert used in code, used


def test_the_tag_check_finds_a_lesson_model_that_drifted():
    drifted = definitions_of(
        "def small_cnn(dropout=0.25):\n    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.Flatten())"
    )
    assert architecture(drifted["small_cnn"]()) != architecture(recipes.small_cnn())


# ---------------------------------------------------------------- corrections that must stay corrected


def test_lesson_01_states_the_view_rule_that_torch_follows():
    transposed = torch.arange(6).view(2, 3).T
    assert not transposed.is_contiguous() and transposed.view(3, 1, 2).shape == (3, 1, 2)  # works: strides fit
    with pytest.raises(RuntimeError):
        transposed.view(6)  # merging the two axes does not
    text = markdown("01_tensors_vs_numpy")
    assert "needs a contiguous tensor" not in text and "strides" in text


def test_lesson_07_names_the_case_studys_network_and_blames_it_for_nothing_it_does_not_show():
    text = markdown("07_apparel_classifier")
    assert "500 units" in text and "one hidden layer of 64" not in text  # the old, wrong attribution
    assert "never calls `optimizer.zero_grad()`" not in text and "article's loop" not in text  # not in its text
    assert "passes 90%" not in markdown("07b_improving_the_classifier")


def test_lesson_07_says_which_way_round_its_grey_scale_is_drawn():
    text = markdown("07_apparel_classifier")
    assert "0 (black)" in text and "`gray_r`" in text


def test_lesson_07_scores_the_test_set_nowhere_and_07b_once_at_the_end():
    def scoring_cells(stem):
        return [
            i for i, c in enumerate(lesson(stem).cells) if c.cell_type == "code" and "score_submission(" in c.source
        ]

    assert scoring_cells("07_apparel_classifier") == []
    cells = lesson("07b_improving_the_classifier").cells
    (only,) = scoring_cells("07b_improving_the_classifier")
    later_code = [
        c.source
        for c in cells[only + 1 :]
        if c.cell_type == "code" and not c.metadata.get("jupyter", {}).get("source_hidden")
    ]
    assert not any("train_recipe(" in code or "fit(" in code for code in later_code), (
        "nothing is trained after the test"
    )


def test_lesson_06_quotes_the_readers_comments_for_the_two_slips_it_shows():
    box = next(
        cell.source
        for cell in lesson("06_sigmoid_network_from_scratch").cells
        if cell.cell_type == "markdown" and BOX in cell.source
    )
    assert [int(n) for n in re.findall(r"^> (\d)\. ", box, re.M)] == [1, 2]
    code_quoted = re.findall(r"`([^`]*_layer[^`]*)`", box)  # the readers' code, as they wrote it
    assert "output = sigmoid(output_layer_input1)" in code_quoted and len(code_quoted) == 4
    assert "output** layer's error" not in box  # slips 3 and 4 criticised code the article's text does not contain
    if ARTICLES.is_dir():
        comments = " ".join(" ".join(p.read_text().split()) for p in ARTICLES.glob("*.txt"))
        assert all(code in comments for code in code_quoted)


def quotes(text: str) -> list:
    """What a text puts between double quotes (paired in order), long enough to be a quote rather than a word."""
    pieces = text.replace("\n> ", " ").replace("\n", " ").split('"')[1::2]
    return [piece for piece in pieces if len(piece) >= 12]


@pytest.mark.skipif(not ARTICLES.is_dir(), reason="the source articles are not in this checkout")
@pytest.mark.parametrize(
    "stem",
    [
        "03_autograd",
        "05_neural_networks",
        "06_sigmoid_network_from_scratch",
        "09_beyond_the_basics",
        "02_matrix_operations",
    ],
)
def test_what_a_lesson_quotes_from_an_article_is_in_the_article(stem):
    articles = " ".join(" ".join(p.read_text().split()) for p in ARTICLES.glob("*.txt"))
    articles = articles.replace("“", '"').replace("”", '"').replace("’", "'").replace("*", "")
    boxes = [cell.source for cell in lesson(stem).cells if cell.cell_type == "markdown" and ("article" in cell.source)]
    quoted = [q for box in boxes for q in quotes(box)]
    assert quoted, f"{stem} cites an article without quoting it"
    for q in quoted:
        for piece in re.split(r"\s*\.\.\.\s*", " ".join(q.split())):  # "..." marks a cut
            assert piece in articles, f"{stem} quotes {piece!r}, which is not in the source articles"


def test_the_deprecations_are_named_where_the_lessons_meet_them():
    assert "deprecated" in markdown("02_matrix_operations") and "`.mT`" in markdown("02_matrix_operations")
    lesson_09 = markdown("09_beyond_the_basics")
    assert "ResNet18_Weights.DEFAULT" in lesson_09 and "resnet18(weights=" in lesson_09
    assert "`pretrained=`" in lesson_09 and "TorchScript" in lesson_09 and "deprecated" in lesson_09


@pytest.mark.parametrize(
    "stem", ["03_autograd", "05_neural_networks", "06_sigmoid_network_from_scratch", "09_beyond_the_basics"]
)
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
    stems = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))
    assert f"`{stems[0]}` … `{stems[-1]}`" in readme


def test_every_helper_the_readme_introduces_is_used_by_a_lesson():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("Helpers you will meet") :]
    block = block[block.index("```python") : block.index("```", block.index("```python") + 3)]
    helpers = re.search(r"from course_utils import (.+)", block).group(1).split(", ")
    code = "\n".join(
        cell.source
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "code"
    )
    unused = [name for name in helpers if not re.search(rf"\b{name}\(", code)]
    assert not unused, f"the README promises helpers no lesson uses: {unused}"
