"""How close the MLP training step comes to the machine's matmul limit, and where the rest of the time goes.

    >>> efficiency = mlp_step_efficiency()   # {'ratio': ..., 'step_gflops': ..., 'mm_gflops': ..., ...}

FLOPs are counted for the matrix multiplications only, forward and backward: a Linear layer with
``i`` inputs and ``o`` outputs on a batch of ``B`` costs ``2*B*i*o`` forward, ``2*B*i*o`` for the weight
gradient and ``2*B*i*o`` for the input gradient, except the first layer, whose input gradient PyTorch
never computes (the images do not require grad). Activations, dropout, the loss and the optimizer are
real work but not counted, so they lower the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.recipes import IMPROVED_MLP, fashion_tensors, improved_mlp_batches, improved_mlp_parts, mlp
from course_utils.data import make_loaders
from course_utils.train import TensorBatches, train_epoch


def matmul_flops_per_step(model: nn.Module, batch_size: int) -> int:
    """Forward + backward matmul FLOPs of one training step of a stack of Linear layers.

    >>> matmul_flops_per_step(nn.Sequential(nn.Linear(784, 10)), 1)
    31360
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(2 * batch_size * m.in_features * m.out_features * (2 if i == 0 else 3) for i, m in enumerate(linears))


def _improved_mlp_step(dropout: float = 0.0):
    """(model, step) for the improved MLP's bare training step: forward, loss, backward, AdamW."""
    model, optimizer, loss_fn = improved_mlp_parts(dropout=dropout)

    def step(xb, yb):
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, step


def step_gflops(batch_size: int | None = None, steps: int = 40) -> float:
    """Achieved matmul GFLOP/s of the improved MLP's bare training step on batches already cut from memory."""
    batch_size = batch_size or IMPROVED_MLP["batch_size"]
    x, y, _, _ = fashion_tensors(standardised=True)
    model, step = _improved_mlp_step()
    batches = _full_batches(x, y, batch_size, steps + 5)
    for xb, yb in batches[:5]:
        step(xb, yb)
    started = time.perf_counter()
    for xb, yb in batches[5:]:
        step(xb, yb)
    seconds = time.perf_counter() - started
    return matmul_flops_per_step(model, batch_size) * len(batches[5:]) / seconds / 1e9


def _full_batches(x, y, batch_size: int, n: int) -> list:
    """The first ``n`` full-size shuffled batches, over as many epochs as it takes."""
    source, batches = TensorBatches(x, y, batch_size, shuffle=True), []
    while len(batches) < n:
        batches += [b for b in source if len(b[1]) == batch_size][: n - len(batches)]
    return batches


def bracketed_ratios(epoch_gflops: list[float], mm_gflops: list[float]) -> list[float]:
    """Each epoch's FLOP rate over the mean of the two ``torch.mm`` rates timed just before and just after it.

    >>> bracketed_ratios([80.0], [100.0, 60.0])
    [1.0]
    """
    if len(mm_gflops) != len(epoch_gflops) + 1:
        raise ValueError(
            f"need one mm timing more than epochs (before and after each), got "
            f"{len(mm_gflops)} mm and {len(epoch_gflops)} epochs"
        )
    return [rate / ((before + after) / 2) for rate, before, after in zip(epoch_gflops, mm_gflops, mm_gflops[1:])]


