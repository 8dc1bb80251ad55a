"""course_utils.plots: each helper returns a Figure, draws headless, and refuses bad input clearly."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import plots


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
