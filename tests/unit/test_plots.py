"""course_utils.plots: each helper returns a Figure, draws headless, and refuses bad input clearly."""

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import plots
from course_utils.train import History


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def two_layer_classifier():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Sigmoid())


def test_image_grid_titles_each_image_with_its_class(tmp_path):
    fig = plots.plot_image_grid(torch.zeros(10, 1, 28, 28), list(range(10)), ncols=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes][:3] == ["T-shirt/top", "Trouser", "Pullover"]
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_image_grid_marks_wrong_predictions_in_red():
    fig = plots.plot_image_grid(np.zeros((2, 28, 28)), [0, 1], predictions=[0, 2])
    right, wrong = fig.axes[0].title, fig.axes[1].title
    assert right.get_text() == "T-shirt/top" and right.get_color() == "black"
    assert wrong.get_text() == "Pullover\n(Trouser)" and wrong.get_color() == "red"


def test_image_grid_pads_the_last_row_with_empty_axes():
    fig = plots.plot_image_grid(torch.zeros(3, 28, 28), [0, 1, 2], ncols=2)
    assert len(fig.axes) == 4 and not fig.axes[3].images


def test_image_grid_rejects_mismatched_input():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        plots.plot_image_grid(torch.zeros(3, 28, 28), [0, 1])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        plots.plot_image_grid(torch.zeros(28, 28), [0])


def test_loss_curves_draw_one_line_per_split():
    fig = plots.plot_loss_curves(torch.tensor([1.0, 0.5, 0.25]), [1.2, 0.8, 0.7], title="MLP")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
    assert ax.get_lines()[0].get_ydata().tolist() == [1.0, 0.5, 0.25] and ax.get_title() == "MLP"


def test_loss_curves_without_validation():
    assert len(plots.plot_loss_curves([3.0, 2.0]).axes[0].get_lines()) == 1


def test_confusion_matrix_counts_match_a_direct_count():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    counts = plots.confusion_matrix(torch.tensor(y_true), torch.tensor(y_pred))
    for i, j in [(0, 0), (3, 7), (9, 2)]:
        assert counts[i, j] == np.sum((y_true == i) & (y_pred == j))
    assert counts.sum() == 500


def test_confusion_matrix_plot_writes_every_count():
    fig = plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], class_names=["a", "b"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0", "1", "1", "1"]
    assert fig.axes[0].get_ylabel() == "true" and fig.axes[0].get_xlabel() == "predicted"


def test_confusion_matrix_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="must match"):
        plots.confusion_matrix([0, 1], [0])


def test_image_grid_draws_ink_dark_on_white_paper():
    fig = plots.plot_image_grid(torch.zeros(1, 28, 28), [0])
    assert fig.axes[0].images[0].get_cmap().name == "gray_r"  # lesson 07 says so: 0 is drawn white, 255 black


# ---------------------------------------------------------------- per-class accuracy


def test_per_class_accuracy_is_the_diagonal_over_the_row_sums():
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2]
    assert plots.per_class_accuracy(y_true, y_pred, n_classes=4)[:3].tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert np.isnan(plots.per_class_accuracy(y_true, y_pred, n_classes=4)[3])  # class 3 never occurs


def test_per_class_plot_draws_one_bar_per_class_and_model_with_percent_labels():
    fig = plots.plot_per_class_accuracy(
        {"baseline": ([0, 1, 1], [0, 0, 1]), "improved": ([0, 1, 1], [0, 1, 1])},
        class_names=["a", "b"],
        title="per class",
    )
    ax = fig.axes[0]
    assert len(ax.patches) == 4
    assert sorted(t.get_text() for t in ax.texts) == ["100%", "100%", "100%", "50%"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "improved"]


def test_per_class_plot_needs_a_model():
    with pytest.raises(ValueError, match="at least one model"):
        plots.plot_per_class_accuracy({})


# ---------------------------------------------------------------- history, schedule, label counts


def test_history_plot_shows_loss_and_accuracy_for_training_and_validation():
    fig = plots.plot_history(History([0.9, 0.5], [0.6, 0.8], [0.8, 0.6], [0.7, 0.75]), title="run")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    accuracy_lines = fig.axes[1].get_lines()
    assert [line.get_label() for line in accuracy_lines] == ["training", "validation"]
    assert accuracy_lines[1].get_ydata().tolist() == [0.7, 0.75]


