"""The apparel classifiers the benchmark trains, each seeded, on the full Fashion-MNIST.

    >>> result = run_recipe("improved_mlp")   # {'test_accuracy': ..., 'train_seconds': ..., ...}

* ``article_baseline``: the case study's baseline as lesson 07 runs it: 784 -> 64 -> 10 (the article's hidden
  layer has 500 units; the lesson keeps 64), Adam at lr 0.0005, 20 full-batch steps on pixels scaled to [0, 1].
* ``quickstart``: PyTorch's quickstart tutorial recipe: 784 -> 512 -> 512 -> 10, SGD lr 0.001, batches of
  64 in file order (no shuffling), 5 epochs, through a DataLoader as the tutorial does.
* ``improved_mlp``: lesson 07's final recipe (``IMPROVED_MLP``): standardised pixels, 784 -> 512 -> 256 -> 10,
  AdamW (fused, weight decay 0.1) with a one-cycle schedule peaking at 0.004, label smoothing 0.1, batches of
  1024, 30 epochs, trained on all 60,000 training images (the recipe was chosen on lesson 07's validation split).
* ``small_cnn``: lesson 08's network (two conv blocks with batch norm, a 128-unit head) in channels-last memory
  format, Adam with a one-cycle schedule peaking at 0.003, label smoothing 0.1, batches of 128, 9 epochs, all
  60,000 images.

Timing covers training only (data already in memory); accuracy is on the 10,000 official test images.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.data import load_fashion_mnist, normalize_images
from course_utils.train import TensorBatches, evaluate, fit

TARGETS = {"improved_mlp": dict(accuracy=0.90, seconds=60.0), "small_cnn": dict(accuracy=0.925, seconds=300.0)}


def mlp(hidden=(512, 256), dropout=0.0, n_in=784, n_out=10) -> nn.Sequential:
    """784 -> hidden layers (ReLU, optional dropout) -> 10, e.g. mlp((64,)) is lesson 07's baseline."""
    layers, width = [], n_in
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = size
    return nn.Sequential(*layers, nn.Linear(width, n_out))


def small_cnn(dropout: float = 0.25) -> nn.Sequential:
    """Lesson 08's CNN: [N, 1, 28, 28] -> 10 scores, two conv blocks (32 and 64 filters) and a small head."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 10))


def fashion_tensors(standardised: bool, images_shape: str = "flat"):
    """(x_train, y_train, x_test, y_test) as float tensors: flat [N, 784] or image [N, 1, 28, 28]."""
    (train_images, y_train), (test_images, y_test) = load_fashion_mnist("train"), load_fashion_mnist("test")
    prep = normalize_images if standardised else (lambda x: x.float() / 255)
    shape = (-1, 784) if images_shape == "flat" else (-1, 1, 28, 28)
    return prep(train_images).reshape(shape), y_train, prep(test_images).reshape(shape), y_test


def _limit(x, y, n):
    return (x, y) if n is None else (x[:n], y[:n])


def _train_and_score(model, batches, optimizer, epochs, x_test, y_test, n_images, scheduler=None, loss_fn=None):
    kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
    started = time.perf_counter()
    fit(model, batches, optimizer, epochs, scheduler=scheduler, seed=0, progress=False, **kwargs)
    seconds = time.perf_counter() - started
    _, test_acc = evaluate(model, (x_test, y_test))
    return {"test_accuracy": test_acc, "train_seconds": seconds, "images_per_second": epochs * n_images / seconds,
            "epochs": epochs, "train_images": n_images}


def article_baseline(quick: bool = False) -> dict:
    x, y, x_test, y_test = fashion_tensors(standardised=False)
    x, y = _limit(x, y, 6000 if quick else None)
    torch.manual_seed(0)
    model = mlp((64,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0005)
    return _train_and_score(model, TensorBatches(x, y, len(x)), optimizer, 20, x_test, y_test, len(x))


def quickstart(quick: bool = False) -> dict:
    x, y, x_test, y_test = fashion_tensors(standardised=False)
    x, y = _limit(x, y, 6000 if quick else None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), *mlp((512, 512)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)  # the tutorial's loader: no shuffling
    return _train_and_score(model, loader, optimizer, 1 if quick else 5, x_test, y_test, len(x))


IMPROVED_MLP = dict(hidden=(512, 256), batch_size=1024, max_lr=0.004, weight_decay=0.1, label_smoothing=0.1,
                    epochs=30)


def improved_mlp_parts(seed: int = 0, dropout: float = 0.0):
    """(model, optimizer, loss function) of lesson 07's improved MLP, freshly initialised and seeded.
    ``dropout`` > 0 adds dropout after each ReLU (not part of the recipe: the benchmark measures its cost)."""
    torch.manual_seed(seed)
    model = mlp(IMPROVED_MLP["hidden"], dropout=dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=IMPROVED_MLP["max_lr"],
                                  weight_decay=IMPROVED_MLP["weight_decay"], fused=True)
    return model, optimizer, nn.CrossEntropyLoss(label_smoothing=IMPROVED_MLP["label_smoothing"])


def improved_mlp(quick: bool = False) -> dict:
    x, y, x_test, y_test = fashion_tensors(standardised=True)
    x, y = _limit(x, y, 6000 if quick else None)
    epochs = 2 if quick else IMPROVED_MLP["epochs"]
    model, optimizer, loss_fn = improved_mlp_parts()
    batches = TensorBatches(x, y, IMPROVED_MLP["batch_size"], shuffle=True, seed=0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=IMPROVED_MLP["max_lr"],
                                                    total_steps=epochs * len(batches))
    return _train_and_score(model, batches, optimizer, epochs, x_test, y_test, len(x), scheduler, loss_fn)


SMALL_CNN = dict(batch_size=128, max_lr=0.003, label_smoothing=0.1, epochs=9)  # lesson 08: 4 epochs on 12,000 images


def cnn(quick: bool = False) -> dict:
    x, y, x_test, y_test = fashion_tensors(standardised=True, images_shape="image")
    x, y = _limit(x, y, 3000 if quick else None)
    epochs = 1 if quick else SMALL_CNN["epochs"]
    torch.manual_seed(0)
    model = small_cnn().to(memory_format=torch.channels_last)  # as lesson 08: NHWC suits CPU convolutions
    optimizer = torch.optim.Adam(model.parameters(), lr=SMALL_CNN["max_lr"], fused=True)
    batches = TensorBatches(x, y, SMALL_CNN["batch_size"], shuffle=True, seed=0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=SMALL_CNN["max_lr"],
                                                    total_steps=epochs * len(batches))
    return _train_and_score(model, batches, optimizer, epochs, x_test, y_test, len(x), scheduler,
                            nn.CrossEntropyLoss(label_smoothing=SMALL_CNN["label_smoothing"]))


RECIPES = {"article_baseline": article_baseline, "quickstart": quickstart, "improved_mlp": improved_mlp,
           "small_cnn": cnn}


def run_recipe(name: str, quick: bool = False) -> dict:
    """Train one recipe and return its figures (plus its targets, where it has any)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    result = RECIPES[name](quick=quick)
    target = TARGETS.get(name)
    if target and not quick:
        result["target"] = f">= {target['accuracy']:.1%} in <= {target['seconds']:.0f} s"
        result["met"] = result["test_accuracy"] >= target["accuracy"] and result["train_seconds"] <= target["seconds"]
    return result
