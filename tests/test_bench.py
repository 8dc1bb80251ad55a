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


def test_an_unknown_recipe_is_refused_with_the_known_names():
    import pytest

    with pytest.raises(ValueError, match="improved_mlp"):
        recipes.run_recipe("resnet")


def test_the_table_marks_met_and_missed_targets(capsys):
    print_table([("a", "accuracy", "91%", ">= 90%", True), ("b", "speed", "2x", ">= 3x", False),
                 ("c", "info", "1 s", "", None)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].rstrip().endswith("ok") and lines[1].rstrip().endswith("MISSED")
    assert not lines[2].rstrip().endswith(("ok", "MISSED"))