def test_history_plot_refuses_an_empty_history():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history(History())


def test_lr_schedule_plot_marks_the_peak_in_epochs():
    fig = plots.plot_lr_schedule([0.1, 0.5, 1.0, 0.5], steps_per_epoch=2)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch"
    assert ax.get_lines()[0].get_xdata().tolist() == [0.0, 0.5, 1.0, 1.5]
    assert "peak 1 at epoch 1.0" in [t.get_text() for t in ax.texts]


def test_lr_schedule_plot_refuses_an_empty_schedule():
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_lr_schedule([])


def test_accuracy_against_labels_draws_percentages_on_a_log_axis():
    fig = plots.plot_accuracy_vs_labels([50, 500], {"scratch": [0.5, 0.8], "fine-tuned": [0.7, 0.85]}, chance=0.2)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_lines()[1].get_ydata().tolist() == pytest.approx([70.0, 85.0])
    assert list(ax.get_lines()[2].get_ydata()) == pytest.approx([20.0, 20.0])  # chance


def test_accuracy_against_labels_draws_the_mean_of_repeated_runs_and_their_range():
    fig = plots.plot_accuracy_vs_labels([50, 500], {"scratch": [[0.4, 0.6], [0.8, 0.9]]})
    ax = fig.axes[0]
    assert ax.get_lines()[0].get_ydata().tolist() == pytest.approx([50.0, 85.0])
    assert ax.get_lines()[0].get_label() == "scratch (mean of 2 runs)"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(40.0) and band.max() == pytest.approx(90.0)


def test_accuracy_against_labels_needs_one_accuracy_per_label_count():
    with pytest.raises(ValueError, match="one each"):
        plots.plot_accuracy_vs_labels([50, 500], {"scratch": [0.5]})


# ---------------------------------------------------------------- decision boundary


def test_decision_boundary_evaluates_the_model_in_eval_mode_and_restores_training_mode():
    model = two_layer_classifier()
    model.train()
    fig = plots.plot_decision_boundary(model, torch.randn(30, 2), torch.arange(30) % 2)
    assert model.training
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 1"]
    assert len(ax.collections) >= 3  # filled contours, the 0.5 line, the points


def test_decision_boundary_of_logits_matches_the_same_model_with_a_sigmoid():
    model = two_layer_classifier()
    points, labels = torch.randn(30, 2, generator=torch.Generator().manual_seed(1)), torch.arange(30) % 2
    with_sigmoid = plots.plot_decision_boundary(model, points, labels, resolution=40)
    from_logits = plots.plot_decision_boundary(model[:-1], points, labels, logits=True, resolution=40)
    assert png_bytes(with_sigmoid) == png_bytes(from_logits)


def test_decision_boundary_refuses_points_that_are_not_2d():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plots.plot_decision_boundary(two_layer_classifier(), torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="5 points but 4 labels"):
        plots.plot_decision_boundary(two_layer_classifier(), torch.zeros(5, 2), torch.zeros(4))


# ---------------------------------------------------------------- broadcasting diagram


def test_broadcast_diagram_writes_every_stretched_value_and_the_result():
    fig = plots.plot_broadcast(torch.tensor([[0], [10], [20]]), torch.tensor([1, 2, 3, 4]))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "a (3, 1)" in texts and "b (4,)" in texts and "a + b (3, 4)" in texts
    cells = [t for t in texts if t.lstrip("-").isdigit()]
    assert len(cells) == 3 * 12  # a, b and the result, each drawn in the result's 3 x 4 shape
    assert cells[-12:] == [str(v) for v in (np.array([[0], [10], [20]]) + np.arange(1, 5)).ravel()]


def test_broadcast_diagram_fades_exactly_the_copies():
    fig = plots.plot_broadcast(torch.ones(2, 3), torch.tensor([10.0, 20.0, 30.0]))
    dashed = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 3  # b's second row is the only copy; a and the result are all real


def test_broadcast_diagram_draws_a_scalar_stretched_everywhere():
    fig = plots.plot_broadcast(torch.tensor([1, 2, 3]), torch.tensor(10))
    dashed = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2


