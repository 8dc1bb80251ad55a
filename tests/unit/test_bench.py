"""bench/: the pieces of the benchmark that can be checked without timing anything."""

from __future__ import annotations

import torch
from torch import nn

from bench import recipes
from bench.efficiency import matmul_flops_per_step
from bench.run import RUNNERS, SECTIONS, print_table


def test_flops_count_forward_and_both_gradients_except_the_first_layers_input_gradient():
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    batch = 256
    expected = 2 * batch * 784 * 512 * 2 + 2 * batch * 512 * 10 * 3
    assert matmul_flops_per_step(model, batch) == expected


def test_every_section_has_a_runner():
    assert set(SECTIONS) == set(RUNNERS)


def test_the_recipe_models_have_the_documented_shapes():
    torch.manual_seed(0)
    assert recipes.mlp((512, 256), dropout=0.2)(torch.zeros(3, 784)).shape == (3, 10)
    cnn = recipes.small_cnn()
    assert cnn(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in recipes.mlp((512, 256)).parameters()) == 535_818
    assert recipes.mlp((512, 256), norm=True)(torch.zeros(3, 784)).shape == (3, 10)


def test_an_unknown_recipe_is_refused_with_the_known_names():
    import pytest

    with pytest.raises(ValueError, match="improved_mlp"):
        recipes.run_recipe("resnet")


def test_the_table_marks_met_and_missed_targets(capsys):
    print_table(
        [("a", "accuracy", "91%", ">= 90%", True), ("b", "speed", "2x", ">= 3x", False), ("c", "info", "1 s", "", None)]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].rstrip().endswith("ok") and lines[1].rstrip().endswith("MISSED")
    assert not lines[2].rstrip().endswith(("ok", "MISSED"))


def test_the_improved_mlp_parts_are_the_documented_recipe():
    model, optimizer, loss_fn = recipes.improved_mlp_parts()
    recipe = recipes.IMPROVED_MLP
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [*recipe["hidden"], 10]
    assert not any(isinstance(m, nn.Dropout) for m in model)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model) == recipe["norm"]
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == recipe["weight_decay"] and group["fused"]
    assert loss_fn.label_smoothing == recipe["label_smoothing"]


def test_the_recipe_batches_are_shifted_as_the_recipe_says():
    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
    batches = recipes.improved_mlp_batches(x, y)
    assert batches.batch_size == recipes.IMPROVED_MLP["batch_size"]
    assert (batches.transform is not None) == bool(recipes.IMPROVED_MLP["max_shift"] or recipes.IMPROVED_MLP["flip"])
    assert recipes.improved_mlp_batches(x, y, augment=False).transform is None


