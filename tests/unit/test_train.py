"""course_utils.train: batching in-memory tensors, the training loop, and scoring a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.train import (
    Augment,
    History,
    TensorBatches,
    accuracy,
    evaluate,
    fit,
    model_device,
    predict,
    random_shift,
    scheduled_learning_rates,
    train_epoch,
)


def blobs(n: int = 200, seed: int = 0):
    """Two well-separated Gaussian clouds in 2-D: a problem any small model learns in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None] * 2 - 1) * 2.0
    return x, y


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


# ---------------------------------------------------------------- TensorBatches


def test_batches_cover_the_data_in_order_without_shuffle():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = list(TensorBatches(x, y, batch_size=4))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    assert torch.cat([yb for _, yb in batches]).tolist() == list(range(10))
    assert len(TensorBatches(x, y, batch_size=4)) == 3


def test_shuffled_batches_visit_every_item_once_per_epoch_in_a_new_order():
    x, y = torch.arange(50.0)[:, None], torch.arange(50)
    batches = TensorBatches(x, y, batch_size=8, shuffle=True, seed=1)
    first = torch.cat([yb for _, yb in batches])
    second = torch.cat([yb for _, yb in batches])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(50))
    assert first.tolist() != second.tolist()
    assert first.tolist() != list(range(50))


def test_shuffled_batches_keep_inputs_with_their_labels():
    x, y = torch.arange(30.0)[:, None] * 10, torch.arange(30)
    for xb, yb in TensorBatches(x, y, batch_size=7, shuffle=True):
        assert torch.equal(xb[:, 0], yb.float() * 10)


def test_the_same_seed_gives_the_same_batches():
    x, y = torch.randn(40, 3), torch.arange(40)
    orders = [[yb.tolist() for _, yb in TensorBatches(x, y, 8, shuffle=True, seed=7)] for _ in range(2)]
    assert orders[0] == orders[1]


def test_a_transform_is_applied_to_each_batch_of_inputs_only():
    x, y = torch.ones(6, 2), torch.arange(6)
    for xb, yb in TensorBatches(x, y, 4, transform=lambda b: b * 3):
        assert torch.all(xb == 3)
        assert yb.max() < 6


@pytest.mark.parametrize(
    "x, y, batch_size, message",
    [
        (torch.zeros(5, 2), torch.zeros(4, dtype=torch.long), 2, "5 inputs but 4 labels"),
        (torch.zeros(5, 2, dtype=torch.uint8), torch.zeros(5, dtype=torch.long), 2, "x.float"),
        (torch.zeros(5, 2), torch.zeros(5), 2, "y.long()"),
        (torch.zeros(5, 2), torch.zeros(5, dtype=torch.long), 0, "batch_size must be a positive"),
    ],
)
def test_bad_batches_are_refused_with_a_message_saying_what_to_do(x, y, batch_size, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TensorBatches(x, y, batch_size)


def test_batches_of_numpy_arrays_are_refused():
    with pytest.raises(TypeError, match="torch.as_tensor"):
        TensorBatches(torch.zeros(3, 2).numpy(), torch.zeros(3, dtype=torch.long), 2)


# ---------------------------------------------------------------- scoring


def test_accuracy_counts_rows_whose_top_score_is_the_label():
    logits = torch.tensor([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0], [1.0, 9.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 0])) == 0.5


def test_accuracy_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one row per label"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_predict_returns_one_class_per_row_in_eval_mode_and_restores_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    x = torch.randn(10, 4)
    labels = predict(model, x, batch_size=3)
    assert labels.shape == (10,) and labels.dtype == torch.int64
    assert torch.equal(labels, predict(model, x)), "dropout must be off while predicting"
    assert torch.equal(labels, model[0](x).argmax(dim=1))
    assert model.training


def test_evaluate_gives_loss_and_accuracy_on_tensors_and_on_a_dataloader():
    x, y = blobs()
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        model.bias.zero_()
    loss, acc = evaluate(model, (x, y), batch_size=64)
    assert acc > 0.95
    assert loss == pytest.approx(nn.functional.cross_entropy(model(x), y).item(), rel=1e-5)
    assert evaluate(model, DataLoader(TensorDataset(x, y), batch_size=32)) == pytest.approx((loss, acc), rel=1e-5)


def test_evaluate_of_no_data_says_so():
    with pytest.raises(ValueError, match="no data"):
        evaluate(nn.Linear(2, 2), (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))


def test_a_model_without_parameters_is_refused():
    with pytest.raises(ValueError, match="no parameters"):
        model_device(nn.ReLU())


# ---------------------------------------------------------------- training


