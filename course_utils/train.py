"""Small training helpers shared by the lessons and the benchmarks.

    >>> history = fit(model, TensorBatches(x_train, y_train, 256, shuffle=True), optimizer, epochs=5,  # doctest: +SKIP
    ...               val=(x_val, y_val))

One job each:

* :class:`TensorBatches` cuts tensors that are already in memory into (shuffled) mini-batches.
  It is the fast path: a ``DataLoader`` asks a ``Dataset`` for samples and collates them, work
  that is pure overhead when the whole data set is one tensor (see ``bench/`` for the figures).
* :func:`train_epoch` runs the five-step loop (forward, loss, zero_grad, backward, step) once
  over the data; :func:`fit` repeats it for some epochs and records a :class:`History`.
* :func:`predict`, :func:`evaluate` and :func:`accuracy` score a model without tracking gradients.
* :func:`random_shift` is a mild augmentation: each image moved by a pixel or two (and mirrored, if
  asked); :class:`Augment` is the same as a seeded batch transform for :class:`TensorBatches`.
* ``predict(..., flip=True)`` averages each image with its mirror image (test-time augmentation);
  ``fit(..., bf16=fast_bfloat16())`` trains under bfloat16 autocast where the CPU computes it natively;
  ``fit(..., averaged=AveragedModel(...))`` keeps a moving average of the weights.
* :func:`scheduled_learning_rates` lists the learning rate a scheduler sets at every step, without training.

Every function moves batches to the model's device, so the same call runs on a CPU or a GPU.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "TensorBatches",
    "History",
    "accuracy",
    "predict",
    "evaluate",
    "train_epoch",
    "fit",
    "random_shift",
    "Augment",
    "fast_bfloat16",
    "model_device",
    "scheduled_learning_rates",
]


class TensorBatches:
    """Mini-batches ``(x[i:j], y[i:j])`` of in-memory tensors, reshuffled every epoch when asked.

        >>> batches = TensorBatches(torch.randn(10, 4), torch.arange(10), batch_size=4)
        >>> [len(xb) for xb, yb in batches]
        [4, 4, 2]

    ``seed`` fixes the order of the shuffles, so two runs see the same batches. ``transform``
    (optional) is applied to each batch of inputs, e.g. ``random_shift``.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0, transform=None
    ):
        _check_tensors(x, y)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}.")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.transform = shuffle, transform
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.x.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                index = order[start : start + self.batch_size]
                # index_select copies whole rows; x[index] (advanced indexing) is several times slower
                xb, yb = self.x.index_select(0, index), self.y.index_select(0, index)
            yield (self.transform(xb) if self.transform is not None else xb), yb


def _check_tensors(x, y) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"inputs and labels must be torch tensors, got {type(x).__name__} and "
            f"{type(y).__name__}. Convert with torch.as_tensor(...)."
        )
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels: give one label per input.")
    if not x.is_floating_point():
        raise ValueError(
            f"inputs have dtype {x.dtype}; a model needs floats. Scale images with "
            f"x.float() / 255 (or course_utils.data.normalize_images)."
        )
    if y.dtype != torch.int64:
        raise ValueError(f"labels have dtype {y.dtype}; cross-entropy needs int64 class indices. Use y.long().")


@dataclass
class History:
    """Per-epoch figures recorded by :func:`fit`.

    >>> History(train_loss=[0.5], train_accuracy=[0.8]).epochs
    1
    """

    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # wall time of each epoch's training (varies run to run)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


def fast_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), where autocast speeds convolutions up.

    Without those instructions oneDNN emulates bfloat16, which is slower than float32: train in float32 there.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def model_device(model: nn.Module) -> torch.device:
    """The device a model's parameters live on.

    >>> model_device(nn.Linear(2, 1))
    device(type='cpu')
    """
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise ValueError(f"{type(model).__name__} has no parameters, so there is nothing to train.") from None