def mlp_step_efficiency(
    rounds: int = 9,
    batch_size: int | None = None,
    dropout: float = 0.0,
    augment: bool = True,
    flush_denormal: bool = False,
) -> dict:
    """Lesson 07's improved MLP, trained as the lesson trains it, against a large ``torch.mm``.

    Timings alternate: a large ``torch.mm``, one whole training epoch run by the lesson's loop
    (``course_utils.train.train_epoch``: shuffled batches gathered from memory and augmented as the
    recipe says, forward, loss, backward, AdamW, the one-cycle schedule, running loss and accuracy),
    another ``torch.mm``, the next epoch, and so on. Each epoch's FLOP rate is divided by the mean of
    the two mm rates on either side of it, so a machine that speeds up or slows down (a shared VM does)
    moves both; the median epoch is the figure, the lowest and highest are reported beside it. One
    warm-up epoch is not timed. ``batch_size``, ``dropout`` and ``augment=False`` change the recipe, to
    show what each costs; ``flush_denormal`` flushes denormal floats to zero first (Adam's first moments of
    dead units decay into denormals late in training).
    """
    if flush_denormal:
        torch.set_flush_denormal(True)
    batch_size = batch_size or IMPROVED_MLP["batch_size"]
    x, y, _, _ = fashion_tensors(standardised=True)
    model, optimizer, loss_fn = improved_mlp_parts(dropout=dropout)
    batches = improved_mlp_batches(x, y, batch_size=batch_size, augment=augment)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=IMPROVED_MLP["max_lr"], total_steps=(rounds + 1) * len(batches)
    )
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    epoch_flops, mm_flops = matmul_flops_per_step(model, len(y)), 2 * 4096**3

    def gflops(work, flops: int) -> float:
        started = time.perf_counter()
        work()
        return flops / (time.perf_counter() - started) / 1e9

    torch.mm(a, b)
    train_epoch(model, batches, optimizer, loss_fn, scheduler)
    mm_rates, epoch_rates, alone_rates = [gflops(lambda: torch.mm(a, b), mm_flops)], [], []
    for _ in range(rounds):
        epoch_rates.append(gflops(lambda: train_epoch(model, batches, optimizer, loss_fn, scheduler), epoch_flops))
        alone_rates.append(matmuls_alone_gflops(model, batch_size))
        mm_rates.append(gflops(lambda: torch.mm(a, b), mm_flops))
    ratios = bracketed_ratios(epoch_rates, mm_rates)
    alone = bracketed_ratios(alone_rates, mm_rates)
    median = sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]
    return {
        "ratio": ratios[median],
        "step_gflops": epoch_rates[median],
        "mm_gflops": (mm_rates[median] + mm_rates[median + 1]) / 2,
        "ratio_lowest": min(ratios),
        "ratio_highest": max(ratios),
        "rounds": rounds,
        "matmuls_alone_ratio": sorted(alone)[rounds // 2],
        "batch_size": batch_size,
        "dropout": dropout,
        "augment": augment,
        "flush_denormal": flush_denormal,
        "hidden": list(IMPROVED_MLP["hidden"]),
        "counted": "forward + backward matmuls of the Linear layers (first layer: no input gradient)",
    }


def matmuls_alone_gflops(model: nn.Module, batch_size: int, repeats: int = 5) -> float:
    """GFLOP/s of one training step's matrix products alone, at the step's own shapes and layouts.

    For each Linear layer: the forward ``addmm(bias, x, W.t())``, the weight gradient ``g.t() @ x`` and
    (past the first layer) the input gradient ``g @ W``. Compared with the whole step's rate it splits the
    gap to the large ``mm`` into what the shapes cost (small matrices run slower) and what the rest of the
    step costs (bias, ReLU, batch norm, loss, AdamW, gathering and augmenting the batch).
    """
    ops = []
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        x, g = torch.randn(batch_size, layer.in_features), torch.randn(batch_size, layer.out_features)
        w, bias = layer.weight.detach(), layer.bias.detach()
        ops += [lambda x=x, w=w, bias=bias: torch.addmm(bias, x, w.t()), lambda x=x, g=g: torch.mm(g.t(), x)]
        ops += [lambda w=w, g=g: torch.mm(g, w)] if i else []
    for op in ops:
        op()
    started = time.perf_counter()
    for _ in range(repeats):
        for op in ops:
            op()
    return repeats * matmul_flops_per_step(model, batch_size) / (time.perf_counter() - started) / 1e9


# ---------------------------------------------------------------- where the time goes


def phase_profile(loader_kind: str = "tensor_batches", steps: int = 40, batch_size: int | None = None) -> dict:
    """Share of wall time per phase (data, forward, backward, optimizer) of improved-MLP steps."""
    batch_size = batch_size or IMPROVED_MLP["batch_size"]
    x, y, _, _ = fashion_tensors(standardised=True)
    model, optimizer, loss_fn = improved_mlp_parts()
    source = _batch_source(loader_kind, x, y, batch_size)
    totals = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)
    iterator = iter(source)
    for i in range(steps + 3):
        t0 = time.perf_counter()
        xb, yb = next(iterator)
        xb = xb.reshape(len(xb), -1)
        t1 = time.perf_counter()
        loss = loss_fn(model(xb), yb)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if i >= 3:  # warm-up steps are not counted
            for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                totals[key] += dt
    total = sum(totals.values())
    return {
        "loader": loader_kind,
        "ms_per_step": 1000 * total / steps,
        **{f"{k}_share": v / total for k, v in totals.items()},
    }


def _batch_source(kind: str, x, y, batch_size: int):
    generator = torch.Generator().manual_seed(0)
    if kind == "tensor_batches":
        return TensorBatches(x, y, batch_size, shuffle=True)
    if kind == "dataloader_tensordataset":  # the usual learner's path: per-sample indexing + default collate
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator)
    if kind == "make_loaders":  # course_utils.data: a Dataset with __getitems__ (one indexing op per batch)
        return make_loaders(batch_size)[0]
    raise ValueError(f"unknown loader {kind!r}")


