"""How close the MLP training step comes to the machine's matmul limit, and where the rest of the time goes.

    >>> efficiency = mlp_step_efficiency()   # {'ratio': ..., 'step_gflops': ..., 'mm_gflops': ...}

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
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.recipes import fashion_tensors, mlp
from course_utils.data import make_loaders
from course_utils.train import TensorBatches


def matmul_flops_per_step(model: nn.Module, batch_size: int) -> int:
    """Forward + backward matmul FLOPs of one training step of a stack of Linear layers.

        >>> matmul_flops_per_step(nn.Sequential(nn.Linear(784, 10)), 1)
        31360
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(2 * batch_size * m.in_features * m.out_features * (2 if i == 0 else 3) for i, m in enumerate(linears))


def mm_gflops(size: int = 4096, repeats: int = 4) -> float:
    """Best GFLOP/s of a large square float32 ``torch.mm`` on this machine, now."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def _improved_mlp_step(batch_size=256, fused=True):
    torch.manual_seed(0)
    model = mlp((512, 256), dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002, fused=fused)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step(xb, yb):
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, step


def step_gflops(batch_size: int = 256, steps: int = 60, fused=True) -> float:
    """Achieved matmul GFLOP/s of the improved MLP's training step on real batches (TensorBatches)."""
    x, y, _, _ = fashion_tensors(standardised=True)
    model, step = _improved_mlp_step(batch_size, fused)
    batches = [b for _, b in zip(range(steps + 5), TensorBatches(x, y, batch_size, shuffle=True))]
    for xb, yb in batches[:5]:
        step(xb, yb)
    started = time.perf_counter()
    for xb, yb in batches[5:]:
        step(xb, yb)
    seconds = time.perf_counter() - started
    return matmul_flops_per_step(model, batch_size) * steps / seconds / 1e9


def mlp_step_efficiency(batch_size: int = 256, steps: int = 60) -> dict:
    """The improved MLP step's matmul FLOP/s over a large torch.mm's, measured back to back."""
    peak_before = mm_gflops()
    achieved = step_gflops(batch_size, steps)
    peak = max(peak_before, mm_gflops())
    return {"step_gflops": achieved, "mm_gflops": peak, "ratio": achieved / peak, "batch_size": batch_size,
            "counted": "forward + backward matmuls of the Linear layers (first layer: no input gradient)"}


# ---------------------------------------------------------------- where the time goes


def phase_profile(loader_kind: str = "tensor_batches", steps: int = 40, batch_size: int = 256) -> dict:
    """Share of wall time per phase (data, forward, backward, optimizer) of improved-MLP steps."""
    x, y, _, _ = fashion_tensors(standardised=True)
    model, _ = _improved_mlp_step(batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002, fused=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
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
    return {"loader": loader_kind, "ms_per_step": 1000 * total / steps,
            **{f"{k}_share": v / total for k, v in totals.items()}}


def _batch_source(kind: str, x, y, batch_size: int):
    generator = torch.Generator().manual_seed(0)
    if kind == "tensor_batches":
        return TensorBatches(x, y, batch_size, shuffle=True)
    if kind == "dataloader_tensordataset":  # the usual learner's path: per-sample indexing + default collate
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator)
    if kind == "make_loaders":  # course_utils.data: a Dataset with __getitems__ (one indexing op per batch)
        return make_loaders(batch_size)[0]
    raise ValueError(f"unknown loader {kind!r}")


def torch_op_profile(steps: int = 20, batch_size: int = 256, top: int = 8) -> list[dict]:
    """The ops that take the most self CPU time in improved-MLP steps, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    x, y, _, _ = fashion_tensors(standardised=True)
    model, step = _improved_mlp_step(batch_size)
    batches = [b for _, b in zip(range(steps + 3), TensorBatches(x, y, batch_size, shuffle=True))]
    for xb, yb in batches[:3]:
        step(xb, yb)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for xb, yb in batches[3:]:
            step(xb, yb)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def optimizer_step_ms(variant: str, steps: int = 50) -> float:
    """Milliseconds of one Adam step over the improved MLP's parameters: 'for-loop' (the CPU default),
    'foreach' (one multi-tensor op per update stage) or 'fused' (one kernel)."""
    options = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[variant]
    torch.manual_seed(0)
    model = mlp((512, 256), dropout=0.2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002, **options)
    for _ in range(3):
        optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return 1000 * (time.perf_counter() - started) / steps


def data_epoch_seconds(kind: str, batch_size: int = 256) -> float:
    """Seconds to fetch one epoch of training batches (no model) through one data path."""
    x, y, _, _ = fashion_tensors(standardised=True)
    source = _batch_source(kind, x, y, batch_size)
    started = time.perf_counter()
    for _ in source:
        pass
    return time.perf_counter() - started


def thread_settings(steps: int = 40) -> list[dict]:
    """Improved-MLP step GFLOP/s in fresh processes with 1 and 2 intra-op threads (and passive OpenMP waits).

    A busy machine (other jobs, pytest-xdist workers) hurts 2 spinning OpenMP threads far more than 1.
    """
    rows = []
    for threads, passive in ((1, False), (2, False), (2, True)):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        code = (f"import torch; torch.set_num_threads({threads}); from bench.efficiency import step_gflops; "
                f"print(step_gflops(steps={steps}))")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        rows.append({"threads": threads, "omp_wait_policy": "PASSIVE" if passive else "default",
                     "step_gflops": float(out.stdout.strip().splitlines()[-1])})
    return rows


if __name__ == "__main__":
    print(json.dumps(mlp_step_efficiency(), indent=1))