def _as_batches(data, batch_size: int) -> Iterable:
    """A pair of tensors becomes TensorBatches; anything else must already yield (x, y) batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorBatches(data[0], data[1], batch_size)
    if isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str)):
        return data
    raise TypeError(
        f"data must be a pair (inputs, labels) of tensors, a TensorBatches or a DataLoader; got {type(data).__name__}."
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows whose highest score is at the true label.

    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    0.5
    """
    if logits.dim() != 2 or len(logits) != len(labels):
        raise ValueError(
            f"logits must be [N, classes] with one row per label; got {tuple(logits.shape)} for {len(labels)} labels."
        )
    return (logits.argmax(dim=1) == labels.to(logits.device)).float().mean().item()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096, flip: bool = False) -> torch.Tensor:
    """Predicted class indices (int64, on the CPU) for every row of ``x``, in evaluation mode.

        >>> predict(nn.Linear(4, 3), torch.randn(5, 4)).shape
        torch.Size([5])

    ``flip=True`` is test-time augmentation: each image's class probabilities are averaged with those
    of its mirror image (left-right), which helps a model trained on flipped images. Images are
    [N, C, H, W], [N, H, W] or flattened square [N, H*W].
    """
    was_training, device = model.training, model_device(model)
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            scores = model(xb)
            if flip:
                scores = scores.softmax(dim=1) + model(_mirror(xb)).softmax(dim=1)
            out.append(scores.argmax(dim=1).cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


def _mirror(images: torch.Tensor) -> torch.Tensor:
    """Images flipped left-right; flattened square images are unflattened, flipped and flattened again."""
    if images.dim() != 2:
        return images.flip(-1)
    side = int(round(images.shape[-1] ** 0.5))
    if side * side != images.shape[-1]:
        raise ValueError(f"flattened images must be square to flip; {images.shape[-1]} pixels is not a square number.")
    return images.reshape(len(images), side, side).flip(-1).reshape(images.shape)


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn=F.cross_entropy, batch_size: int = 4096) -> tuple[float, float]:
    """Mean loss and accuracy of a model on ``(inputs, labels)`` or on a DataLoader, in evaluation mode.

    >>> loss, acc = evaluate(nn.Linear(4, 3), (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)))
    """
    was_training, device = model.training, model_device(model)
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for xb, yb in _as_batches(data, batch_size):
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            total_loss += loss_fn(logits, yb).item() * len(yb)
            correct += (logits.argmax(dim=1) == yb).sum().item()
            count += len(yb)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no data: the inputs are empty.")
    return total_loss / count, correct / count


def train_epoch(
    model: nn.Module,
    batches,
    optimizer: torch.optim.Optimizer,
    loss_fn=F.cross_entropy,
    scheduler=None,
    averaged=None,
    bf16: bool = False,
) -> tuple[float, float]:
    """One pass over ``batches`` with the five-step loop; returns (mean loss, accuracy) seen in training.

        >>> loss, acc = train_epoch(model, TensorBatches(x, y, 64, shuffle=True), optimizer)  # doctest: +SKIP

    ``scheduler`` (optional) is stepped after every batch, as OneCycleLR and per-step cosine
    schedules expect. ``averaged`` (optional, a ``torch.optim.swa_utils.AveragedModel``) takes in the
    weights after every step. ``bf16`` runs the forward pass and the loss under bfloat16 autocast
    (worth it only where :func:`fast_bfloat16` says so). The figures are measured on the fly, with
    dropout active.
    """
    device = model_device(model)
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    for xb, yb in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)  # 1. forward
            loss = loss_fn(logits, yb)  # 2. loss
        optimizer.zero_grad(set_to_none=True)  # 3. forget the last step's gradients
        loss.backward()  # 4. backward
        optimizer.step()  # 5. update
        if scheduler is not None:
            scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        total_loss += loss.detach() * len(yb)  # kept on the device: no sync per batch
        correct += (logits.detach().argmax(dim=1) == yb).sum()
        count += len(yb)
    if count == 0:
        raise ValueError("train_epoch() got no batches: the training data is empty.")
    return total_loss.item() / count, correct.item() / count