def test_one_epoch_lowers_the_loss_and_steps_the_scheduler_once_per_batch():
    x, y = blobs()
    model = small_model()
    before, _ = evaluate(model, (x, y))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = TensorBatches(x, y, 32, shuffle=True)
    train_epoch(model, batches, optimizer, scheduler=scheduler)
    assert scheduler.last_epoch == len(batches)
    after, _ = evaluate(model, (x, y))
    assert after < before


def test_fit_learns_a_separable_problem_and_records_every_epoch():
    x, y = blobs()
    model = small_model()
    history = fit(
        model,
        TensorBatches(x, y, 32, shuffle=True),
        torch.optim.Adam(model.parameters(), lr=0.05),
        epochs=5,
        val=blobs(seed=1),
        progress=False,
    )
    assert isinstance(history, History) and history.epochs == 5
    assert len(history.val_loss) == len(history.val_accuracy) == len(history.seconds) == 5
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_accuracy[-1] > 0.95


def test_fit_without_validation_data_records_only_training_figures():
    x, y = blobs()
    model = small_model()
    history = fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, progress=False)
    assert history.epochs == 2 and history.val_loss == [] and history.val_accuracy == []


def test_fit_with_the_same_seeds_repeats_exactly():
    def run():
        x, y = blobs()
        model = small_model()
        batches = TensorBatches(x, y, 16, shuffle=True, seed=3, transform=lambda b: b + 0.1 * torch.randn_like(b))
        fit(model, batches, torch.optim.Adam(model.parameters(), lr=0.01), epochs=3, seed=5, progress=False)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


def test_fit_leaves_the_global_generator_alone_without_a_seed_and_reseeds_it_with_one():
    def next_draw_after_fit(global_seed, **seed):
        x, y = blobs()
        model = small_model()  # with dropout, which draws from the global generator
        torch.manual_seed(global_seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        fit(model, TensorBatches(x, y, 64), optimizer, epochs=1, progress=False, **seed)
        return torch.rand(1)

    assert not torch.equal(next_draw_after_fit(1), next_draw_after_fit(2)), "fit reseeded without being asked"
    assert torch.equal(next_draw_after_fit(1, seed=9), next_draw_after_fit(2, seed=9))


def test_fit_keeps_an_exponential_moving_average_of_the_weights_after_every_step():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    class Recorder:  # stepped by train_epoch after every optimizer step, as a scheduler is
        def __init__(self):
            self.weights = []

        def step(self):
            self.weights.append([p.detach().clone() for p in model.parameters()])

    x, y = blobs()
    model, recorder, decay = small_model(), Recorder(), 0.9
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    history = fit(
        model,
        TensorBatches(x, y, 32, shuffle=True),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=2,
        val=blobs(seed=1),
        scheduler=recorder,
        averaged=ema,
        seed=0,
        progress=False,
    )
    manual = recorder.weights[0]  # the first update copies the weights; each later one moves 10 % of the way
    for weights in recorder.weights[1:]:
        manual = [decay * m + (1 - decay) * w for m, w in zip(manual, weights)]
    assert len(recorder.weights) == 2 * len(TensorBatches(x, y, 32))
    for averaged, expected in zip(ema.module.parameters(), manual):
        torch.testing.assert_close(averaged, expected)
    assert history.val_accuracy[-1] == evaluate(ema.module, blobs(seed=1))[1], "fit scores the averaged model"


def test_fit_trains_from_a_dataloader_too():
    x, y = blobs()
    model = small_model()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    history = fit(model, loader, torch.optim.Adam(model.parameters(), lr=0.05), epochs=3, progress=False)
    assert history.train_accuracy[-1] > 0.9


def test_fit_shows_a_progress_bar_that_counts_every_batch_of_every_epoch(capsys):
    x, y = blobs(40)
    model = small_model()
    fit(
        model, TensorBatches(x, y, 16), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, val=(x, y), progress=True
    )
    err = capsys.readouterr().err
    assert "6/6" in err and "epoch=2/2" in err  # 3 batches x 2 epochs; the postfix names the epoch


def test_fit_redraws_its_bar_a_bounded_number_of_times(capsys):
    """Each redraw is a few kernel messages in a notebook; thousands of them overflow nbval's message queue."""
    x, y = blobs(2000)
    model = nn.Sequential(nn.Linear(2, 2))
    fit(model, TensorBatches(x, y, 4), torch.optim.SGD(model.parameters(), lr=0.01), epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "1000/1000" in err  # the last redraw shows every batch counted
    assert 2 <= err.count("\r") <= 60, f"{err.count(chr(13))} redraws for 1000 batches"


def test_fit_leaves_the_global_generator_alone_unless_given_a_seed():
    x, y = blobs()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    model = nn.Sequential(nn.Linear(2, 2))  # no dropout: training itself draws nothing from the global generator
    torch.set_rng_state(state)
    fit(
        model,
        TensorBatches(x, y, 32, shuffle=True),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=2,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), state), "fit() must not reseed torch's global generator by itself"


def test_fit_with_a_seed_is_manual_seed_then_fit():
    def run(explicit):
        x, y = blobs()
        model = small_model()  # has dropout, which draws from the global generator
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        if explicit:
            torch.manual_seed(7)
            fit(model, (x, y), optimizer, epochs=2, progress=False)
        else:
            torch.manual_seed(999)
            fit(model, (x, y), optimizer, epochs=2, seed=7, progress=False)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))


