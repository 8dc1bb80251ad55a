"""Stated constraints in the learner's kernel: the answer cell's rules at once, then a guard on what really runs.

    >>> safe = constrained(matmul_by_broadcasting, "matmul", key="ex02_matmul/constraint")  # doctest: +SKIP
    >>> safe(A, B)            # the learner's function, run under the constraint  # doctest: +SKIP

:func:`constrained`, called by a test cell, checks the source of the cell that defines the function with
``course_utils.constraint_rules.answer_cell_problems`` (the one rule set both sides share), then runs every
call of the returned wrapper under a guard of three parts:

* a ``TorchDispatchMode`` sees every ATen operator executed, however it was reached (nested library calls,
  in-place variants, ``torch.ops``): each rule says which operators may run (``Rule.forbids_operator``: an
  allow-list for "without a matrix product", deny-lists for the sigmoid, convolutions and loss functions), and
  under "without autograd" no operator may compute with a tensor that requires gradients while gradients are
  recorded;
* a ``TorchFunctionMode`` sees the library function the learner called (so a message can say
  ``torch.matmul``, not only ``aten.mm``), stops the forbidden names and any conversion to NumPy;
* ``uses``: functions of earlier tasks the function may call are the course's own versions, run with the
  guard paused, so that a slip in one task never costs another.

The first violation raises :class:`~course_utils.checks.CheckFailure` naming the operator and the line of the
answer cell; the outcome is recorded under ``key`` (kind ``"constraint"``). The grader runs the same check on
the answer cell alone, in a fresh kernel (``course_utils.grading.pipeline.tasks``), so nothing else in the
notebook can change the verdict.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import sys
from collections.abc import Mapping

import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._python_dispatch import TorchDispatchMode

from course_utils.constraint_rules import RULES, Rule, answer_cell_problems, message, summary

__all__ = ["constrained", "RULES"]

_MISSING = object()
#: converting to NumPy leaves torch, where the guard cannot see what is computed
_TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
#: showing a tensor runs operators of its own (formatting), which are not the learner's computation
_DISPLAY = {torch.Tensor.__repr__, torch.Tensor.__str__, torch.Tensor.__format__}


def _learner_code(fn):
    """The learner's own code object behind ``fn`` (decorators such as ``@torch.no_grad()`` unwrapped)."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    if inspect.isclass(target):
        target = target.__init__
    return getattr(target, "__code__", None)


def _cell_source(fn) -> tuple[str | None, str | None]:
    """The whole source of the notebook cell (or file) that defines ``fn``, and its file name."""
    code = _learner_code(fn)
    if code is None:
        return None, None
    lines = linecache.getlines(code.co_filename)
    return ("".join(lines) if lines else None), code.co_filename


def _passed_name(fn, caller) -> str:
    """The name the test cell passed ``fn`` under (``constrained(log_sigmoid, ...)``), when that name holds ``fn``
    in the learner's namespace; else ``fn.__name__``."""
    fallback = getattr(fn, "__name__", None) or repr(fn)
    target = inspect.unwrap(fn) if callable(fn) else fn
    namespace = getattr(target.__init__ if inspect.isclass(target) else target, "__globals__", {})
    try:
        source = "".join(linecache.getlines(caller.f_code.co_filename))
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and node.lineno <= caller.f_lineno <= node.end_lineno
                and node.args
                and isinstance(node.args[0], ast.Name)
                and namespace.get(node.args[0].id) is fn
            ):
                return node.args[0].id
    except Exception:  # no source (exec'd code): the function's own name
        pass
    return fallback


def _torch_name(func) -> str:
    """A learner-readable dotted name of a torch function (``torch.mm``, ``torch.Tensor.sigmoid``)."""
    name, short = resolve_name(func), getattr(func, "__name__", None)
    if not name:
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else repr(func)
    if short and name.rsplit(".", 1)[-1] != short and short not in ("__get__", "__set__"):
        name = f"{name.rsplit('.', 1)[0]}.{short}"  # aliases: resolve_name(torch.mm) is "torch.spmm"
    return name.removesuffix(".__get__").removesuffix(".__set__")


def _requires_grad(values) -> bool:
    for value in values:
        if isinstance(value, torch.Tensor):
            if value.requires_grad:
                return True
        elif isinstance(value, (list, tuple)) and _requires_grad(value):
            return True
    return False


#: rules -> {ATen operator: the first rule that forbids it, or None}, shared by every guarded call of the kernel
_VERDICTS: dict[tuple, dict] = {}


class _Guard:
    """One guarded call: the rules, the learner's cell, the library function in progress, what was stopped."""

    def __init__(self, function: str, rules: list[Rule], filename: str | None):
        self.function, self.rules, self.filename = function, rules, filename
        self.grad_rule = next((r for r in rules if r.grad), None)
        self.paused, self.outer, self.violations = 0, None, []
        self.operators = _VERDICTS.setdefault(tuple(r.name for r in rules), {})  # operator -> rule forbidding it

    def where(self) -> tuple[int | None, str]:
        """The line of the learner's cell running now (its number and its text), from the innermost frame."""
        frame = sys._getframe(2)
        while frame is not None and self.filename is not None:
            if frame.f_code.co_filename == self.filename:
                return frame.f_lineno, linecache.getline(self.filename, frame.f_lineno).strip()
            frame = frame.f_back
        return None, ""

    def stop(self, what: str, rule: Rule | None, why: str = ""):
        """Remember and raise the violation (remembered in case the learner's code swallows the error)."""
        from course_utils.checks import CheckFailure

        line, text = self.where()
        said = message(self.function, what, rule, line, text, why)
        self.violations.append(said)
        raise CheckFailure(said)

    def operator_rule(self, func) -> Rule | None:
        try:
            return self.operators[func]
        except (KeyError, TypeError):
            schema = getattr(func, "_schema", None)
            rule = None
            if schema is not None:
                pointwise = torch.Tag.pointwise in getattr(func, "tags", ())
                view = bool(getattr(func, "is_view", False))
                rule = next((r for r in self.rules if r.forbids_operator(schema.name, pointwise, view)), None)
            try:
                self.operators[func] = rule
            except TypeError:
                pass
            return rule

    @property
    def through(self) -> str:
        return f" (through `{self.outer}`)" if self.outer else ""


