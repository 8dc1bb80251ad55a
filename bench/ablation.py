"""The ablations behind bench/RECIPES.md: each recipe variant trained on lesson 07's 54,000 training images
and scored on its 6,000 validation images (``split_indices(60000, 0.1, seed=0)``), never on the test set.

    $ python -m bench.ablation mlp                 # every MLP row, one JSON line each, to stdout
    $ python -m bench.ablation cnn --rows fast     # some CNN rows
    $ OMP_NUM_THREADS=1 python -m bench.ablation cost   # CPU microseconds per training image, one thread

Accuracy does not depend on what else the machine runs; seconds do, so every row records the load
average (1 minute) when it started and when it finished. Compare timings only from ``cost``, which
measures each recipe's step in CPU time of one thread (``time.thread_time``: time the process waits for a
core does not count), the variants interleaved in one process, median of three rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from bench import recipes
from course_utils.data import load_fashion_mnist, normalize_images, split_indices

# Lesson 07's ablation, cumulative: each row adds one change to the row above (the first is today's recipe).
MLP_ROWS = {
    "today: 512-256, batch 1024, 30 epochs": dict(),
    "+ random shifts of 1 px": dict(max_shift=1),
    "+ random horizontal flips": dict(max_shift=1, flip=True),
    "shifts of 2 px instead of 1": dict(max_shift=2, flip=True),
    "+ 1024-512 hidden, 20 epochs": dict(max_shift=1, flip=True, hidden=(1024, 512), epochs=20),
    "+ batch norm": dict(max_shift=1, flip=True, hidden=(1024, 512), epochs=20, norm=True),
    "512-512, batch norm, 40 epochs": dict(max_shift=1, flip=True, hidden=(512, 512), epochs=40, norm=True),
    "1024-1024, batch norm, 15 epochs": dict(max_shift=1, flip=True, hidden=(1024, 1024), epochs=15, norm=True),
    "1024-512, batch 2048, lr 0.006": dict(
        max_shift=1, flip=True, hidden=(1024, 512), epochs=20, norm=True, batch_size=2048, max_lr=0.006
    ),
    "512-256, shifts, 60 epochs": dict(max_shift=1, epochs=60),
    "512-256, shifts and flips, 60 epochs": dict(max_shift=1, flip=True, epochs=60),
    "512-256, batch norm, shifts, 40 epochs": dict(max_shift=1, norm=True, epochs=40),
    "512-256, batch norm, shifts and flips, 40 epochs": dict(max_shift=1, flip=True, norm=True, epochs=40),
    "512-256, shifts, batch 2048, lr 0.006, 50 epochs": dict(max_shift=1, epochs=50, batch_size=2048, max_lr=0.006),
    "512-256, shifts, 45 epochs": dict(max_shift=1, epochs=45),
    "recipe with batches of 2048, peak lr 0.006": dict(
        max_shift=1, norm=True, epochs=40, batch_size=2048, max_lr=0.006
    ),
    "recipe, 25 epochs (lesson 08's MLP in the CNN's time)": dict(max_shift=1, norm=True, epochs=25),
}

FAST = dict(
    widths=(32, 64), head=128, dropout=0.0, pool_first=True, batch_size=256, max_lr=0.004, weight_decay=0.05, bf16=True
)
CNN_ROWS = {
    "today: small CNN, batch 128, 9 epochs": dict(today=True),
    "fast net (pool first, no dropout), batch 256, bf16, 12 epochs": dict(FAST, epochs=12),
    "+ shifts of 1 px and flips": dict(FAST, epochs=12, max_shift=1, flip=True),
    "+ a third block (32-64-128), no hidden layer": dict(
        FAST, epochs=12, max_shift=1, flip=True, widths=(32, 64, 128), head=0
    ),
    "lesson 08's short run: fast net, shifts and flips, 4 epochs": dict(FAST, epochs=4, max_shift=1, flip=True),
    "the same in float32": dict(FAST, epochs=4, max_shift=1, flip=True, bf16=False),
}


def _load(flat: bool):
    """Lesson 07/08's split: (x_train, y_train, x_val, y_val), standardised, flat or [N, 1, 28, 28]."""
    images, labels = load_fashion_mnist("train")
    x = normalize_images(images)
    x = x.reshape(len(x), -1) if flat else x.unsqueeze(1)
    train_idx, val_idx = split_indices(len(x), val_fraction=0.1, seed=0)
    return x[train_idx], labels[train_idx], x[val_idx], labels[val_idx]