def test_the_fast_cnn_pools_before_batch_norm_and_keeps_the_shapes():
    torch.manual_seed(0)
    net = recipes.conv_net((32, 64), head=128, dropout=0.0, pool_first=True)
    kinds = [type(m).__name__ for m in net]
    assert kinds[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"] and "Dropout" not in kinds
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert recipes.conv_net((32, 64, 128), head=0)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_every_ablation_row_names_only_known_recipe_settings():
    from bench.ablation import CNN_ROWS, MLP_ROWS

    for rows, defaults in ((MLP_ROWS, recipes.MLP_DEFAULTS), (CNN_ROWS, recipes.CNN_DEFAULTS)):
        for name, config in rows.items():
            assert set(config) <= set(defaults) | {"today"}, name
    for recipe, defaults in (
        (recipes.IMPROVED_MLP, recipes.MLP_DEFAULTS),
        (recipes.FAST_CNN, recipes.CNN_DEFAULTS),
        (recipes.LESSON08_SHORT, recipes.CNN_DEFAULTS),
    ):
        assert set(recipe) <= set(defaults)


def test_the_targets_are_the_issues():
    assert recipes.TARGETS["improved_mlp"] == dict(accuracy=0.91, seconds=60.0)
    assert recipes.TARGETS["small_cnn"] == dict(accuracy=0.935, seconds=150.0)


def test_the_report_names_the_machine_kind_and_its_load():
    from bench.run import machine, machine_kind

    figures = machine()
    assert figures["cpu"] and figures["cpu_capability"] and isinstance(figures["native_bfloat16"], bool)
    assert "load_average_1min_at_start" in figures
    assert figures["cpu_capability"] in machine_kind()


def test_the_same_seed_gives_the_same_initial_weights():
    first, _, _ = recipes.improved_mlp_parts(seed=3)
    second, _, _ = recipes.improved_mlp_parts(seed=3)
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_benchmark_subprocesses_do_not_inherit_the_makefiles_openmp_settings(monkeypatch):
    from bench.efficiency import _openmp_env

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    default = _openmp_env(None, {})
    assert "OMP_WAIT_POLICY" not in default and "GOMP_SPINCOUNT" not in default
    assert _openmp_env(2, {"OMP_WAIT_POLICY": "PASSIVE"})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert _openmp_env(1, {})["OMP_NUM_THREADS"] == "1"


def test_each_epoch_is_compared_with_the_mean_of_the_mm_timings_around_it():
    from bench.efficiency import bracketed_ratios

    assert bracketed_ratios([80.0, 50.0], [100.0, 60.0, 40.0]) == [1.0, 1.0]


def test_bracketing_needs_an_mm_timing_before_and_after_every_epoch():
    import pytest

    from bench.efficiency import bracketed_ratios

    with pytest.raises(ValueError, match="one mm timing more than epochs"):
        bracketed_ratios([80.0, 50.0], [100.0, 60.0])


def test_the_contention_benchmark_runs_lesson_07s_own_training_helper():
    """The benchmark runs the lesson's own cells (not a copy): they must still run on their own."""
    import torch

    from bench.contention import lesson07_scope, lesson_helper_source

    assert "def train_recipe(" in lesson_helper_source()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 784, generator=generator), torch.randint(0, 10, (96,), generator=generator)
    scope = lesson07_scope(x[:64], y[:64], x[64:], y[64:])
    model, history = scope["train_recipe"](standardised=True, hidden=(8,), one_cycle=True, batch_size=32, epochs=1)
    assert model(x[:2]).shape == (2, 10)


def test_a_quick_run_of_the_apparel_section_reports_machine_load_and_every_recipe(tmp_path):
    """``python -m bench.run --quick`` end to end on the recipes' section (figures not checked: tiny runs)."""
    import json

    from bench.run import main

    output = tmp_path / "bench.json"
    assert main(["--quick", "--only", "apparel", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["quick"] and report["machine"]["cpu_capability"]
    section = report["sections"]["apparel"]
    assert "load_average_1min_at_start" in section and set(recipes.RECIPES) <= set(section)
    assert section["lesson08_short_cnn"]["val_accuracy"] > 0.1
    assert any(row["metric"].startswith("load average") for row in report["rows"])


def test_the_recipes_repeat_exactly_with_the_same_seed():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 784, generator=generator), torch.randint(0, 10, (512,), generator=generator)
    runs = [
        recipes.train_mlp(x, y, x[:128], y[:128], keep_model=True, **{**recipes.IMPROVED_MLP, "epochs": 2})
        for _ in range(2)
    ]
    for a, b in zip(runs[0]["model"].state_dict().values(), runs[1]["model"].state_dict().values()):
        assert torch.equal(a, b)
    images = x[:128].reshape(-1, 1, 28, 28)
    cnns = [
        recipes.train_cnn(
            images, y[:128], images[:32], y[:32], keep_model=True, **{**recipes.FAST_CNN, "epochs": 1, "batch_size": 32}
        )
        for _ in range(2)
    ]
    for a, b in zip(cnns[0]["model"].state_dict().values(), cnns[1]["model"].state_dict().values()):
        assert torch.equal(a, b)
