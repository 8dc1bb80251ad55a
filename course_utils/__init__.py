"""PyTorch Foundations helpers: one small call per chore, so the notebooks stay about the idea.

    >>> from course_utils import get_device, load_fashion_mnist

Modules, each with one job (a module only imports those above it in this list). The learner's side: what
notebooks and graded kernels import.

* ``env``, ``atomic``: the environment variables the course reads; files written whole or not at all;
* ``device``: pick the CPU or an accelerator (``get_device``, ``device_report``);
* ``data``: the real Fashion-MNIST, offline and checksummed (``load_fashion_mnist``, ``make_loaders``);
* ``competition``: the case study's folder of CSVs and PNGs, submissions and their score;
* ``train``, ``plots``: the training loop helpers and the figures the lessons draw;
* ``networks``: a designed ``nn.Sequential`` as plain data the grader can rebuild;
* ``answers``, ``classifier``, ``compare``: what a learner's value becomes, the rule for a trained network,
  and the comparison rules the checks and the grader share;
* ``records``: the record file the checks write and the grader reads (its format, checked reading);
* ``checks``: what the exercises' test cells call in the learner's kernel (``check_*``, ``record``);
* ``constraint_rules`` and ``constraints``: stated constraints ("without @"), the rules of an answer cell and
  the guard that runs the learner's function; ``wording``: sentences the test cell, Validate and the grade share;
* ``grading/``: everything else, by audience (the instructor's pipeline, the runner, the learner's lab, the
  hub, authoring tools): see its ``__init__``.

The names below are imported on first use, so ``import course_utils.grading.pipeline.feedback`` (say) does not
pay for torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "get_device": "device",
    "device_report": "device",
    "CLASS_NAMES": "data",
    "FashionMNIST": "data",
    "load_fashion_mnist": "data",
    "make_loaders": "data",
    "export_competition_layout": "competition",
    "read_competition_layout": "competition",
    "write_submission": "competition",
    "score_submission": "competition",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(f"course_utils.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