def fit(
    model: nn.Module,
    train,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    val=None,
    scheduler=None,
    loss_fn=F.cross_entropy,
    *,
    seed: int | None = None,
    progress: bool = True,
    batch_size: int = 256,
    averaged=None,
    bf16: bool = False,
    val_loss_fn=None,
) -> History:
    """Train for ``epochs`` passes over ``train``; return the :class:`History` of losses and accuracies.

        >>> history = fit(model, (x, y), torch.optim.Adam(model.parameters()), epochs=3)  # doctest: +SKIP

    ``train`` and ``val`` are each a pair of tensors (cut into batches of ``batch_size``, in
    order: wrap the training pair in ``TensorBatches(..., shuffle=True)`` to shuffle), a
    :class:`TensorBatches` or a DataLoader. Randomness is yours to seed: ``seed=s`` (keyword only) calls
    ``torch.manual_seed(s)`` first (dropout and augmentation then repeat exactly); the default, ``None``,
    leaves torch's global generator alone. ``val_loss_fn`` scores the validation data (default:
    ``loss_fn``; pass ``F.cross_entropy`` to compare runs trained with label smoothing on one scale).
    ``progress`` shows a tqdm bar that moves with every batch. ``averaged`` (an ``AveragedModel``,
    e.g. an exponential moving average of the weights) is updated after every step, and it is the
    model scored on ``val``. ``bf16`` trains under bfloat16 autocast (see :func:`train_epoch`).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive whole number, not {epochs!r}.")
    if seed is not None:
        torch.manual_seed(seed)
    train_batches = _as_batches(train, batch_size)
    val_batches = None if val is None else _as_batches(val, 4096)
    val_loss_fn = loss_fn if val_loss_fn is None else val_loss_fn
    history = History()
    bar = _batch_bar(train_batches, epochs) if progress else None
    for epoch in range(epochs):
        started = time.perf_counter()
        batches = train_batches if bar is None else _Counted(train_batches, bar)
        loss, acc = train_epoch(model, batches, optimizer, loss_fn, scheduler, averaged, bf16)
        history.seconds.append(time.perf_counter() - started)
        history.train_loss.append(loss)
        history.train_accuracy.append(acc)
        shown = {"epoch": f"{epoch + 1}/{epochs}", "loss": f"{loss:.4f}"}
        if val_batches is not None:
            val_loss, val_acc = evaluate(model if averaged is None else averaged.module, val_batches, val_loss_fn)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            shown["val_acc"] = f"{val_acc:.4f}"
        if bar is not None:
            bar.set_postfix(shown)
    if bar is not None:
        bar.close()
    return history


class _Counted:
    """Yields the batches of ``batches`` and moves ``bar`` on by one after each."""

    def __init__(self, batches, bar):
        self.batches, self.bar = batches, bar

    def __iter__(self):
        for batch in self.batches:
            yield batch
            self.bar.update(1)


def _batch_bar(batches, epochs: int):
    """A tqdm bar over every batch of every epoch (its length unknown if the batches have none).

    It redraws at most about 50 times (and at most twice a second): in a notebook every redraw is a few
    kernel messages, and a client that reads them only after the cell (nbval) loses messages past
    ZeroMQ's queue limit of 1000.
    """
    from tqdm.auto import tqdm

    try:
        total = epochs * len(batches)
    except TypeError:
        total = None
    return tqdm(total=total, desc="training", unit="batch", miniters=max(1, (total or 0) // 50), mininterval=0.5)


def random_shift(
    images: torch.Tensor,
    max_shift: int = 2,
    fill: float | None = None,
    *,
    flip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Move each image by up to ``max_shift`` pixels in x and y, and mirror half of them if ``flip``.

        >>> random_shift(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 1, 28, 28])

    Works on [N, H, W], [N, C, H, W] or flattened [N, H*W] square images; the uncovered border is
    filled with ``fill`` (default: the batch's smallest value, the background). Each image draws its
    own shift (and flip) from ``generator`` (default: torch's global generator). The whole batch is
    moved by one ``gather`` from a padded copy, each image's pixel indices looked up in a table of the
    few windows there are (an index built per batch costs more than the move itself).
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be 0 or more, not {max_shift}.")
    shape = images.shape
    side = int(round(shape[-1] ** 0.5)) if images.dim() == 2 else None
    if side is not None and side * side != shape[-1]:
        raise ValueError(f"flattened images must be square; {shape[-1]} pixels is not a square number.")
    grid = images.reshape(len(images), -1, side, side) if side else images.reshape(len(images), -1, *shape[-2:])
    n, c, h, w = grid.shape
    fill = grid.min().item() if fill is None else fill
    s = max_shift
    padded = F.pad(grid, (s,) * 4, value=fill).reshape(n, c, (h + 2 * s) * (w + 2 * s))
    dy, dx = torch.randint(0, 2 * s + 1, (2, n), generator=generator)
    window = dy * (2 * s + 1) + dx  # which of the (2s+1)^2 windows each image shows
    if flip:  # and whether it reads that window's rows right to left
        window = window * 2 + (torch.rand(n, generator=generator) < 0.5)
    index = _windows(h, w, s, flip, images.device).index_select(0, window.to(images.device))  # [N, H*W]
    return padded.gather(2, index.unsqueeze(1).expand(n, c, h * w)).reshape(shape)


@functools.lru_cache(maxsize=16)
def _windows(h: int, w: int, s: int, flip: bool, device: torch.device) -> torch.Tensor:
    """Row k: the pixels, in a (h+2s) x (w+2s) padded image read row by row, of window k of :func:`random_shift`
    (shifted down k // (2s+1) and right k % (2s+1) pixels; with ``flip``, row 2k+1 reads it mirrored)."""
    width = w + 2 * s
    rows = torch.arange(h)[:, None] * width
    plain, mirrored = (rows + torch.arange(w)).reshape(h * w), (rows + torch.arange(w).flip(0)).reshape(h * w)
    starts = [dy * width + dx for dy in range(2 * s + 1) for dx in range(2 * s + 1)]
    return torch.stack([start + read for start in starts for read in ((plain, mirrored) if flip else (plain,))]).to(
        device
    )


class Augment:
    """A batch transform for :class:`TensorBatches`: random shifts (and flips) drawn from its own seeded generator.

    >>> augment = Augment(max_shift=1, flip=True, seed=0)
    >>> batches = TensorBatches(x, y, 1024, shuffle=True, transform=augment)  # doctest: +SKIP
    """

    def __init__(self, max_shift: int = 1, flip: bool = False, fill: float | None = None, seed: int = 0):
        self.max_shift, self.flip, self.fill = max_shift, flip, fill
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return random_shift(images, self.max_shift, self.fill, flip=self.flip, generator=self.generator)

    def __repr__(self) -> str:
        return f"Augment(max_shift={self.max_shift}, flip={self.flip})"


def scheduled_learning_rates(make_scheduler, total_steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate a scheduler sets for each of ``total_steps`` optimizer steps, without training.

        >>> lrs = scheduled_learning_rates(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        ...     opt, max_lr=0.004, total_steps=100), 100)
        >>> len(lrs), round(max(lrs), 6)
        (100, 0.004)

    ``make_scheduler(optimizer)`` builds the scheduler, exactly as in training (``lr`` is the
    optimizer's own rate, which schedules such as OneCycleLR replace). The schedule is stepped once
    per optimizer step, as :func:`train_epoch` does, and the rate in force at each step is recorded.
    """
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive whole number, not {total_steps!r}.")
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=lr)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient, so nothing moves; the scheduler only checks that it ran first
        scheduler.step()
    return rates
