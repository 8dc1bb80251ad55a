"""Stated constraints in the learner's kernel: the static rules at once, then a guard on every torch call.

    >>> safe = constrained(matmul_by_broadcasting, "matmul", key="ex02_matmul_by_broadcasting/constraint")  # doctest: +SKIP
    >>> safe(A, B)            # the learner's function, run under the constraint  # doctest: +SKIP

:func:`constrained`, called by a test cell, checks the source of the cell that defines the function with the
rules of ``course_utils.constraint_rules`` (the one rule set both sides share), then runs every call of the
returned wrapper under a :class:`torch.overrides.TorchFunctionMode` that raises
:class:`~course_utils.checks.CheckFailure` as soon as a forbidden torch function runs (or, for ``autograd``,
as soon as a tensor that requires gradients takes part). The outcome is recorded under ``key`` (kind
``"constraint"``); the grader repeats the static check on the submitted notebook, where the kernel cannot
interfere, so patching this module inside the kernel earns nothing.
"""
from __future__ import annotations

import functools
import inspect
import linecache

import torch
from torch.overrides import TorchFunctionMode, resolve_name

from course_utils.constraint_rules import (
    RULES,
    Rule,
    _parse,
    cell_problems,
    defining_cells,
    global_references,
    integrity_problems,
    message,
    notebook_problems,
    python_source,
)

__all__ = ["constrained", "RULES", "cell_problems", "integrity_problems", "defining_cells", "notebook_problems",
           "python_source"]

def _cell_source(fn) -> str | None:
    """The whole source of the notebook cell (or file) that defines ``fn``, or None."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)
    return "".join(lines) if lines else None


def _torch_name(func) -> str:
    """A learner-readable dotted name of a torch function (``torch.mm``, ``torch.Tensor.sigmoid``)."""
    name, short = resolve_name(func), getattr(func, "__name__", None)
    if not name:
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else repr(func)
    if short and name.rsplit(".", 1)[-1] != short:  # aliases: resolve_name(torch.mm) is "torch.spmm"
        name = f"{name.rsplit('.', 1)[0]}.{short}"
    return name


def _requires_grad(values) -> bool:
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            if value.requires_grad:
                return True
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return False


class _Guard(TorchFunctionMode):
    """Fails the first forbidden torch call (and remembers it, in case the learner's code swallows the error)."""

    def __init__(self, function: str, rules: list[Rule]):
        super().__init__()
        self.function, self.rules, self.violations = function, rules, []
        self.grad = any(rule.grad for rule in rules)
        self.verdicts: dict = {}   # func -> (display name, first rule that forbids it, or None)

    def _verdict(self, func):
        try:
            return self.verdicts[func]
        except (KeyError, TypeError):
            name = _torch_name(func)
            forbidding = next((r for r in self.rules if r.forbids(name) or r.forbids(resolve_name(func) or "")), None)
            verdict = (name, forbidding)
            try:
                self.verdicts[func] = verdict
            except TypeError:  # unhashable: not cached
                pass
            return verdict

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name, rule = self._verdict(func)
        what = None
        if rule is not None:
            what = f"called `{name}`"
        elif self.grad and (_requires_grad(args) or _requires_grad(kwargs.values()) or kwargs.get("requires_grad")):
            rule = next(r for r in self.rules if r.grad)
            what = f"computed with a tensor that requires gradients (in `{name}`)"
        if what:
            said = message(self.function, what, rule)
            self.violations.append(said)
            from course_utils.checks import CheckFailure
            raise CheckFailure(said)
        return func(*args, **kwargs)


def constrained(fn, *rules: str, key: str | None = None, uses=(), require=()):
    """``fn`` wrapped so that each call runs under the rules; fails at once if its cell breaks them statically.

        >>> safe = constrained(sigmoid, "sigmoid", key="ex06_sigmoid/constraint")  # doctest: +SKIP

    ``uses`` lists other functions ``fn`` may call (constrained functions of earlier tasks, checked the same
    way); ``require`` lists those it must call. With ``key`` the outcome is recorded (kind ``constraint``):
    ``[]`` when nothing forbidden was seen, else the violations; the grader repeats the static check on the
    submitted notebook with these parameters.
    """
    from course_utils.checks import CheckFailure, record

    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown constraint rule(s) {unknown}; known: {sorted(RULES)}")
    name = getattr(fn, "__name__", None) or repr(fn)
    uses = [getattr(u, "__name__", u) for u in uses]
    params = {"function": name, "rules": list(rules), "uses": list(uses), "require": list(require)}

    def fail(message: str) -> CheckFailure:
        if key is not None:
            record(key, [message], kind="constraint", visible=True, **params)
        return CheckFailure(message)

    if not inspect.isfunction(fn) and not inspect.isclass(fn):
        raise fail(f"`{name}` should be a function you define with `def` in its answer cell, not "
                   f"{type(fn).__name__}") from None
    source = _cell_source(fn.__init__ if inspect.isclass(fn) else fn)
    if source is not None:
        problems = cell_problems(source, name, rules, allowed=uses)
        if not problems and require:
            tree, python = _parse(source)
            missing = [r for r in require if tree is not None and r not in global_references(python)]
            problems = [message(name, f"must use your `{r}` (the task asks for it)") for r in missing]
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise fail(problems[0] + more) from None
    if key is not None:
        record(key, [], kind="constraint", visible=True, **params)
    guard_rules = [RULES[r] for r in rules]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        guard = _Guard(name, guard_rules)
        try:
            with guard:
                result = fn(*args, **kwargs)
        except Exception:
            if guard.violations:
                raise fail(guard.violations[0]) from None
            raise
        if guard.violations:  # raised inside, but the learner's code caught it
            raise fail(guard.violations[0]) from None
        return result

    return run
