"""Training speed when another process keeps one core busy, under the OpenMP setting the course chose.

    $ python -m bench.contention                 # figures as JSON
    >>> figures = run(repeats=3)                 # doctest: +SKIP

Two trainings, each timed in a fresh interpreter (data loading excluded):

* ``lesson07_train_recipe``: lesson 07b's own ``train_recipe`` helper, its source taken from the lesson's
  notebook and run as the lesson runs it (the same training split), with the lesson's final recipe
  (standardised inputs, 512-256 hidden, one-cycle to 0.004, label smoothing, weight decay, batches of 1024)
  for ``EPOCHS`` epochs;
* ``train_fit_cnn``: ``course_utils.train.fit`` on lesson 08's CNN (channels-last, batches of 128), one
  epoch over ``CNN_IMAGES`` images.

Each under three OpenMP settings: torch's default (a thread per core; waiting threads spin),
``OMP_WAIT_POLICY=PASSIVE``, the setting ``make lab``, ``make test`` and the hub's kernels use, and, for
comparison, PASSIVE with one thread; each on a quiet machine and with one busy
process (a Python loop that never sleeps) beside it. The figures: the median seconds of ``repeats`` runs
(settings and conditions interleaved), the slow-down under contention (busy / quiet of the same setting,
and busy / quiet of torch's default: target at most 2x) and the quiet-machine cost of each setting
(its quiet / default quiet). "Quiet" is whatever else the
machine runs: the load average before and after is part of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LESSON = REPO / "notebooks" / "07b_improving_the_classifier.ipynb"
EPOCHS = 3
CNN_IMAGES = 6000
SETTINGS = {  # name -> OpenMP environment
    "default": {},  # torch's default: 1 thread per core, spinning
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # the course's choice
    "passive_1_thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},  # the alternative, for comparison
}
CHOSEN = "passive"
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def lesson_helper_source(lesson: Path = LESSON) -> str:
    """The source of the lesson's code cells that define ``standardise`` and ``train_recipe`` (with ``build_mlp``),
    in the lesson's order."""
    import nbformat

    nb = nbformat.read(lesson, as_version=4)
    sources = []
    for marker in ("standardise = ", "def train_recipe("):
        cells = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
        if len(cells) != 1:
            raise RuntimeError(f"{lesson} should have one code cell with {marker!r}; found {len(cells)}")
        sources.append(cells[0])
    return "\n\n".join(sources)


def lesson07_scope(x_train, y_train, x_val, y_val) -> dict:
    """A namespace in which lesson 07's own cells have run on these tensors: ``scope["train_recipe"](...)``."""
    import io

    import torch
    from torch import nn

    from course_utils.train import TensorBatches, fit

    scope = {
        "torch": torch,
        "nn": nn,
        "TensorBatches": TensorBatches,
        "fit": fit,
        "device": torch.device("cpu"),
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val,
        "y_val": y_val,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(lesson_helper_source(), str(LESSON), "exec"), scope)
    return scope


def time_lesson07(epochs: int = EPOCHS) -> float:
    """Seconds of one ``train_recipe`` call (lesson 07's final recipe, ``epochs`` epochs), in this process."""
    from course_utils.data import load_fashion_mnist, split_indices

    images, labels = load_fashion_mnist("train")
    features = images.reshape(len(images), -1).float() / 255
    train_idx, val_idx = split_indices(len(features), val_fraction=0.1, seed=0)
    scope = lesson07_scope(features[train_idx], labels[train_idx], features[val_idx], labels[val_idx])
    recipe = dict(
        standardised=True,
        hidden=(512, 256),
        one_cycle=True,
        lr=0.004,
        smoothing=0.1,
        weight_decay=0.1,
        batch_size=1024,
        epochs=epochs,
        progress=False,
    )
    started = time.perf_counter()
    scope["train_recipe"](**recipe)
    return time.perf_counter() - started


def time_fit_cnn(n_images: int = CNN_IMAGES) -> float:
    """Seconds of one epoch of ``course_utils.train.fit`` on lesson 08's CNN over ``n_images`` images."""
    import torch
    from torch import nn

    from bench.recipes import fashion_tensors, small_cnn
    from course_utils.train import TensorBatches, fit

    x, y, _, _ = fashion_tensors(standardised=True, images_shape="image")
    torch.manual_seed(0)
    model = small_cnn().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003, fused=True)
    started = time.perf_counter()
    fit(
        model,
        TensorBatches(x[:n_images], y[:n_images], 128, shuffle=True, seed=0),
        optimizer,
        1,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1),
        progress=False,
    )
    return time.perf_counter() - started


WORKLOADS = {"lesson07_train_recipe": "time_lesson07", "train_fit_cnn": "time_fit_cnn"}


def _environment(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    return {**env, **SETTINGS[setting]}


def time_in_fresh_process(workload: str, setting: str, quick: bool) -> float:
    """Seconds of ``workload`` in a fresh interpreter whose only OpenMP setting is ``setting``."""
    size = "epochs=1" if quick and workload == "lesson07_train_recipe" else ("n_images=1000" if quick else "")
    code = f"from bench.contention import {WORKLOADS[workload]} as f; print(f({size}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_environment(setting), capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{workload} under {setting} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


class BusyCore:
    """One process that keeps one core busy (a Python loop that never sleeps) while the block runs."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def run(repeats: int = 3, quick: bool = False) -> dict:
    """Every workload x setting x (quiet, busy), ``repeats`` times interleaved; medians and ratios."""
    seconds = {w: {s: {"quiet": [], "busy": []} for s in SETTINGS} for w in WORKLOADS}
    figures = {
        "repeats": repeats,
        "quick": quick,
        "epochs": 1 if quick else EPOCHS,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "chosen": CHOSEN,
        "settings": SETTINGS,
    }
    for _ in range(repeats):
        for setting in SETTINGS:
            for condition in ("quiet", "busy"):
                with BusyCore() if condition == "busy" else contextlib.nullcontext():
                    for workload in WORKLOADS:
                        seconds[workload][setting][condition].append(time_in_fresh_process(workload, setting, quick))
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["workloads"] = {}
    for workload, by_setting in seconds.items():
        out = {}
        for setting, runs in by_setting.items():
            quiet, busy = statistics.median(runs["quiet"]), statistics.median(runs["busy"])
            out[setting] = {
                "quiet_s": round(quiet, 2),
                "busy_s": round(busy, 2),
                "slowdown": round(busy / quiet, 2),
                "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
            }
        default_quiet = statistics.median(by_setting["default"]["quiet"])
        for setting in SETTINGS:
            out[setting]["quiet_cost"] = round(statistics.median(by_setting[setting]["quiet"]) / default_quiet, 2)
            out[setting]["busy_vs_default_quiet"] = round(
                statistics.median(by_setting[setting]["busy"]) / default_quiet, 2
            )
        figures["workloads"][workload] = out
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny runs that check the code, not the figures")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.repeats, args.quick), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