def torch_op_profile(steps: int = 20, batch_size: int | None = None, top: int = 8, dropout: float = 0.0) -> list[dict]:
    """The ops that take the most self CPU time in improved-MLP steps, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    batch_size = batch_size or IMPROVED_MLP["batch_size"]
    x, y, _, _ = fashion_tensors(standardised=True)
    model, step = _improved_mlp_step(dropout)
    batches = _full_batches(x, y, batch_size, steps + 3)
    for xb, yb in batches[:3]:
        step(xb, yb)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for xb, yb in batches[3:]:
            step(xb, yb)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def cnn_op_profile(steps: int = 10, bf16: bool = False, top: int = 10) -> list[dict]:
    """The ops that take the most self CPU time in training steps of the CNN recipe (``FAST_CNN``), from
    torch.profiler, in float32 or under bfloat16 autocast: where a CPU kind spends the CNN's time."""
    from torch.profiler import ProfilerActivity, profile

    from bench.recipes import FAST_CNN, conv_net

    torch.manual_seed(0)
    model = conv_net(FAST_CNN["widths"], FAST_CNN["head"], FAST_CNN["dropout"], FAST_CNN["pool_first"])
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=FAST_CNN["max_lr"], fused=True)
    x, y, _, _ = fashion_tensors(standardised=True, images_shape="image")
    batches = TensorBatches(
        x[: FAST_CNN["batch_size"] * (steps + 2)], y[: FAST_CNN["batch_size"] * (steps + 2)], FAST_CNN["batch_size"]
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=FAST_CNN["label_smoothing"])

    def step(xb, yb):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batch_list = list(batches)
    for xb, yb in batch_list[:2]:
        step(xb, yb)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for xb, yb in batch_list[2:]:
            step(xb, yb)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def optimizer_step_ms(variant: str, steps: int = 50) -> float:
    """Milliseconds of one AdamW step over the improved MLP's parameters: 'for-loop' (the CPU default: ops per parameter
    and stage), 'foreach' (one multi-tensor op per update stage) or 'fused' (one kernel)."""
    options = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[variant]
    torch.manual_seed(0)
    model = mlp(IMPROVED_MLP["hidden"], norm=IMPROVED_MLP["norm"])
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=IMPROVED_MLP["max_lr"], weight_decay=IMPROVED_MLP["weight_decay"], **options
    )
    for _ in range(3):
        optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return 1000 * (time.perf_counter() - started) / steps


def data_epoch_seconds(kind: str, batch_size: int | None = None) -> float:
    """Seconds to fetch one epoch of training batches (no model) through one data path."""
    batch_size = batch_size or IMPROVED_MLP["batch_size"]
    x, y, _, _ = fashion_tensors(standardised=True)
    source = _batch_source(kind, x, y, batch_size)
    started = time.perf_counter()
    for _ in source:
        pass
    return time.perf_counter() - started


OPENMP_SETTINGS = {  # name -> (torch threads, extra environment)
    "1 thread": (1, {}),
    "2 threads, OpenMP default waits": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 threads, GOMP_SPINCOUNT=10000": (2, {"GOMP_SPINCOUNT": "10000"}),
}


def _openmp_env(threads: int | None, extra_env: dict) -> dict:
    """This process's environment without OpenMP settings, plus ``extra_env`` (and a thread count)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra_env)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run_fresh(code: str, env: dict, processes: int = 1) -> list[str]:
    """The last line each of ``processes`` fresh interpreters running ``code`` at once printed."""
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    outputs = [proc.communicate() for proc in running]
    for proc, (_, err) in zip(running, outputs):
        if proc.returncode:
            raise RuntimeError(f"benchmark subprocess failed:\n{code}\n{err[-2000:]}")
    return [out.strip().splitlines()[-1] for out, _ in outputs]


def efficiency_in_fresh_process(extra_env: dict | None = None, **kwargs) -> dict:
    """:func:`mlp_step_efficiency` in a fresh interpreter whose only OpenMP setting is ``extra_env``
    (none: OpenMP's default waits), so settings inherited from the Makefile do not leak in."""
    code = (
        f"import json; from bench.efficiency import mlp_step_efficiency; "
        f"print(json.dumps(mlp_step_efficiency(**{kwargs!r})))"
    )
    result = json.loads(_run_fresh(code, _openmp_env(None, extra_env or {}))[0])
    return {**result, "openmp_env": extra_env or {}}


def _step_gflops_in_fresh_processes(threads: int, extra_env: dict, processes: int, steps: int) -> list[float]:
    code = f"from bench.efficiency import step_gflops; print(step_gflops(steps={steps}))"
    return [float(line) for line in _run_fresh(code, _openmp_env(threads, extra_env), processes)]


def thread_settings(steps: int = 80, repeats: int = 3) -> list[dict]:
    """Improved-MLP step GFLOP/s under each OpenMP setting, in fresh processes: alone on the machine
    (median of ``repeats``, settings interleaved), and two at once (a learner's second kernel, or
    pytest-xdist workers), where the figure is the two processes' GFLOP/s added up.

    Waiting OpenMP threads spin by default: that is fastest on an idle machine and wasteful when other
    processes need the cores.
    """
    alone = {name: [] for name in OPENMP_SETTINGS}
    for _ in range(repeats):
        for name, (threads, extra) in OPENMP_SETTINGS.items():
            alone[name] += _step_gflops_in_fresh_processes(threads, extra, 1, steps)
    rows = []
    for name, (threads, extra) in OPENMP_SETTINGS.items():
        pair = _step_gflops_in_fresh_processes(threads, extra, 2, steps) if threads == 2 else None
        rows.append(
            {
                "setting": name,
                "alone_gflops": sorted(alone[name])[len(alone[name]) // 2],
                "two_at_once_gflops": sum(pair) if pair else None,
            }
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(mlp_step_efficiency(), indent=1))