def test_broadcast_diagram_refuses_shapes_that_do_not_fit_with_the_rule():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2,\) do not broadcast"):
        plots.plot_broadcast(torch.ones(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="0-, 1- or 2-D"):
        plots.plot_broadcast(torch.ones(2, 2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="op must be"):
        plots.plot_broadcast(torch.ones(2), torch.ones(2), op="@")


# ---------------------------------------------------------------- autograd graph


def test_autograd_graph_follows_grad_fn_to_the_leaves():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    c = (a + 5).mean()
    graph = plots.autograd_graph(c, {"a": a, "c": c})
    label = dict(graph.nodes(data="label"))
    chain = [label[n] for n in ["output", "fn0", "fn1", "fn2", "fn2/leaf"]]
    assert chain == ["c ()", "MeanBackward0", "AddBackward0", "AccumulateGrad", "a (2, 2)"]
    assert list(graph.edges()) == [("output", "fn0"), ("fn0", "fn1"), ("fn1", "fn2"), ("fn2", "fn2/leaf")]


def test_autograd_graph_has_one_accumulator_per_leaf_even_when_it_is_used_twice():
    u, v = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    graph = plots.autograd_graph(u * v + u**2, {"u": u, "v": v})
    leaves = {d["label"]: n for n, d in graph.nodes(data=True) if d["kind"] == "leaf"}
    assert sorted(leaves) == ["u ()", "v ()"]
    u_accumulator = next(iter(graph.predecessors(leaves["u ()"])))
    assert sorted(graph.nodes[p]["label"] for p in graph.predecessors(u_accumulator)) == [
        "MulBackward0",
        "PowBackward0",
    ]


def test_autograd_graph_skips_constants_and_refuses_untracked_tensors():
    x = torch.tensor(2.0, requires_grad=True)
    graph = plots.autograd_graph(x * torch.tensor(3.0))
    assert sorted(d["kind"] for _, d in graph.nodes(data=True)) == ["function", "function", "leaf", "output"]
    with pytest.raises(ValueError, match="no grad_fn"):
        plots.autograd_graph(torch.ones(2) * 2)


def test_autograd_graph_figure_draws_one_box_per_node_and_one_arrow_per_edge():
    u, v = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    f = u * v + u**2
    fig = plots.plot_autograd_graph(f, {"u": u, "v": v, "f": f})
    graph = plots.autograd_graph(f, {"u": u, "v": v, "f": f})
    ax = fig.axes[0]
    boxes = [t.get_text() for t in ax.texts if t.get_text()]
    assert sorted(boxes) == sorted(d for _, d in graph.nodes(data="label"))
    assert sum(1 for t in ax.texts if not t.get_text()) == graph.number_of_edges()  # arrows are empty annotations


# ---------------------------------------------------------------- network diagram


def test_network_diagram_labels_the_shape_of_every_tensor():
    fig = plots.plot_network((4, 3, 1), batch=3)
    ax = fig.axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    for shape in ["W1 (4, 3)", "b1 (1, 3)", "W2 (3, 1)", "b2 (1, 1)", "X\n(3, 4)", "(3, 3)", "(3, 1)"]:
        assert shape in texts
    assert len(ax.collections) == 1 + 3  # the edges, then one group of nodes per layer
    assert sum(len(c.get_offsets()) for c in ax.collections[1:]) == 4 + 3 + 1


def test_network_diagram_refuses_fewer_than_two_layers():
    with pytest.raises(ValueError, match="at least two layers"):
        plots.plot_network((4,))


# ---------------------------------------------------------------- every figure is deterministic


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.plot_broadcast(torch.tensor([[0], [10]]), torch.tensor([1, 2, 3])),
        lambda: plots.plot_network((4, 3, 1)),
        lambda: plots.plot_decision_boundary(
            two_layer_classifier(), torch.arange(40.0).reshape(20, 2) / 10, torch.arange(20) % 2, resolution=30
        ),
        lambda: plots.plot_lr_schedule([0.1, 0.4, 0.2]),
        lambda: plots.plot_history(History([1.0, 0.5], [0.5, 0.7], [1.1, 0.6], [0.4, 0.6])),
        lambda: plots.plot_per_class_accuracy({"m": ([0, 1, 2], [0, 1, 1])}, class_names=["a", "b", "c"]),
        lambda: plots.plot_accuracy_vs_labels([10, 100], {"m": [0.3, 0.6]}),
    ],
    ids=["broadcast", "network", "boundary", "schedule", "history", "per_class", "labels"],
)
def test_the_same_input_draws_the_same_picture(draw):
    assert png_bytes(draw()) == png_bytes(draw())


