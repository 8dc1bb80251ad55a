"""Matplotlib helpers for the lessons. Each returns its Figure and works without a screen.

    >>> fig = plot_loss_curves([1.0, 0.5, 0.3], [1.1, 0.7, 0.6])

Every figure is built on its own ``Figure`` (no pyplot state), from its arguments only, so the
same input always draws the same picture. What each lesson draws:

* 01: :func:`plot_memory_layout` (a tensor's grid against its flat storage, and the strides between them);
* 02: :func:`plot_broadcast` (how two shapes are stretched to one);
* 03: :func:`plot_autograd_graph` (the graph ``backward()`` walks, read from ``grad_fn``);
* 04: :func:`plot_optimizer_paths` (optimizers' steps over a loss's contour lines), :func:`plot_lr_schedule`;
* 05: :func:`plot_decision_boundary` (a 2-D classifier's probability map);
* 06: :func:`plot_network` (a small fully connected network with the shape of every tensor);
* 07, 07b: :func:`plot_image_grid`, :func:`plot_loss_curves`, :func:`plot_history`,
  :func:`plot_confusion_matrix`, :func:`plot_per_class_accuracy`;
* 08: :func:`plot_convolution_steps` (a kernel sliding over an image, one output pixel at a time);
* 09: :func:`plot_accuracy_vs_labels`, :func:`plot_all_reduce` (what data-parallel training averages).

Graph layouts come from networkx (pure Python); the drawing is matplotlib's.
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


def plot_image_grid(
    images, labels, class_names=CLASS_NAMES, ncols: int = 8, predictions=None, title: str | None = None
) -> Figure:
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
            text = (
                class_names[predictions[i]] if correct else f"{class_names[predictions[i]]}\n({class_names[labels[i]]})"
            )
            color = "black" if correct else "red"
        ax.set_title(text, fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss_curves(
    train_losses, val_losses=None, xlabel: str = "epoch", ylabel: str = "loss", title: str | None = None
) -> Figure:
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
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if counts[i, j] > threshold else "black",
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def per_class_accuracy(y_true, y_pred, n_classes: int = 10) -> np.ndarray:
    """For each class, the share of its items predicted correctly (NaN for a class with no items).

    >>> per_class_accuracy([0, 0, 1], [0, 1, 1], n_classes=2).tolist()
    [0.5, 1.0]
    """
    counts = confusion_matrix(y_true, y_pred, n_classes)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts.diagonal() / np.maximum(totals, 1), np.nan)


def plot_per_class_accuracy(predictions: dict, class_names=CLASS_NAMES, title: str | None = None) -> Figure:
    """Grouped bars: the accuracy on each class, one bar per model.

        >>> fig = plot_per_class_accuracy({"a": ([0, 1], [0, 0]), "b": ([0, 1], [0, 1])}, class_names=["x", "y"])

    ``predictions`` maps a model's name to its ``(y_true, y_pred)``; bars are labelled in percent.
    """
    if not predictions:
        raise ValueError("predictions is empty: give at least one model as {name: (y_true, y_pred)}.")
    n = len(class_names)
    scores = {name: per_class_accuracy(y_true, y_pred, n) for name, (y_true, y_pred) in predictions.items()}
    fig = Figure(figsize=(7.5, 0.22 * n * len(scores) + 1.6))
    ax = fig.add_subplot()
    height = 0.8 / len(scores)
    rows = np.arange(n)
    for k, (name, acc) in enumerate(scores.items()):
        offset = (k - (len(scores) - 1) / 2) * height
        bars = ax.barh(rows + offset, 100 * acc, height=height, label=name)
        ax.bar_label(bars, labels=[f"{100 * a:.0f}%" for a in acc], fontsize=7, padding=2)
    ax.set_yticks(rows, class_names)
    ax.invert_yaxis()  # first class on top
    ax.set_xlim(0, 110)
    ax.set_xlabel("correct on this class (%)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(scores), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training against validation, side by side.

        >>> from course_utils.train import History
        >>> fig = plot_history(History([0.9, 0.5], [0.6, 0.8], [0.8, 0.6], [0.7, 0.75]))

    ``history`` is a :class:`course_utils.train.History` (or anything with the same four lists).
    Training figures are measured during each epoch (dropout on, weights still moving), validation
    figures after it.
    """
    fig = Figure(figsize=(10, 3.6))
    panels = [
        ("loss", history.train_loss, history.val_loss),
        ("accuracy", history.train_accuracy, history.val_accuracy),
    ]
    for i, (what, train, val) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        train = _to_numpy(train)
        if len(train) == 0:
            raise ValueError("the history is empty: train for at least one epoch first.")
        ax.plot(np.arange(1, len(train) + 1), train, marker=".", label="training")
        if len(val):
            ax.plot(np.arange(1, len(val) + 1), _to_numpy(val), marker=".", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lr_schedule(learning_rates, steps_per_epoch: int | None = None, title: str | None = None) -> Figure:
    """The learning rate at every optimizer step (against epochs when ``steps_per_epoch`` is given).

        >>> fig = plot_lr_schedule([0.1, 0.5, 1.0, 0.5, 0.1], title="one cycle")

    The peak is marked and labelled.
    """
    lrs = _to_numpy(learning_rates).astype(float)
    if lrs.ndim != 1 or len(lrs) == 0:
        raise ValueError(f"learning_rates must be a non-empty list of numbers, not shape {lrs.shape}.")
    steps = np.arange(len(lrs))
    x = steps / steps_per_epoch if steps_per_epoch else steps
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    ax.plot(x, lrs)
    peak = int(np.argmax(lrs))
    ax.plot([x[peak]], [lrs[peak]], "o", color="C3")
    where = f"epoch {x[peak]:.1f}" if steps_per_epoch else f"step {peak}"
    ax.annotate(
        f"peak {lrs[peak]:g} at {where}",
        (x[peak], lrs[peak]),
        textcoords="offset points",
        xytext=(8, -4),
        fontsize=8,
        va="top",
    )
    ax.set_xlabel("epoch" if steps_per_epoch else "optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_ylim(0, lrs.max() * 1.15)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_labels(
    n_labels, accuracies: dict, title: str | None = None, chance: float | None = None
) -> Figure:
    """Test accuracy against the number of labelled training examples, one line per method (log x).

        >>> fig = plot_accuracy_vs_labels([10, 100], {"scratch": [0.4, 0.7], "fine-tuned": [0.7, 0.8]})

    Each method gives one accuracy per label count, or several (one per repeated run, as a row
    ``[[run1, run2, ...], ...]``): then the line is their mean and a band spans the lowest to the highest.
    """
    n_labels = _to_numpy(n_labels)
    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    for k, (name, acc) in enumerate(accuracies.items()):
        acc = np.asarray(acc, dtype=float)
        acc = acc[:, None] if acc.ndim == 1 else acc
        if acc.ndim != 2 or len(acc) != len(n_labels):
            raise ValueError(
                f"{name!r} has {len(acc)} rows of accuracies for {len(n_labels)} label counts: "
                f"give one each (a number, or a list with one per run)."
            )
        ax.plot(
            n_labels,
            100 * acc.mean(axis=1),
            marker="o",
            color=f"C{k}",
            label=name if acc.shape[1] == 1 else f"{name} (mean of {acc.shape[1]} runs)",
        )
        if acc.shape[1] > 1:
            ax.fill_between(n_labels, 100 * acc.min(axis=1), 100 * acc.max(axis=1), color=f"C{k}", alpha=0.2, lw=0)
    if chance is not None:
        ax.axhline(100 * chance, color="gray", lw=0.8, ls="--", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(n_labels, [f"{int(n):,}" for n in n_labels])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_decision_boundary(
    model, features, labels, logits: bool = False, resolution: int = 200, margin: float = 0.5, title: str | None = None
) -> Figure:
    """A 2-D classifier's P(class 1) over the plane, its 0.5 boundary, and the labelled points.

        >>> fig = plot_decision_boundary(torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Sigmoid()),
        ...                              torch.randn(20, 2), torch.arange(20) % 2)

    ``model`` maps ``[N, 2]`` points to P(class 1) (``[N]`` or ``[N, 1]``); pass ``logits=True`` when it
    returns raw scores instead. It runs in evaluation mode on its own device, without gradients.
    """
    from course_utils.train import model_device

    points = _to_numpy(features).astype(np.float32)
    y = _to_numpy(labels).astype(int)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"features must be 2-D points of shape [N, 2], not {points.shape}.")
    if len(y) != len(points):
        raise ValueError(f"{len(points)} points but {len(y)} labels: give one label per point.")
    lo, hi = points.min(axis=0) - margin, points.max(axis=0) + margin
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.from_numpy(np.stack([g1.ravel(), g2.ravel()], axis=1).astype(np.float32))
    was_training = model.training
    model.eval()
    try:
        out = model(grid.to(model_device(model))).reshape(-1).float().cpu()
    finally:
        model.train(was_training)
    prob = (torch.sigmoid(out) if logits else out).numpy().reshape(g1.shape)
    fig = Figure(figsize=(5.6, 4.4))
    ax = fig.add_subplot()
    shown = ax.contourf(g1, g2, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
    ax.contour(g1, g2, prob, levels=[0.5], colors="black", linewidths=1.5)
    fig.colorbar(shown, ax=ax, label="P(class 1)")
    for cls, marker in ((0, "o"), (1, "^")):
        chosen = points[y == cls]
        ax.scatter(
            chosen[:, 0],
            chosen[:, 1],
            s=12,
            marker=marker,
            edgecolors="black",
            linewidths=0.4,
            color="C0" if cls == 0 else "C3",
            label=f"class {cls}",
        )
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "decision boundary (black line: P = 0.5)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- diagrams


_OPERATORS = {"+": np.add, "-": np.subtract, "*": np.multiply}


def _as_2d(array: np.ndarray) -> np.ndarray:
    return array.reshape((1,) * (2 - array.ndim) + array.shape)


def plot_broadcast(a, b, op: str = "+", title: str | None = None) -> Figure:
    """How broadcasting stretches ``a`` and ``b`` (0-, 1- or 2-D) to one shape, and the result.

        >>> fig = plot_broadcast(torch.tensor([[0], [10], [20]]), torch.tensor([1, 2, 3, 4]))

    Each operand is drawn in the result's shape: its own entries solid, the copies broadcasting
    makes (without copying memory) faded and dashed. Shapes that do not fit raise ``ValueError``.
    """
    if op not in _OPERATORS:
        raise ValueError(f"op must be one of {', '.join(_OPERATORS)}, not {op!r}.")
    a_np, b_np = _to_numpy(a), _to_numpy(b)
    for name, arr in (("a", a_np), ("b", b_np)):
        if arr.ndim > 2:
            raise ValueError(f"{name} has {arr.ndim} dimensions; the diagram draws 0-, 1- or 2-D tensors only.")
    try:
        np.broadcast_shapes(a_np.shape, b_np.shape)
    except ValueError:
        raise ValueError(
            f"shapes {tuple(a_np.shape)} and {tuple(b_np.shape)} do not broadcast: compared from the "
            f"right, each pair of sizes must be equal or contain a 1."
        ) from None
    result = _OPERATORS[op](a_np, b_np)
    shape2 = _as_2d(result).shape
    panels = [
        (f"a {tuple(a_np.shape)}", _as_2d(a_np)),
        (f"b {tuple(b_np.shape)}", _as_2d(b_np)),
        (f"a {op} b {tuple(result.shape)}", _as_2d(result)),
    ]
    rows, cols = shape2
    gap = 1.2  # room between the grids for the operator signs
    fig = Figure(figsize=(0.55 * (3 * cols + 2 * gap) + 0.6, 0.55 * rows + 1.3))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_aspect("equal")
    for k, (label, own) in enumerate(panels):
        left = k * (cols + gap)
        ax.text(left + cols / 2, -0.25, label, ha="center", va="bottom", fontsize=10)
        for i in range(rows):
            for j in range(cols):
                real = i < own.shape[0] and j < own.shape[1]
                value = own[min(i, own.shape[0] - 1), min(j, own.shape[1] - 1)]
                ax.add_patch(_cell(left + j, i, real))
                ax.text(
                    left + j + 0.5,
                    i + 0.5,
                    f"{value:g}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="black" if real else "0.55",
                )
    for k, symbol in ((1, op), (2, "=")):
        ax.text(k * (cols + gap) - gap / 2, rows / 2, symbol, ha="center", va="center", fontsize=16)
    ax.set_xlim(-0.1, 3 * cols + 2 * gap + 0.1)
    ax.set_ylim(rows + 0.1, -0.9)
    ax.set_title(title or "faded cells: the copies broadcasting pretends to make (no memory is copied)", fontsize=9)
    fig.tight_layout()
    return fig


def _cell(x, y, real):
    from matplotlib.patches import Rectangle

    if real:
        return Rectangle((x + 0.03, y + 0.03), 0.94, 0.94, facecolor="#cfe2f3", edgecolor="#1f4e79", lw=1.2)
    return Rectangle((x + 0.03, y + 0.03), 0.94, 0.94, facecolor="#f3f3f3", edgecolor="0.6", lw=0.8, ls="--")


def autograd_graph(output: torch.Tensor, names: dict | None = None):
    """The graph ``output.backward()`` walks, read from ``grad_fn``, as a networkx DiGraph.

        >>> a = torch.ones(2, requires_grad=True)
        >>> sorted(d["label"] for _, d in autograd_graph((a * 2).sum(), {"a": a}).nodes(data=True))
        ['AccumulateGrad', 'MulBackward0', 'SumBackward0', 'a (2,)', 'output ()']

    Edges point the way ``backward()`` goes: from the output through each recorded operation
    (``grad_fn``, then its ``next_functions``) to an ``AccumulateGrad`` node, which adds the
    gradient into the leaf tensor's ``.grad``. Nodes carry ``kind`` ("output", "function" or
    "leaf"), ``label`` and ``layer`` (steps from the output). ``names`` maps names to tensors, so
    leaves (and the output) are labelled with your variable names.
    """
    import networkx as nx

    if not isinstance(output, torch.Tensor) or output.grad_fn is None:
        raise ValueError(
            "output must be a tensor computed from tensors with requires_grad=True "
            "(it has no grad_fn, so autograd recorded nothing)."
        )
    names = names or {}

    def name_of(tensor, default):
        return next((n for n, t in names.items() if t is tensor), default)

    graph = nx.DiGraph()
    graph.add_node("output", kind="output", label=f"{name_of(output, 'output')} {tuple(output.shape)}")
    keys = {}

    def key_of(fn):  # one node per recorded operation (autograd hands out the same object each time)
        if id(fn) not in keys:
            key = keys[id(fn)] = f"fn{len(keys)}"
            graph.add_node(key, kind="function", label=type(fn).__name__)
            if hasattr(fn, "variable"):  # AccumulateGrad: the leaf whose .grad it fills
                graph.add_node(
                    key + "/leaf", kind="leaf", label=f"{name_of(fn.variable, 'leaf')} {tuple(fn.variable.shape)}"
                )
                graph.add_edge(key, key + "/leaf")
        return keys[id(fn)]

    graph.add_edge("output", key_of(output.grad_fn))
    queue, seen = [output.grad_fn], {id(output.grad_fn)}
    while queue:  # breadth first, in next_functions order: the same graph, node order and layout every time
        fn = queue.pop(0)
        for nxt, _ in fn.next_functions:
            if nxt is None:  # an input that needs no gradient (a constant)
                continue
            graph.add_edge(key_of(fn), key_of(nxt))
            if id(nxt) not in seen:
                seen.add(id(nxt))
                queue.append(nxt)
    for node in nx.topological_sort(graph):  # layer = longest path from the output
        preds = list(graph.predecessors(node))
        graph.nodes[node]["layer"] = 1 + max(graph.nodes[p]["layer"] for p in preds) if preds else 0
    return graph


def _layered_positions(graph) -> dict:
    """x = the node's layer; within a layer, nodes sorted by the mean height of their predecessors
    (one barycentre sweep, the classic trick against crossing edges), centred on y = 0."""
    layers: dict[int, list] = {}
    for node, data in graph.nodes(data=True):
        layers.setdefault(data["layer"], []).append(node)
    pos = {}
    for layer in sorted(layers):
        nodes = layers[layer]
        if layer:

            def barycentre(node):
                preds = [pos[p][1] for p in graph.predecessors(node)]
                return -sum(preds) / len(preds)  # higher predecessors first

            nodes = sorted(nodes, key=barycentre)  # stable: ties keep discovery order
        for rank, node in enumerate(nodes):
            pos[node] = (float(layer), (len(nodes) - 1) / 2 - rank)
    return pos


_NODE_COLORS = {"output": "#f6d5a8", "function": "#cfe2f3", "leaf": "#d5ecc2"}


def plot_autograd_graph(output: torch.Tensor, names: dict | None = None, title: str | None = None) -> Figure:
    """Draw :func:`autograd_graph`: output on the left, leaves on the right, arrows the way backward goes.

    >>> a = torch.ones(2, requires_grad=True)
    >>> fig = plot_autograd_graph((a + 5).mean(), {"a": a})
    """
    graph = autograd_graph(output, names)
    pos = _layered_positions(graph)
    n_layers = 1 + max(d["layer"] for _, d in graph.nodes(data=True))
    tallest = max(sum(1 for _, d in graph.nodes(data=True) if d["layer"] == k) for k in range(n_layers))
    fig = Figure(figsize=(1.9 * n_layers + 0.6, 0.8 * tallest + 1.2))
    ax = fig.add_subplot()
    ax.axis("off")
    texts = {}
    for node, data in graph.nodes(data=True):
        x, y = pos[node]
        texts[node] = ax.text(
            x,
            y,
            data["label"],
            ha="center",
            va="center",
            fontsize=9,
            zorder=3,
            bbox=dict(boxstyle="round,pad=0.4", fc=_NODE_COLORS[data["kind"]], ec="0.3"),
        )
    for u, v in graph.edges():
        ax.annotate(
            "",
            xy=pos[v],
            xytext=pos[u],
            zorder=4,  # after the boxes: clipped to their final outline
            arrowprops=dict(
                arrowstyle="-|>",
                color="0.25",
                shrinkA=3,
                shrinkB=3,
                patchA=texts[u].get_bbox_patch(),
                patchB=texts[v].get_bbox_patch(),
            ),
        )
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_title(title or "what backward() walks: grad_fn → next_functions → AccumulateGrad → .grad", fontsize=9)
    fig.tight_layout()
    return fig


def plot_network(layer_sizes=(4, 3, 1), batch: int = 3, activation: str = "σ", title: str | None = None) -> Figure:
    """A fully connected network as circles and lines, labelled with the shape of every tensor.

        >>> fig = plot_network((4, 3, 1), batch=3)

    Layer ``k`` computes ``σ(input @ Wk + bk)``; the labels give the shapes of the activations
    for a batch of ``batch`` samples, and of each weight matrix and bias row.
    """
    import networkx as nx

    sizes = [int(n) for n in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"layer_sizes needs at least two layers of one unit or more, not {layer_sizes!r}.")
    graph = nx.DiGraph()
    for layer, size in enumerate(sizes):
        graph.add_nodes_from(((layer, unit) for unit in range(size)), layer=layer)
    for layer in range(len(sizes) - 1):
        graph.add_edges_from(((layer, i), (layer + 1, j)) for i in range(sizes[layer]) for j in range(sizes[layer + 1]))
    pos = nx.multipartite_layout(graph, subset_key="layer", align="vertical", scale=1.0)
    pos = {node: (x, -y) for node, (x, y) in pos.items()}  # unit 0 on top
    fig = Figure(figsize=(2.6 * len(sizes) + 0.8, 0.9 * max(sizes) + 2.2))
    ax = fig.add_subplot()
    ax.axis("off")
    nx.draw_networkx_edges(graph, pos, ax=ax, edge_color="0.6", width=0.8, arrows=False)
    colors = ["#d5ecc2"] + ["#cfe2f3"] * (len(sizes) - 2) + ["#f6d5a8"]
    for layer, color in enumerate(colors):
        nodes = [n for n in graph if n[0] == layer]
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_color=color, edgecolors="0.3", node_size=700)
    names = ["X"] + [f"h{k}" if len(sizes) > 3 else "h" for k in range(1, len(sizes) - 1)] + ["ŷ"]
    xs = sorted({x for x, _ in pos.values()})
    bottom = min(y for _, y in pos.values()) - 0.35
    for layer, x in enumerate(xs):
        formula = (
            names[layer] if layer == 0 else (f"{names[layer]} = {activation}({names[layer - 1]} W{layer} + b{layer})")
        )
        ax.text(x, bottom, f"{formula}\n{(batch, sizes[layer])}", ha="center", va="top", fontsize=9)
    top = max(y for _, y in pos.values()) + 0.25
    for layer in range(len(sizes) - 1):
        ax.text(
            (xs[layer] + xs[layer + 1]) / 2,
            top,
            f"W{layer + 1} {(sizes[layer], sizes[layer + 1])}\nb{layer + 1} {(1, sizes[layer + 1])}",
            ha="center",
            va="bottom",
            fontsize=9,
            color="#1f4e79",
        )
    ax.set_xlim(min(xs) - 0.45, max(xs) + 0.45)
    ax.set_ylim(bottom - 0.45, top + 0.4)
    ax.set_title(
        title or f"{'-'.join(map(str, sizes))} network, batch of {batch}: the shape of every tensor", fontsize=10
    )
    fig.tight_layout()
    return fig


# ------------------------------------------------------- memory layout, optimizer paths, convolution, all-reduce


def storage_offsets(tensor: torch.Tensor) -> np.ndarray:
    """Where each element of a 1-D or 2-D tensor lives in its storage, as an array of the tensor's shape.

        >>> storage_offsets(torch.arange(6).view(2, 3).T).tolist()
        [[0, 3], [1, 4], [2, 5]]

    Element ``[i, j]`` sits at ``storage_offset() + i * stride(0) + j * stride(1)``: no data is read,
    only the tensor's strides.
    """
    if tensor.dim() not in (1, 2):
        raise ValueError(f"the diagram draws 1-D or 2-D tensors, not {tensor.dim()}-D ones.")
    index = np.indices(tuple(tensor.shape))
    return tensor.storage_offset() + sum(i * s for i, s in zip(index, tensor.stride()))


def plot_memory_layout(tensors: dict, title: str | None = None) -> Figure:
    """How tensors map onto their storage: the grid you index, the flat block it reads, and in which order.

        >>> t = torch.arange(6).view(2, 3)
        >>> fig = plot_memory_layout({"t": t, "t.T": t.T})

    One row per tensor (1-D or 2-D). Left: the tensor as you index it, each cell labelled with its value
    and (small, grey) its position in storage. Right: the storage itself, one flat block, with a red
    numbers (and arrows) saying in which order reading the tensor row after row visits it. A contiguous
    tensor reads its storage left to right in unit steps; a transposed one jumps back and forth.
    """
    if not tensors:
        raise ValueError("tensors is empty: give at least one, as {name: tensor}.")
    from matplotlib.patches import FancyArrowPatch, Rectangle

    rows = []
    for name, t in tensors.items():
        offsets = storage_offsets(t)
        n_storage = t.untyped_storage().nbytes() // t.element_size()
        storage = torch.as_strided(t.detach(), (n_storage,), (1,), 0).cpu().numpy()
        grid = np.atleast_2d(t.detach().cpu().numpy())
        rows.append((name, t, np.atleast_2d(offsets), grid, storage))
    height = sum(max(g.shape[0], 1) + 2.2 for _, _, _, g, _ in rows)
    width = max(g.shape[1] for _, _, _, g, _ in rows) + 2 + max(len(s) for *_, s in rows)
    fig = Figure(figsize=(0.55 * width + 0.8, 0.55 * height + 0.6))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_aspect("equal")
    cmap = _qualitative(max(len(s) for *_, s in rows))
    top = 0.0
    for name, t, offsets, grid, storage in rows:
        n_rows, n_cols = grid.shape
        ax.text(
            0,
            top - 0.9,
            f"{name}: shape {tuple(t.shape)}, strides {t.stride()}, contiguous {t.is_contiguous()}",
            fontsize=9,
            va="bottom",
        )
        for i in range(n_rows):
            for j in range(n_cols):
                k = int(offsets[i, j])
                ax.add_patch(Rectangle((j, top + i), 1, 1, facecolor=cmap(k), edgecolor="0.3", lw=1))
                ax.text(j + 0.5, top + i + 0.45, f"{grid[i, j]:g}", ha="center", va="center", fontsize=10)
                ax.text(j + 0.92, top + i + 0.9, f"@{k}", ha="right", va="bottom", fontsize=6, color="0.35")
        left = n_cols + 2
        strip_y = top + (n_rows - 1) / 2
        for k, value in enumerate(storage):
            ax.add_patch(Rectangle((left + k, strip_y), 1, 1, facecolor=cmap(k), edgecolor="0.3", lw=1))
            ax.text(left + k + 0.5, strip_y + 0.45, f"{value:g}", ha="center", va="center", fontsize=10)
            ax.text(left + k + 0.5, strip_y + 1.3, str(k), ha="center", va="center", fontsize=7, color="0.35")
        order = offsets.ravel()  # row-major: the order in which you read the tensor
        for step, k in enumerate(order):  # above each storage cell: when reading the tensor gets there
            ax.text(
                left + k + 0.5,
                strip_y - 0.3,
                f"{step + 1}",
                ha="center",
                va="center",
                fontsize=7,
                color="C3",
                bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="C3", lw=0.8),
            )
        for a, b in zip(order[:-1], order[1:]):
            ax.add_patch(
                FancyArrowPatch(
                    (left + a + 0.5, strip_y - 0.55),
                    (left + b + 0.5, strip_y - 0.55),
                    connectionstyle=f"arc3,rad={-0.5 if b > a else 0.5}",
                    arrowstyle="-|>",
                    mutation_scale=8,
                    color="C3",
                    lw=0.9,
                )
            )
        ax.text(left - 0.3, strip_y + 0.5, "storage", ha="right", va="center", fontsize=8, color="0.35")
        top += n_rows + 2.2
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(top - 1.6, -1.6)
    ax.set_title(
        title or "same colour = same element; red numbers: the order in which reading row after row visits storage",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _qualitative(n: int):
    from matplotlib import colormaps

    base = colormaps["Pastel1"] if n <= 9 else colormaps["tab20"]
    return lambda k: base(k % base.N)


def plot_optimizer_paths(
    loss_fn, paths: dict, xlim, ylim, minimum=None, resolution: int = 120, labels=("w", "b"), title: str | None = None
) -> Figure:
    """Contours of a two-parameter loss, with the path each optimizer took across them.

        >>> loss = lambda w, b: (w - 1) ** 2 + 10 * b ** 2
        >>> fig = plot_optimizer_paths(loss, {"SGD": torch.tensor([[0.0, 1.0], [0.5, 0.2]])}, (-1, 2), (-1, 1.5))

    ``loss_fn(w, b)`` takes two tensors of the same shape (a grid) and returns the loss at every point;
    ``paths`` maps a name to the ``[steps + 1, 2]`` positions visited, start first. ``minimum``, if
    given, is marked with a star. Contour levels are spaced evenly on a log scale, so the narrow valley
    near the minimum stays visible.
    """
    if not paths:
        raise ValueError("paths is empty: give at least one, as {name: tensor of shape [steps + 1, 2]}.")
    ws = torch.linspace(float(xlim[0]), float(xlim[1]), resolution)
    bs = torch.linspace(float(ylim[0]), float(ylim[1]), resolution)
    grid_w, grid_b = torch.meshgrid(ws, bs, indexing="xy")
    with torch.no_grad():
        surface = _to_numpy(loss_fn(grid_w, grid_b)).astype(float)
    if surface.shape != tuple(grid_w.shape):
        raise ValueError(
            f"loss_fn(w, b) returned shape {surface.shape} for a grid of {tuple(grid_w.shape)}: "
            f"it must return one loss per grid point."
        )
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    low, high = max(surface.min(), 1e-12), surface.max()
    levels = np.geomspace(low * 1.05, high, 16) if high > low * 1.05 else 12
    ax.contour(_to_numpy(grid_w), _to_numpy(grid_b), surface, levels=levels, colors="0.6", linewidths=0.7)
    for k, (name, path) in enumerate(paths.items()):
        points = _to_numpy(path).astype(float)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"path {name!r} has shape {points.shape}; give positions as [steps + 1, 2].")
        ax.plot(points[:, 0], points[:, 1], "-o", ms=2.5, lw=1.3, color=f"C{k}", label=name)
    start = _to_numpy(next(iter(paths.values())))[0]
    ax.plot([start[0]], [start[1]], "s", color="black", ms=6, label="start")
    if minimum is not None:
        m = _to_numpy(minimum).astype(float)
        ax.plot([m[0]], [m[1]], "*", color="black", ms=12, label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "optimizer paths over the loss (grey: contour lines)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_convolution_steps(image, kernel, positions, title: str | None = None) -> Figure:
    """A kernel sliding over an image: for each (row, column) position, the window, the sum and the output.

        >>> fig = plot_convolution_steps(torch.arange(16.0).reshape(4, 4), torch.ones(2, 2), [(0, 0), (0, 1)])

    One row of panels per position: the input with the kernel's window outlined, the kernel, and the
    output map filled in up to that position, the current output cell outlined and its sum written out.
    Outputs are cross-correlations without padding (what ``F.conv2d`` computes), so the output map is
    ``(H - kh + 1, W - kw + 1)``.
    """
    from matplotlib.patches import Rectangle

    x, k = _to_numpy(image).astype(float), _to_numpy(kernel).astype(float)
    if x.ndim != 2 or k.ndim != 2:
        raise ValueError(f"image and kernel must be 2-D, not {x.ndim}-D and {k.ndim}-D.")
    kh, kw = k.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}×{kw} kernel does not fit in a {x.shape[0]}×{x.shape[1]} image.")
    positions = [tuple(int(v) for v in p) for p in positions]
    for i, j in positions:
        if not (0 <= i < out_h and 0 <= j < out_w):
            raise ValueError(f"position {(i, j)} is outside the {out_h}×{out_w} output.")
    output = np.array([[float((x[i : i + kh, j : j + kw] * k).sum()) for j in range(out_w)] for i in range(out_h)])

    def grid(ax, values, left, shown=None, highlight=None, color="#cfe2f3", box="C3"):
        rows, cols = values.shape
        for r in range(rows):
            for c in range(cols):
                filled = shown is None or shown[r, c]
                ax.add_patch(
                    Rectangle((left + c, r), 1, 1, facecolor=color if filled else "white", edgecolor="0.4", lw=0.8)
                )
                if filled:
                    ax.text(left + c + 0.5, r + 0.5, f"{values[r, c]:g}", ha="center", va="center", fontsize=9)
        if highlight is not None:
            (r, c), (h, w) = highlight
            ax.add_patch(Rectangle((left + c, r), w, h, fill=False, edgecolor=box, lw=2.2))

    n_h, n_w = x.shape
    span = n_w + 1.5 + kw + 1.5 + out_w
    fig = Figure(figsize=(0.5 * span + 0.6, (0.5 * max(n_h, kh, out_h) + 0.7) * len(positions) + 0.4))
    order = {(i, j): n for n, (i, j) in enumerate((i, j) for i in range(out_h) for j in range(out_w))}
    for row, (i, j) in enumerate(positions):
        ax = fig.add_subplot(len(positions), 1, row + 1)
        ax.axis("off")
        ax.set_aspect("equal")
        grid(ax, x, 0, highlight=((i, j), (kh, kw)))
        ax.text(n_w + 0.75, n_h / 2, "⋆", ha="center", va="center", fontsize=16)
        grid(ax, k, n_w + 1.5, color="#f6d5a8")
        ax.text(n_w + 1.5 + kw + 0.75, n_h / 2, "=", ha="center", va="center", fontsize=16)
        done = np.array([[order[(r, c)] <= order[(i, j)] for c in range(out_w)] for r in range(out_h)])
        grid(ax, output, n_w + 1.5 + kw + 1.5, shown=done, highlight=((i, j), (1, 1)), color="#d5ecc2")
        terms = " + ".join(f"{x[i + a, j + b]:g}·{k[a, b]:g}" for a in range(kh) for b in range(kw))
        ax.set_title(f"window at ({i}, {j}): {terms} = {output[i, j]:g}", fontsize=8)
        ax.set_xlim(-0.2, span + 0.2)
        ax.set_ylim(max(n_h, kh, out_h) + 0.2, -0.2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_all_reduce(gradients, title: str | None = None) -> Figure:
    """What an all-reduce does: every process's own gradient in, the mean of them all in every process out.

        >>> fig = plot_all_reduce([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])])

    ``gradients`` holds one 1-D tensor per process (rank), e.g. the first few entries of each one's
    gradient. Left: what each rank computed on its own data. Right: what each rank holds after the
    all-reduce: the element-wise mean, identical everywhere, so every copy of the model takes the same step.
    """
    from matplotlib.patches import FancyArrowPatch, Rectangle

    values = [_to_numpy(g).astype(float).ravel() for g in gradients]
    if len(values) < 2:
        raise ValueError("an all-reduce needs at least two processes: give one gradient per rank.")
    if len({len(v) for v in values}) != 1:
        raise ValueError(f"every rank's gradient must have the same size, not {[len(v) for v in values]}.")
    mean = np.mean(values, axis=0)
    n, size = len(values), len(mean)
    gap = 1.6  # rows between two ranks
    fig = Figure(figsize=(0.75 * (2 * size + 5) + 0.8, 0.75 * gap * n + 0.8))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_aspect("equal")
    right = size + 5
    middle_y = gap * (n - 1) / 2 + 0.5
    ax.add_patch(Rectangle((size + 1.2, middle_y - 0.6), 2.6, 1.2, facecolor="#f6d5a8", edgecolor="0.3"))
    ax.text(size + 2.5, middle_y, "all-reduce\n(mean)", ha="center", va="center", fontsize=9)
    for rank, own in enumerate(values):
        y = gap * rank
        ax.text(-0.3, y + 0.5, f"rank {rank}", ha="right", va="center", fontsize=9)
        for c in range(size):
            ax.add_patch(Rectangle((c, y), 1, 1, facecolor="#cfe2f3", edgecolor="0.3"))
            ax.text(c + 0.5, y + 0.5, f"{own[c]:.3g}", ha="center", va="center", fontsize=8)
            ax.add_patch(Rectangle((right + c, y), 1, 1, facecolor="#d5ecc2", edgecolor="0.3"))
            ax.text(right + c + 0.5, y + 0.5, f"{mean[c]:.3g}", ha="center", va="center", fontsize=8)
        ax.add_patch(
            FancyArrowPatch(
                (size + 0.1, y + 0.5), (size + 1.2, middle_y), arrowstyle="-|>", mutation_scale=10, color="0.3"
            )
        )
        ax.add_patch(
            FancyArrowPatch(
                (size + 3.8, middle_y), (right - 0.1, y + 0.5), arrowstyle="-|>", mutation_scale=10, color="0.3"
            )
        )
    ax.text(size / 2, -0.4, "own gradient (own data)", ha="center", va="bottom", fontsize=9)
    ax.text(right + size / 2, -0.4, "after backward(): the mean", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-1.8, right + size + 0.2)
    ax.set_ylim(gap * (n - 1) + 1.2, -1.2)
    ax.set_title(title or "all-reduce: every rank ends with the same averaged gradient", fontsize=10)
    fig.tight_layout()
    return fig