def _row(name, kind, config, train):
    load_before = os.getloadavg()[0]
    result = train(**config)
    settings = {k: v for k, v in config.items() if k not in ("x", "y", "x_eval", "y_eval")}
    return {
        "kind": kind,
        "row": name,
        "config": settings,
        **result,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def run_rows(kind: str, names=None) -> list[dict]:
    """Train the named rows (default: all) of one ablation and print each as a JSON line as it finishes."""
    rows = MLP_ROWS if kind == "mlp" else CNN_ROWS
    x, y, x_val, y_val = _load(flat=kind == "mlp")
    train = recipes.train_mlp if kind == "mlp" else recipes.train_cnn
    out = []
    for name in names or rows:
        if name not in rows:
            matches = [n for n in rows if name in n]
            if len(matches) != 1:
                raise SystemExit(f"no single row matches {name!r}; rows: {list(rows)}")
            name = matches[0]
        config = {**rows[name], "x": x, "y": y, "x_eval": x_val, "y_eval": y_val}
        result = _row(name, kind, config, train)
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


def _epoch_of(train, config: dict, x, y, n: int):
    """A function that trains one epoch of ``n`` images with a recipe's model, batches and precision."""
    from torch import nn

    from course_utils.train import Augment, TensorBatches, train_epoch

    torch.manual_seed(0)
    if train == "mlp":
        model = recipes.mlp(config["hidden"], norm=config["norm"])
    elif config.get("today"):
        model = recipes.small_cnn().to(memory_format=torch.channels_last)
    else:
        model = recipes.conv_net(config["widths"], config["head"], config["dropout"], config["pool_first"])
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["max_lr"], weight_decay=config["weight_decay"], fused=True
    )
    augment = (
        Augment(config["max_shift"], config["flip"], fill=float(x.min()))
        if config["max_shift"] or config["flip"]
        else None
    )
    batches = TensorBatches(x[:n], y[:n], config["batch_size"], shuffle=True, transform=augment)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    bf16 = bool(config.get("bf16"))
    return lambda: train_epoch(model, batches, optimizer, loss_fn, bf16=bf16)


def cpu_cost(rounds: int = 3) -> dict:
    """CPU microseconds per training image of the old and new recipes' steps, one thread, interleaved."""
    x, y, _, _ = _load(flat=True)
    images = x.reshape(-1, 1, 28, 28)
    variants = {
        "MLP before (512-256, batch 1024)": ("mlp", recipes.MLP_DEFAULTS, x, 15360),
        "MLP recipe (batch norm, shifts)": ("mlp", {**recipes.MLP_DEFAULTS, **recipes.IMPROVED_MLP}, x, 15360),
        "CNN before (small CNN, batch 128)": ("cnn", dict(recipes.CNN_DEFAULTS, today=True), images, 2560),
        "CNN recipe, float32": ("cnn", {**recipes.CNN_DEFAULTS, **recipes.FAST_CNN, "bf16": False}, images, 2560),
        "CNN recipe, bfloat16": ("cnn", {**recipes.CNN_DEFAULTS, **recipes.FAST_CNN, "bf16": True}, images, 2560),
    }
    epochs = {name: (_epoch_of(kind, config, data, y, n), n) for name, (kind, config, data, n) in variants.items()}
    for epoch, _ in epochs.values():
        epoch()
    costs = {name: [] for name in epochs}
    for _ in range(rounds):
        for name, (epoch, n) in epochs.items():
            started = time.thread_time()
            epoch()
            costs[name].append(1e6 * (time.thread_time() - started) / n)
    return {name: sorted(c)[len(c) // 2] for name, c in costs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("mlp", "cnn", "cost"))
    parser.add_argument("--rows", nargs="*", help="rows to train (a unique part of the name is enough)")
    args = parser.parse_args(argv)
    print(
        json.dumps(
            {
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(),
                "load_1min": os.getloadavg()[0],
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        ),
        flush=True,
    )
    if args.kind == "cost":
        print(json.dumps({"us_cpu_per_image": cpu_cost(), "load_1min_after": os.getloadavg()[0]}))
        return 0
    run_rows(args.kind, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
