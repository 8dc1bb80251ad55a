"""Benchmarks that measure other parts of the course: lesson run times and grading throughput.

    >>> lesson_nbval_seconds(["notebooks/01_tensors_vs_numpy.ipynb"])   # {'01_tensors_vs_numpy': 4.2, 'total': 4.2}

``grading_throughput`` times the grading pipeline (course_utils.grading) against plain nbgrader.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lesson_nbval_seconds(notebooks=None) -> dict:
    """Seconds of a strict ``pytest --nbval`` run per lesson notebook, and the total (target <= 300 s)."""
    paths = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")) if notebooks is None else [Path(p) for p in notebooks]
    seconds, failed = {}, []
    for path in paths:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", str(path), "--nbval-current-env",
                                 "--nbval-sanitize-with", str(REPO / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
                                 "-q"], cwd=REPO, capture_output=True, text=True)
        seconds[path.stem] = time.perf_counter() - started
        if result.returncode != 0:
            failed.append(path.stem)
    seconds["total"] = sum(seconds.values())
    return {"seconds": seconds, "failed": failed}


def grading_throughput(n_submissions: int = 20):
    """Grade ``n_submissions`` honest submissions of one exercise with the course's pipeline (sandboxed and
    not) and with plain serial ``nbgrader autograde``, in this one process; return the figures
    ({'pipeline_s', 'serial_s', 'speedup', 'identical_scores', 's_per_submission', 'sandbox_overhead_s', ...})."""
    from bench import grading_throughput as throughput

    return throughput.run(n_submissions=n_submissions)