def test_the_autograd_figure_is_the_same_for_the_same_computation():
    def draw():
        u, v = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
        f = u * v + u**2
        return plots.plot_autograd_graph(f, {"u": u, "v": v, "f": f})

    assert png_bytes(draw()) == png_bytes(draw())


# ---------------------------------------------------------------- memory layout (lesson 01)


def test_storage_offsets_follow_the_strides():
    t = torch.arange(12).view(3, 4)
    assert plots.storage_offsets(t).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert plots.storage_offsets(t.T).tolist() == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]
    assert plots.storage_offsets(t[1:, ::2]).tolist() == [[4, 6], [8, 10]]  # a slice starts further in
    for index, offset in np.ndenumerate(plots.storage_offsets(t.T)):
        assert t.T[index].item() == t.flatten()[offset].item()  # arange: the value is its storage position


def reading_steps(ax, n_storage):
    """The red step numbers above the storage cells of the last tensor drawn, as {storage position: step}."""
    circled = [t for t in ax.texts if t.get_bbox_patch() is not None]
    last = circled[-n_storage:]
    xs = sorted(t.get_position()[0] for t in last)
    return {xs.index(t.get_position()[0]): int(t.get_text()) for t in last}


def test_memory_layout_numbers_the_storage_in_reading_order():
    t = torch.arange(6).view(2, 3)
    contiguous = plots.plot_memory_layout({"t": t}).axes[0]
    assert reading_steps(contiguous, 6) == {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6}
    transposed = plots.plot_memory_layout({"t.T": t.T}).axes[0]
    assert reading_steps(transposed, 6) == {0: 1, 1: 3, 2: 5, 3: 2, 4: 4, 5: 6}  # read 0, 3, 1, 4, 2, 5
    texts = [x.get_text() for x in transposed.texts]
    assert "t.T: shape (3, 2), strides (1, 3), contiguous False" in texts
    assert sorted(x for x in texts if x.startswith("@")) == [f"@{k}" for k in range(6)]


def test_memory_layout_draws_one_row_per_tensor_and_one_arrow_per_step():
    t = torch.arange(6).view(2, 3)
    ax = plots.plot_memory_layout({"t": t, "t.T": t.T}).axes[0]
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == 2 * 5
    assert sum(1 for x in ax.texts if x.get_text().startswith(("t:", "t.T:"))) == 2


def test_memory_layout_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="1-D or 2-D"):
        plots.plot_memory_layout({"cube": torch.zeros(2, 2, 2)})
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_memory_layout({})


# ---------------------------------------------------------------- optimizer paths (lesson 04)


def bowl(w, b):
    return (w - 1) ** 2 + 10 * b**2


def test_optimizer_paths_draws_every_path_over_the_contours():
    sgd = torch.tensor([[0.0, 1.0], [0.4, 0.3], [0.8, 0.05]])
    adam = torch.tensor([[0.0, 1.0], [0.1, 0.9]])
    ax = plots.plot_optimizer_paths(bowl, {"SGD": sgd, "Adam": adam}, (-1, 2), (-1, 1.5), minimum=(1, 0)).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["SGD"].get_xydata().tolist() == sgd.tolist()
    assert lines["Adam"].get_xydata().tolist() == adam.tolist()
    assert lines["start"].get_xydata().tolist() == [[0.0, 1.0]] and lines["minimum"].get_xydata().tolist() == [
        [1.0, 0.0]
    ]
    assert ax.collections, "the contour lines"
    assert (ax.get_xlim(), ax.get_ylim()) == ((-1.0, 2.0), (-1.0, 1.5))


def test_optimizer_paths_contours_are_the_loss_on_the_grid():
    ax = plots.plot_optimizer_paths(bowl, {"p": torch.zeros(2, 2)}, (-1, 2), (-1, 1.5), resolution=30).axes[0]
    levels = ax.collections[0].levels
    assert levels.min() > 0 and levels.max() == pytest.approx(bowl(torch.tensor(-1.0), torch.tensor(1.5)).item())


