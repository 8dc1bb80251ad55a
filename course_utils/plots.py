"""Matplotlib helpers for the lessons. Each returns its Figure and works without a screen.

    >>> fig = plot_loss_curves([1.0, 0.5, 0.3], [1.1, 0.7, 0.6])
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from course_utils.data import CLASS_NAMES


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def plot_image_grid(images, labels, class_names=CLASS_NAMES, ncols: int = 8, predictions=None,
                    title: str | None = None) -> Figure:
    """A grid of grayscale images titled with their class names (and predictions, if given).

        >>> fig = plot_image_grid(torch.zeros(4, 28, 28), [0, 1, 2, 3])

    A wrong prediction is titled "predicted (true)" in red.
    """
    images = _to_numpy(images)
    if images.ndim == 4:  # [N, 1, H, W] -> [N, H, W]
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must have shape [N, H, W] or [N, 1, H, W], not {images.shape}.")
    labels = _to_numpy(labels).astype(int)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: give one label per image.")
    predictions = None if predictions is None else _to_numpy(predictions).astype(int)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(1.4 * ncols, 1.6 * nrows))
    for i in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r")
        text, color = class_names[labels[i]], "black"
        if predictions is not None:
            correct = predictions[i] == labels[i]
            text = class_names[predictions[i]] if correct else f"{class_names[predictions[i]]}\n({class_names[labels[i]]})"
            color = "black" if correct else "red"
        ax.set_title(text, fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss_curves(train_losses, val_losses=None, xlabel: str = "epoch", ylabel: str = "loss",
                     title: str | None = None) -> Figure:
    """Training (and validation) loss against epoch, on one axis.

        >>> fig = plot_loss_curves([0.9, 0.6], [1.0, 0.7])
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    train = _to_numpy(train_losses)
    steps = np.arange(1, len(train) + 1)
    ax.plot(steps, train, marker="o", label="training")
    if val_losses is not None:
        ax.plot(np.arange(1, len(_to_numpy(val_losses)) + 1), _to_numpy(val_losses), marker="o", label="validation")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true, y_pred, n_classes: int = 10) -> np.ndarray:
    """Counts[i, j] = how many items of true class i were predicted as class j.

        >>> confusion_matrix([0, 1, 1], [0, 1, 0], n_classes=2).tolist()
        [[1, 0], [1, 1]]
    """
    y_true, y_pred = _to_numpy(y_true).astype(int), _to_numpy(y_pred).astype(int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred {y_pred.shape}: they must match.")
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def plot_confusion_matrix(y_true, y_pred, class_names=CLASS_NAMES, title: str | None = None) -> Figure:
    """A confusion matrix heat map with counts in each cell; rows are true classes.

        >>> fig = plot_confusion_matrix([0, 1, 1], [0, 1, 0], class_names=["a", "b"])
    """
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    size = 1.0 + 0.6 * len(class_names)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    shown = ax.imshow(counts, cmap="Blues")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > threshold else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