class _FunctionGuard(TorchFunctionMode):
    """The library functions the learner's code calls (the outermost ones: nested calls are the dispatch guard's)."""

    def __init__(self, guard: _Guard):
        super().__init__()
        self.guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        guard = self.guard
        if guard.paused:
            return func(*args, **kwargs)
        name = _torch_name(func)
        if func in _TO_NUMPY:
            guard.stop(
                f"converts a tensor to NumPy (`{name}`)",
                None,
                "a constrained answer computes with torch alone, where the check can see it",
            )
        rule = next((r for r in guard.rules if r.forbids(name.rsplit(".", 1)[-1])), None)
        if rule is not None:
            guard.stop(f"calls `{name}`", rule)
        if func in _DISPLAY:
            guard.paused += 1
            try:
                return func(*args, **kwargs)
            finally:
                guard.paused -= 1
        outer, guard.outer = guard.outer, guard.outer or name
        try:
            return func(*args, **kwargs)
        finally:
            guard.outer = outer


class _DispatchGuard(TorchDispatchMode):
    """Every ATen operator that runs, nested and in-place ones included."""

    def __init__(self, guard: _Guard):
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        guard = self.guard
        if not guard.paused:
            rule = guard.operator_rule(func)
            if rule is not None:
                guard.stop(f"runs the operator `{func.overloadpacket}`{guard.through}", rule)
            if (
                guard.grad_rule is not None
                and torch.is_grad_enabled()
                and (_requires_grad(args) or _requires_grad(kwargs.values()))
            ):
                guard.stop(
                    f"computes with a tensor that requires gradients (`{func.overloadpacket}`{guard.through})",
                    guard.grad_rule,
                )
        return func(*args, **kwargs)


def _provided(guard: _Guard, name: str, implementation):
    """The course's version of an earlier task's function, run with the guard paused (it is not the learner's)."""

    @functools.wraps(implementation)
    def course_version(*args, **kwargs):
        guard.paused += 1
        try:
            return implementation(*args, **kwargs)
        finally:
            guard.paused -= 1

    course_version.__name__ = name
    return course_version


def constrained(fn, *rules: str, key: str | None = None, uses=None, require=()):
    """``fn`` wrapped so that each call runs under the rules; fails at once if its cell breaks them statically.

        >>> safe = constrained(sigmoid_slope, "sigmoid", uses={"log_sigmoid": F.logsigmoid})  # doctest: +SKIP

    ``uses`` maps the names of earlier tasks' functions that ``fn`` may call to the course's own versions of
    them: during each call of the wrapper those names mean the course's versions (run unguarded), so this task
    is judged on its own answer cell. ``require`` lists the names ``fn`` must call. With ``key`` the outcome is
    recorded (kind ``constraint``): ``[]`` when nothing forbidden was seen, else the violation; the grader
    repeats the check on the submitted answer cell with these parameters.
    """
    from course_utils.checks import CheckFailure, record

    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown constraint rule(s) {unknown}; known: {sorted(RULES)}")
    provided = dict(uses) if isinstance(uses, Mapping) else uses or {}
    if not isinstance(provided, dict) or not all(isinstance(k, str) and callable(v) for k, v in provided.items()):
        raise TypeError("uses= maps a function's name to the course's version of it: {'log_sigmoid': F.logsigmoid}")
    name = _passed_name(fn, sys._getframe(1))
    params = {"function": name, "rules": list(rules), "uses": sorted(provided), "require": list(require)}

    def fail(said: str) -> CheckFailure:
        if key is not None:
            record(key, [said], kind="constraint", visible=True, **params)
        return CheckFailure(said)

    if not (inspect.isfunction(inspect.unwrap(fn)) if callable(fn) else False) and not inspect.isclass(fn):
        raise fail(
            f"`{name}` should be a function you define with `def` in its answer cell, not {type(fn).__name__}"
        ) from None
    source, filename = _cell_source(fn)
    if source is not None:
        problems = answer_cell_problems(source, name, rules, uses=sorted(provided), require=require)
        if problems:
            raise fail(summary(problems)) from None
    if key is not None:
        record(key, [], kind="constraint", visible=True, **params)
    guard_rules = [RULES[r] for r in rules]
    namespace = getattr(inspect.unwrap(fn), "__globals__", None) if not inspect.isclass(fn) else None
    namespace = namespace if namespace is not None else getattr(getattr(fn, "__init__", None), "__globals__", {})

    @functools.wraps(fn)
    def run(*args, **kwargs):
        guard = _Guard(name, guard_rules, filename)
        saved = {n: namespace.get(n, _MISSING) for n in provided}
        namespace.update({n: _provided(guard, n, impl) for n, impl in provided.items()})
        try:
            with _DispatchGuard(guard), _FunctionGuard(guard):
                result = fn(*args, **kwargs)
        except Exception:
            if guard.violations:
                raise fail(guard.violations[0]) from None
            raise
        finally:
            for n, old in saved.items():
                if old is _MISSING:
                    namespace.pop(n, None)
                else:
                    namespace[n] = old
        if guard.violations:  # raised inside, but the learner's code caught it
            raise fail(guard.violations[0]) from None
        return result

    return run