def test_optimizer_paths_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\[steps \+ 1, 2\]"):
        plots.plot_optimizer_paths(bowl, {"p": torch.zeros(3)}, (-1, 1), (-1, 1))
    with pytest.raises(ValueError, match="one loss per grid point"):
        plots.plot_optimizer_paths(lambda w, b: w.sum(), {"p": torch.zeros(2, 2)}, (-1, 1), (-1, 1))
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_optimizer_paths(bowl, {}, (-1, 1), (-1, 1))


# ---------------------------------------------------------------- a kernel sliding (lesson 08)


def test_convolution_steps_write_the_sums_conv2d_computes():
    image = torch.arange(25.0).reshape(5, 5)
    kernel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    expected = torch.nn.functional.conv2d(image[None, None], kernel[None, None])[0, 0]
    positions = [(0, 0), (1, 2), (2, 1)]
    fig = plots.plot_convolution_steps(image, kernel, positions)
    assert len(fig.axes) == 3
    for ax, (i, j) in zip(fig.axes, positions):
        assert ax.get_title().startswith(f"window at ({i}, {j}): ")
        assert float(ax.get_title().rsplit("= ", 1)[1]) == expected[i, j].item()
        outlines = [p for p in ax.patches if not p.get_fill()]
        assert [(p.get_xy(), p.get_width(), p.get_height()) for p in outlines][0] == ((j, i), 3, 3)  # the window


def test_convolution_steps_fill_the_output_up_to_the_current_position():
    image, kernel = torch.arange(16.0).reshape(4, 4), torch.ones(2, 2)
    fig = plots.plot_convolution_steps(image, kernel, [(0, 0), (1, 1)])
    output_values = {str(int(v)) for v in torch.nn.functional.conv2d(image[None, None], kernel[None, None]).flatten()}
    shown = [sum(1 for t in ax.texts if t.get_text() in output_values and t.get_position()[0] > 7) for ax in fig.axes]
    assert shown == [1, 5]  # (0, 0) first; (1, 1) is the fifth of the 3 x 3 outputs in reading order


def test_convolution_steps_refuse_positions_outside_the_output():
    with pytest.raises(ValueError, match="outside"):
        plots.plot_convolution_steps(torch.zeros(4, 4), torch.ones(3, 3), [(2, 0)])
    with pytest.raises(ValueError, match="does not fit"):
        plots.plot_convolution_steps(torch.zeros(2, 2), torch.ones(3, 3), [(0, 0)])


# ---------------------------------------------------------------- all-reduce (lesson 09)


def test_all_reduce_shows_each_rank_its_own_gradient_then_the_mean():
    g0, g1 = torch.tensor([1.0, 2.0, -0.5]), torch.tensor([3.0, 0.0, 0.25])
    ax = plots.plot_all_reduce([g0, g1]).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "rank 0" in texts and "rank 1" in texts
    numbers = [t for t in ax.texts if t.get_text().lstrip("-").replace(".", "").isdigit()]
    right = sorted(
        (t for t in numbers if t.get_position()[0] > 5), key=lambda t: (t.get_position()[1], t.get_position()[0])
    )
    assert [t.get_text() for t in right] == ["2", "1", "-0.125"] * 2  # both ranks hold the mean
    left = sorted(
        (t for t in numbers if t.get_position()[0] < 3), key=lambda t: (t.get_position()[1], t.get_position()[0])
    )
    assert [t.get_text() for t in left] == ["1", "2", "-0.5", "3", "0", "0.25"]


def test_all_reduce_needs_two_ranks_of_equal_size():
    with pytest.raises(ValueError, match="at least two"):
        plots.plot_all_reduce([torch.ones(3)])
    with pytest.raises(ValueError, match="same size"):
        plots.plot_all_reduce([torch.ones(3), torch.ones(2)])


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.plot_memory_layout({"t": torch.arange(6).view(2, 3).T}),
        lambda: plots.plot_optimizer_paths(bowl, {"p": torch.tensor([[0.0, 1.0], [0.5, 0.5]])}, (-1, 2), (-1, 1.5)),
        lambda: plots.plot_convolution_steps(torch.arange(9.0).reshape(3, 3), torch.ones(2, 2), [(0, 0), (1, 1)]),
        lambda: plots.plot_all_reduce([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])]),
    ],
    ids=["memory", "paths", "convolution", "all_reduce"],
)
def test_the_new_diagrams_draw_the_same_picture_for_the_same_input(draw):
    assert png_bytes(draw()) == png_bytes(draw())