def test_fit_scores_validation_with_its_own_loss_when_given_one():
    x, y = blobs()
    model = small_model()
    smoothed = nn.CrossEntropyLoss(label_smoothing=0.2)
    history = fit(
        model,
        (x, y),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=1,
        val=(x, y),
        loss_fn=smoothed,
        val_loss_fn=nn.functional.cross_entropy,
        progress=False,
    )
    assert history.val_loss[0] == pytest.approx(evaluate(model, (x, y))[0], rel=1e-6)
    same = fit(
        model,
        (x, y),
        torch.optim.SGD(model.parameters(), lr=0.0),
        epochs=1,
        val=(x, y),
        loss_fn=smoothed,
        progress=False,
    )
    assert same.val_loss[0] == pytest.approx(evaluate(model, (x, y), loss_fn=smoothed)[0], rel=1e-6)


@pytest.mark.parametrize("epochs", [0, -1, 2.5])
def test_fit_refuses_a_bad_number_of_epochs(epochs):
    model = small_model()
    with pytest.raises(ValueError, match="epochs must be a positive whole number"):
        fit(model, blobs(), torch.optim.SGD(model.parameters(), lr=0.1), epochs=epochs, progress=False)


def test_fit_refuses_data_it_cannot_batch():
    model = small_model()
    with pytest.raises(TypeError, match="pair \\(inputs, labels\\) of tensors"):
        fit(model, 42, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, progress=False)


def test_empty_training_data_is_reported():
    model = small_model()
    empty = (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="training data is empty"):
        fit(model, empty, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, progress=False)


# ---------------------------------------------------------------- augmentation


def test_random_shift_moves_a_lone_pixel_by_at_most_max_shift():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    images[:, 0, 14, 14] = 1.0
    shifted = random_shift(images, max_shift=2, fill=0.0)
    assert shifted.shape == images.shape
    assert torch.all(shifted.sum(dim=(1, 2, 3)) == 1.0), "a pixel in the middle never falls off the edge"
    where = shifted[:, 0].flatten(1).argmax(dim=1)
    rows, cols = where // 28, where % 28
    assert (rows - 14).abs().max() <= 2 and (cols - 14).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5, "the shifts differ from image to image"


def shifted_by_hand(image: torch.Tensor, down: int, right: int, fill: float) -> torch.Tensor:
    """[H, W] image moved ``down`` rows and ``right`` columns (negative: up, left), the border filled."""
    h, w = image.shape
    out = torch.full_like(image, fill)
    out[max(down, 0) : h + min(down, 0), max(right, 0) : w + min(right, 0)] = image[
        max(-down, 0) : h + min(-down, 0), max(-right, 0) : w + min(-right, 0)
    ]
    return out


