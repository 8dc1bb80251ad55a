"""Run every benchmark, print a table and write the figures to bench/results/bench.json.

    $ python -m bench.run            # the full run (about 25 minutes on 2 quiet CPU cores)
    $ python -m bench.run --quick    # short runs that only check the benchmark code works

Timings depend on the machine and on what else runs on it: take final figures on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

from bench import contention, efficiency, feedback_latency, grading_throughput, lessons, recipes
from bench import data_figures as data_mod
from course_utils.train import fast_bfloat16

RESULTS = Path(__file__).resolve().parent / "results" / "bench.json"
SECTIONS = ("data", "apparel", "efficiency", "contention", "lessons", "grading", "latency", "latency_hostile")


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (e.g. 'AMD EPYC', 'Intel(R) Xeon(R) ...')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine() -> dict:
    """What the figures were measured on: CPU model, the instruction set torch uses, native bfloat16, threads."""
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bfloat16": fast_bfloat16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(OpenMP default)"),
        "load_average_1min_at_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def machine_kind() -> str:
    """One line naming the machine kind, printed above the table: CPU model, ISA, cores."""
    m = machine()
    return (
        f"{m['cpu']}, {m['cores']} cores, torch ISA {m['cpu_capability']}, native bfloat16: "
        f"{'yes' if m['native_bfloat16'] else 'no'}, torch {m['torch']}"
    )


def run_data(quick: bool) -> tuple[dict, list]:
    figures = data_mod.data_figures(quick)
    rows = [
        (
            "data",
            "training split load, checksums cached",
            f"{figures['train_load_s']:.3f} s",
            "<= 0.5 s",
            figures["train_load_s"] <= 0.5,
        ),
        ("data", "SHA-256 of the training images file", f"{figures['checksum_s']:.3f} s", "", None),
        ("data", f"export {figures['images_exported']} PNGs", f"{figures['export_s']:.1f} s", "", None),
        ("data", "first read (train + test)", f"{figures['first_read_s']:.2f} s", "", None),
        (
            "data",
            "cached read (train + test)",
            f"{figures['cached_read_s']:.2f} s",
            "<= 1 s",
            figures["cached_read_s"] <= 1.0,
        ),
    ]
    return figures, rows


def run_apparel(quick: bool) -> tuple[dict, list]:
    results, rows = {}, []
    for name in recipes.RECIPES:
        result = recipes.run_recipe(name, quick)
        results[name] = result
        val = f"val {result['val_accuracy']:.2%}, " if "val_accuracy" in result else ""
        rows.append(
            (
                name,
                f"{'validation and ' if val else ''}test accuracy / train time (epochs) / images per s",
                f"{val}{result['test_accuracy']:.2%} / {result['train_seconds']:.1f} s ({result['epochs']}) / "
                f"{result['images_per_second']:,.0f}",
                result.get("target", ""),
                result.get("met"),
            )
        )
    return results, rows


def run_efficiency(quick: bool) -> tuple[dict, list]:
    rounds = 1 if quick else 9
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    bind = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
    variants = {  # name -> (label, OpenMP environment, recipe changes)
        "recipe": (
            f"improved MLP training, as lesson 07 trains it (shifted batches of {recipes.IMPROVED_MLP['batch_size']})",
            {},
            {},
        ),
        "recipe_passive": ("the same under OMP_WAIT_POLICY=PASSIVE (as make test runs)", passive, {}),
        "no_augmentation": ("the same without the random shifts", {}, {"augment": False}),
        "flush_denormal": ("the same with torch.set_flush_denormal(True)", {}, {"flush_denormal": True}),
        "threads_bound": ("the same with OMP_PROC_BIND=close OMP_PLACES=cores", bind, {}),
        "with_dropout": ("the same plus dropout 0.2 after each ReLU", {}, {"dropout": 0.2}),
        "previous_recipe": (
            "batch 256 with dropout 0.2 (the recipe before this benchmark)",
            {},
            {"batch_size": 256, "dropout": 0.2},
        ),
    }
    out = {
        name: efficiency.efficiency_in_fresh_process(env, rounds=rounds, **changes)
        for name, (_, env, changes) in variants.items()
    }
    out.update(
        {
            "phases": {
                kind: efficiency.phase_profile(kind, steps=10 if quick else 40)
                for kind in ("tensor_batches", "make_loaders", "dataloader_tensordataset")
            },
            "data_epoch_s": {
                kind: efficiency.data_epoch_seconds(kind)
                for kind in ("tensor_batches", "make_loaders", "dataloader_tensordataset")
            },
            "adamw_step_ms": {v: efficiency.optimizer_step_ms(v) for v in ("for-loop", "foreach", "fused")},
            "top_ops": efficiency.torch_op_profile(steps=10 if quick else 20),
            "cnn_top_ops": {
                precision: efficiency.cnn_op_profile(steps=3 if quick else 10, bf16=precision == "bfloat16")
                for precision in ("float32", "bfloat16")
            },
            "threads": efficiency.thread_settings(steps=20 if quick else 80, repeats=1 if quick else 3),
        }
    )
    rows = []
    for name, (label, _, _) in variants.items():
        eff = out[name]
        rows.append(
            (
                "efficiency",
                f"{label}: matmul GFLOP/s / large mm GFLOP/s, median of {eff['rounds']} rounds "
                "(the step's matmuls alone, same shapes)",
                f"{eff['step_gflops']:.1f} / {eff['mm_gflops']:.1f} = {eff['ratio']:.2f} "
                f"(rounds {eff['ratio_lowest']:.2f}-{eff['ratio_highest']:.2f}; "
                f"alone {eff['matmuls_alone_ratio']:.2f})",
                ">= 0.8" if name == "recipe" else "",
                eff["ratio"] >= 0.8 if name == "recipe" else None,
            )
        )
    for kind, phase in out["phases"].items():
        rows.append(
            (
                "efficiency",
                f"MLP step via {kind}: ms, data share",
                f"{phase['ms_per_step']:.1f} ms, {phase['data_share']:.0%} data",
                "",
                None,
            )
        )
    for kind, seconds in out["data_epoch_s"].items():
        rows.append(("efficiency", f"one epoch of batches only via {kind}", f"{seconds:.2f} s", "", None))
    for precision, ops in out["cnn_top_ops"].items():
        rows.append(
            (
                "efficiency",
                f"CNN recipe step in {precision}: top ops by self CPU time",
                ", ".join(f"{op['op']} {op['self_cpu_share']:.0%}" for op in ops[:4]),
                "",
                None,
            )
        )
    for kind, ms in out["adamw_step_ms"].items():
        rows.append(("efficiency", f"AdamW step ({kind})", f"{ms:.2f} ms", "", None))
    for row in out["threads"]:
        both = row["two_at_once_gflops"]
        rows.append(
            (
                "efficiency",
                f"MLP step, {row['setting']}: alone / two processes at once (sum)",
                f"{row['alone_gflops']:.1f} / {'-' if both is None else f'{both:.1f}'} GFLOP/s",
                "",
                None,
            )
        )
    return out, rows


def run_lessons(quick: bool) -> tuple[dict, list]:
    notebooks = None
    if quick:
        notebooks = sorted(Path("notebooks").glob("01_*.ipynb"))[:1]
    timing = lessons.lesson_nbval_seconds(notebooks)
    rows = [
        (
            "lessons",
            f"nbval {name}",
            f"{s:.1f} s",
            "<= 300 s" if name == "total" else "",
            (s <= 300 and not timing["failed"]) if name == "total" else None,
        )
        for name, s in timing["seconds"].items()
    ]
    if timing["failed"]:
        rows.append(("lessons", "notebooks failing nbval", ", ".join(timing["failed"]), "none", False))
    return timing, rows


def run_grading(quick: bool) -> tuple[dict, list]:
    result = grading_throughput.run(n_submissions=4 if quick else 20, scaling_n=8 if quick else 200)
    scale = result["scaling"]
    rows = [
        (
            "grading",
            "speed-up vs serial nbgrader autograde (sandboxed, cluster start and references included)",
            f"{result['speedup']:.2f}x",
            ">= 5x",
            result["speedup"] >= 5 and result["identical_scores"],
        ),
        (
            "grading",
            "worker-seconds per submission, warm engine",
            f"{result['warm_worker_s_per_submission']:.2f} s",
            "<= 1.0 s",
            result["warm_worker_s_per_submission"] <= 1.0,
        ),
        (
            "grading",
            f"{scale['n']} submissions: 1 worker / 2 workers",
            f"{scale['workers_1_s']:.1f} / {scale['workers_2_s']:.1f} s ({scale['speedup_2_vs_1']}x)",
            "",
            None,
        ),
    ]
    return result, rows


def run_contention(quick: bool) -> tuple[dict, list]:
    figures = contention.run(repeats=1 if quick else 3, quick=quick)
    rows = []
    for workload, out in figures["workloads"].items():
        for setting in contention.SETTINGS:
            f, chosen = out[setting], setting == contention.CHOSEN
            rows.append(
                (
                    "contention",
                    f"{workload}, OpenMP {setting}: quiet / one core busy s (slow-down; "
                    f"busy vs default quiet; quiet cost)",
                    f"{f['quiet_s']:.1f} / {f['busy_s']:.1f} ({f['slowdown']:.2f}x; {f['busy_vs_default_quiet']:.2f}x; "
                    f"{f['quiet_cost']:.2f}x)",
                    "slow-down <= 2x" if chosen else "",
                    f["slowdown"] <= 2.0 if chosen else None,
                )
            )
    return figures, rows


def run_latency(quick: bool) -> tuple[dict, list]:
    n = 4 if quick else 20
    if os.geteuid() != 0:
        why = "skipped: the grading sandbox needs root (run make bench as root)"
        return {"skipped": why}, [("latency", f"submission to feedback, {n} students at once", why, "", None)]
    figures = feedback_latency.run(n_students=n)
    figures.pop("watcher_log_tail", None)
    return figures, [
        (
            "latency",
            f"submission to feedback, {n} students submit exercise 01 at once: median / worst",
            f"{figures['median_s']:.1f} / {figures['worst_s']:.1f} s (all graded {figures['all_graded_after_s']:.1f} s "
            f"after the first submit)",
            "",
            None,
        )
    ]


def run_latency_hostile(quick: bool) -> tuple[dict, list]:
    n = 4 if quick else 20
    label = f"honest submission to feedback, {n} students of exercise 01 + 2 hostile (slow, huge)"
    if os.geteuid() != 0:
        why = "skipped: the grading sandbox needs root (run make bench as root)"
        return {"skipped": why}, [("latency_hostile", label, why, "", None)]
    figures = feedback_latency.hostile_comparison(n_students=n)
    without, with_, again = figures["runs"]
    value = (
        f"median / worst: without {without['median_s']:.1f} / {without['worst_s']:.1f} s, with "
        f"{with_['median_s']:.1f} / {with_['worst_s']:.1f} s, without {again['median_s']:.1f} / "
        f"{again['worst_s']:.1f} s; ratio {figures['ratio']:.2f}"
    )
    return figures, [("latency_hostile", label, value, "ratio <= 2", figures["ratio"] <= 2)]


RUNNERS = {
    "data": run_data,
    "apparel": run_apparel,
    "efficiency": run_efficiency,
    "contention": run_contention,
    "lessons": run_lessons,
    "grading": run_grading,
    "latency": run_latency,
    "latency_hostile": run_latency_hostile,
}


def print_table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for section, metric, value, target, met in rows:
        mark = "" if met is None else ("ok" if met else "MISSED")
        print(f"{section:<{widths[0]}}  {metric:<{widths[1]}}  {value:<{widths[2]}}  {target:<{widths[3]}}  {mark}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs that check the code, not the figures")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS})")
    args = parser.parse_args(argv)
    report = {"machine": machine(), "quick": args.quick, "sections": {}}
    rows, failed = [], []
    started = time.perf_counter()
    print(f"machine: {machine_kind()}", file=sys.stderr, flush=True)
    for section in args.only:
        load = load_average()
        print(f"running {section} (load average {load:.2f}) ...", file=sys.stderr, flush=True)
        rows.append((section, "load average (1 min) at the start of the section", f"{load:.2f}", "", None))
        section_started = time.strftime("%H:%M:%S")
        try:
            figures, section_rows = RUNNERS[section](args.quick)
        except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
            traceback.print_exc()
            figures, section_rows = (
                {"failed": repr(error)},
                [(section, "section failed", repr(error)[:80], "runs", False)],
            )
            failed.append(section)
        report["sections"][section] = {
            **figures,
            "load_average_1min_at_start": load,
            "load_average_1min_at_end": load_average(),  # other work on the machine shows here
            "started": section_started,
        }
        rows += section_rows
        report["rows"] = [dict(zip(("section", "metric", "value", "target", "met"), row)) for row in rows]
        report["total_seconds"] = time.perf_counter() - started
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1))  # after each section: a later crash loses nothing
    print(f"machine: {machine_kind()}; load average at the start {report['machine']['load_average_1min_at_start']:.2f}")
    print_table(rows)
    print(
        f"\nwritten to {args.output} ({report['total_seconds']:.0f} s"
        f"{', quick run: figures are not meaningful' if args.quick else ''})"
    )
    if failed:
        print(f"sections that failed (their tracebacks are above): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