@pytest.mark.parametrize("flip", [False, True])
def test_each_shifted_image_is_one_of_the_hand_made_shifts(flip):
    images = torch.arange(200 * 36, dtype=torch.float32).reshape(200, 1, 6, 6)  # every pixel different
    out = random_shift(images, max_shift=1, fill=-1.0, flip=flip, generator=torch.Generator().manual_seed(0))
    seen = set()
    for image, result in zip(images[:, 0], out[:, 0]):
        candidates = {
            (d, r, m): shifted_by_hand(image.flip(-1) if m else image, d, r, -1.0)
            for d in (-1, 0, 1)
            for r in (-1, 0, 1)
            for m in ((False, True) if flip else (False,))
        }
        match = [key for key, c in candidates.items() if torch.equal(c, result)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == (18 if flip else 9), "with 200 images every shift (and mirror) turns up"


@pytest.mark.parametrize("flip", [False, True])
def test_the_shifts_follow_the_generators_draws_in_order_so_lessons_repeat_their_figures(flip):
    """Row draws, column draws, then mirror draws: the lessons' recorded accuracies rely on this order."""
    images = torch.arange(50 * 25, dtype=torch.float32).reshape(50, 1, 5, 5)
    out = random_shift(images, max_shift=2, fill=-1.0, flip=flip, generator=torch.Generator().manual_seed(7))
    again = torch.Generator().manual_seed(7)
    down, right = torch.randint(0, 5, (2, 50), generator=again) - 2
    mirrored = torch.rand(50, generator=again) < 0.5 if flip else torch.zeros(50, dtype=torch.bool)
    for image, result, d, r, m in zip(images[:, 0], out[:, 0], down, right, mirrored):
        window = shifted_by_hand(image, -int(d), -int(r), -1.0)  # a window d rows lower: the image d rows up
        assert torch.equal(result, window.flip(-1) if m else window)


def test_augment_repeats_with_the_same_seed_and_keeps_flat_shapes():
    images = torch.rand(64, 784)
    first, second = Augment(max_shift=2, flip=True, seed=4), Augment(max_shift=2, flip=True, seed=4)
    assert torch.equal(first(images), second(images))
    assert first(images).shape == (64, 784) and not torch.equal(first(images), first(images))


def test_random_shift_keeps_flattened_and_three_dimensional_shapes():
    torch.manual_seed(0)
    flat = torch.rand(5, 784)
    assert random_shift(flat).shape == (5, 784)
    assert random_shift(torch.rand(5, 28, 28)).shape == (5, 28, 28)


def test_random_shift_of_zero_changes_nothing():
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(random_shift(images, max_shift=0), images)


def test_random_shift_fills_the_uncovered_border_with_the_background():
    torch.manual_seed(1)
    images = torch.ones(32, 1, 8, 8)
    shifted = random_shift(images, max_shift=1, fill=-0.5)
    assert set(shifted.unique().tolist()) <= {1.0, -0.5}


def test_random_shift_refuses_non_square_flat_images_and_negative_shifts():
    with pytest.raises(ValueError, match="square"):
        random_shift(torch.zeros(2, 780))
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(torch.zeros(2, 1, 4, 4), max_shift=-1)


# ---------------------------------------------------------------- scheduled_learning_rates


def test_scheduled_rates_are_the_rates_training_uses_at_each_step():
    x, y = blobs(64)
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=3 * 4)
    used = []

    class Recording(TensorBatches):
        def __iter__(self):
            for batch in super().__iter__():
                used.append(optimizer.param_groups[0]["lr"])
                yield batch

    fit(model, Recording(x, y, 16, shuffle=True), optimizer, epochs=3, scheduler=scheduler, progress=False)
    expected = scheduled_learning_rates(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=3 * 4), 3 * 4
    )
    assert used == pytest.approx(expected, rel=1e-12)


def test_one_cycle_rates_climb_to_the_peak_and_fall_far_below_the_start():
    lrs = scheduled_learning_rates(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.004, total_steps=100), 100
    )
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.004) and 20 <= peak <= 40  # OneCycleLR warms up over 30% of the steps
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))
    assert lrs[-1] < lrs[0] / 100


def test_scheduled_rates_refuse_a_bad_number_of_steps():
    with pytest.raises(ValueError, match="total_steps"):
        scheduled_learning_rates(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1), 0)


# ---------------------------------------------------------------- test-time flips and bfloat16


def test_predict_with_flips_averages_each_image_with_its_mirror_image():
    torch.manual_seed(0)
    model = nn.Linear(16, 3)  # not symmetric: an image and its mirror image score differently
    images = torch.randn(200, 16)
    mirrored = images.reshape(200, 4, 4)[:, :, [3, 2, 1, 0]].reshape(200, 16)  # columns reversed by hand
    with torch.no_grad():
        by_hand = (model(images).softmax(dim=1) + model(mirrored).softmax(dim=1)).argmax(dim=1)
    flipped = predict(model, images, flip=True)
    assert torch.equal(flipped, by_hand)
    assert not torch.equal(flipped, predict(model, images)), "the mirror images changed some answers"
    assert torch.equal(predict(model, images.reshape(200, 1, 4, 4).flatten(1), flip=True), by_hand)


def test_fast_bfloat16_is_a_yes_or_no_answer():
    from course_utils.train import fast_bfloat16

    assert fast_bfloat16() in (True, False)


def test_training_under_bfloat16_autocast_still_learns():
    x, y = blobs()
    model = small_model()
    history = fit(
        model,
        TensorBatches(x, y, 32, shuffle=True),
        torch.optim.Adam(model.parameters(), lr=0.05),
        epochs=3,
        val=blobs(seed=1),
        bf16=True,
        seed=0,
        progress=False,
    )
    assert history.val_accuracy[-1] > 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters()), "autocast leaves the weights in float32"
