"""What the exercises' test cells call, in the learner's own kernel: checks that teach, and ``record``.

    >>> from course_utils.checks import check_tensor
    >>> check_tensor(torch.ones(2), torch.ones(2))
    ✔ result: passed

Two jobs, kept apart on purpose:

* **Teach** (visible tests): ``check_tensor``, ``check_scalar``, ``check_at_least``, ``check_grad``,
  ``check_grad_fn``, ``check_module`` and ``check_classifier`` compare the learner's answer with an expected one and
  either print
  a one-line confirmation or raise :class:`CheckFailure` with a short message saying what is wrong and what
  to try (never a bare ``assert``). In Jupyter the failure shows the learner's cell and the message, not
  this library's frames.
* **Guard** (hidden tests): ``record(key, value)`` only stores the learner's value in the file named by
  ``COURSE_RECORD_FILE``. It never judges and never sees an expected value. The grader, in its own trusted
  process, compares the file with the solution notebook's records (``course_utils.grading.pipeline.verdicts``).

**One rule for both sides.** Each check turns the answer into plain data with ``answers.answer`` and judges
that with ``compare.judge``; called with ``key=`` it records the same plain data together with its rule
(the expected value, tolerances, name and hint). The grader applies ``compare.judge`` to the recorded
answer with the rule recorded by the *solution* notebook, so the grade says what the notebook said.

Keys are ``"<grade_id>/<label>"``: the grade id of the nbgrader test cell, then a label for the test.
Importing this module in IPython also makes an unanswered task (nbgrader's ``raise NotImplementedError()``
stub) say which function to write.
"""

from __future__ import annotations

import linecache
import os
import sys
import types
import warnings
from pathlib import Path

import torch

from course_utils import records as record_file
from course_utils.answers import answer, as_number, describe, problem_marker
from course_utils.classifier import classifier_report
from course_utils.compare import expected_tensor, format_number, judge, with_hint
from course_utils.wording import unanswered

#: the environment variable naming the record file (set by the grader only)
RECORD_ENV = record_file.ENV

__all__ = [
    "CheckFailure",
    "check_tensor",
    "check_scalar",
    "check_at_least",
    "check_grad",
    "check_grad_fn",
    "check_module",
    "check_classifier",
    "record",
]
_HERE = {__file__, *(sys.modules[f"course_utils.{name}"].__file__ for name in ("compare", "answers", "classifier"))}


class CheckFailure(AssertionError):
    """A check failed; the message says what is wrong and, often, what to try.

    >>> raise CheckFailure("result has shape (2,), expected (3,)")  # doctest: +SKIP
    """

    def _render_traceback_(self):
        """What IPython shows: the learner's frames and the message, without this library's frames."""
        return _learner_traceback(self)


def _passed(name: str) -> None:
    print(f"✔ {name}: passed")


# ---------------------------------------------------------------- recording (guard)


_RECORDS: dict = {}
_RECORD_PATH: list = [None]


def _size(value) -> int:
    """About how many bytes plain data takes in a record file (tensors by their elements, text by its length)."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            stack += item
        else:
            total += 8
    return total


def _bounded(value, params: dict | None = None, used: int = 0):
    """``value``, or a problem marker when it (with its rule) is more than one record may hold, or more than the
    record file has room left for: a big answer then fails its own check with a sentence, in the kernel and in
    the grade alike, instead of making the grader refuse the whole file."""
    size = _size(value) + (_size(params) if params else 0)
    mib = size / 2**20
    if size > record_file.MAX_ENTRY_BYTES:
        return problem_marker(
            f"{{name}} is too large to check: about {mib:.0f} MiB, over the "
            f"{record_file.MAX_ENTRY_BYTES // 2**20} MiB one check may record (is it the result "
            "asked for, and not, say, the whole data set?)"
        )
    if used + size > record_file.MAX_KERNEL_BYTES:
        return problem_marker(
            f"{{name}} could not be recorded: the notebook's checks have recorded "
            f"{record_file.MAX_KERNEL_BYTES // 2**20} MiB already (recorded values are too large)"
        )
    return value


def _store(key: str, kind: str, value, params: dict) -> None:
    """Write ``value`` (already plain data) under ``key`` if recording is on (within the record file's room)."""
    path = os.environ.get(RECORD_ENV, "").strip()
    if not path:
        return
    if _RECORD_PATH[0] != path:
        _RECORDS.clear()
        _RECORD_PATH[0] = path
    params = answer("value", params)
    if _size(params) > record_file.MAX_ENTRY_BYTES // 4:  # the grader reads the rule from the solution's record
        params = {k: v for k, v in params.items() if _size(v) <= 2**20}
    used = sum(_size(entry) for k, entry in _RECORDS.items() if k != key)
    if used + _size(value) + _size(params) > record_file.MAX_KERNEL_BYTES:
        value = _bounded(value, None, used + _size(params))
    _RECORDS[key] = {"kind": kind, "value": value, "params": params}
    record_file.write(Path(path), _RECORDS)


def record(key: str, value, *, kind: str = "tensor", **params) -> None:
    """Store the learner's ``value`` under ``key`` for the trusted grader (no-op unless grading).

        >>> record("ex01_make_tensor/hidden_shape", torch.zeros(2, 3))

    The value is stored as ``answers.answer(kind, value)``: plain data that ``torch.load(weights_only=True)``
    reads, whatever the value is. Recording happens only when the environment variable
    ``COURSE_RECORD_FILE`` names a file; each call rewrites that file atomically. ``params`` (tolerances and
    the like) are taken from the solution notebook's records when grading, never from the learner's.
    """
    _valid(key, kind)
    if os.environ.get(RECORD_ENV, "").strip():
        _store(key, kind, _bounded(answer(kind, value)), params)


_valid = record_file.check_key


# ---------------------------------------------------------------- teaching checks


def _check(kind: str, value, key: str | None, rule: dict, passed: str) -> None:
    """Record the plain ``value`` with its ``rule`` (when keyed), judge it, report."""
    __tracebackhide__ = True
    value = _bounded(value, rule)
    if key is not None:
        _valid(key, kind)
        _store(key, kind, value, {**rule, "visible": True})
    problem = judge(kind, value, reveal=True, **rule)
    if problem:
        raise CheckFailure(problem) from None
    _passed(passed)


def check_tensor(
    actual,
    expected,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_dtype: bool = True,
    check_device: bool = False,
    name: str = "result",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail with a clear message unless ``actual`` is a tensor close to ``expected``.

        >>> check_tensor(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
        ✔ result: passed

    Tolerances left out follow ``torch.testing.assert_close`` for the dtype; integers and bools compare
    exactly (rules: ``course_utils.compare``). Every answer must be a CPU tensor (``check_device`` is kept
    for compatibility).
    """
    __tracebackhide__ = True
    rule = dict(
        expected=expected_tensor(expected),
        rtol=rtol,
        atol=atol,
        equal_nan=equal_nan,
        check_dtype=check_dtype,
        name=name,
        hint=hint,
    )
    _check("tensor", answer("tensor", actual), key, rule, name)


def check_scalar(
    actual,
    expected: float,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    name: str = "result",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail unless ``actual`` is a number (Python, NumPy or a one-element tensor) close to ``expected``.

        >>> check_scalar(0.1 + 0.2, 0.3)
        ✔ result: passed

    Two integers compare exactly; otherwise as float64 (default rtol 1e-7, atol 1e-7).
    """
    __tracebackhide__ = True
    number = as_number(expected)
    if number is None:
        raise TypeError(f"check_scalar's expected value must be a number, not {describe(expected)}.")
    rule = dict(expected=number, rtol=rtol, atol=atol, equal_nan=equal_nan, name=name, hint=hint)
    _check("scalar", answer("scalar", actual), key, rule, name)


def check_at_least(actual, minimum: float, *, name: str = "result", hint: str | None = None) -> None:
    """Fail unless ``actual`` is a number of at least ``minimum`` (feedback only: it records nothing).

    >>> check_at_least(0.91, 0.8, name="validation accuracy")
    ✔ validation accuracy: passed
    """
    __tracebackhide__ = True
    number = as_number(actual)
    if number is None:
        raise CheckFailure(with_hint(f"{name} should be a number, but it is {describe(actual)}.", hint)) from None
    if not number >= minimum:
        raise CheckFailure(
            with_hint(f"{name} is {format_number(number)}, it should be at least {format_number(minimum)}.", hint)
        ) from None
    _passed(name)


def check_grad(
    tensor,
    expected,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_dtype: bool = True,
    name: str = "x",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail unless ``tensor.grad`` exists and is close to ``expected`` (same rules as ``check_tensor``).

        >>> x = torch.ones(2, requires_grad=True); (3 * x).sum().backward(); check_grad(x, [3.0, 3.0])
        ✔ x.grad: passed

    An ``expected`` given as numbers (not a tensor) is a tensor of the default float dtype (float32).
    """
    __tracebackhide__ = True
    expected = expected_tensor(expected)
    if not (expected.is_floating_point() or expected.is_complex()):
        expected = expected.to(torch.get_default_dtype())
    rule = dict(
        expected=expected, rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype, name=name, hint=hint
    )
    _check("grad", answer("grad", tensor), key, rule, f"{name}.grad")


def _autograd_gradient(fn, inputs: tuple) -> tuple:
    leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    out = fn(*leaves)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError(f"fn must return a one-element tensor, it returned {describe(out)}.")
    return torch.autograd.grad(out, leaves, allow_unused=True)


def _finite_difference(fn, x: torch.Tensor, others: tuple, index: int, eps: float) -> torch.Tensor:
    """Central differences of fn with respect to inputs[index], in float64."""
    args = [t.detach().double().clone() for t in others]
    base = x.detach().double().clone()
    grad = torch.zeros_like(base)
    flat, gflat = base.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        args[index] = base
        plus = fn(*args).item()
        flat[i] = old - eps
        minus = fn(*args).item()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_grad_fn(
    grad_fn,
    fn,
    inputs,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    eps: float = 1e-6,
    name: str = "your gradient",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail unless ``grad_fn(*inputs)`` equals the gradient of scalar ``fn`` by autograd and finite differences.

        >>> check_grad_fn(lambda x: 2 * x, lambda x: (x ** 2).sum(), (torch.tensor([1.0, -2.0]),))
        ✔ your gradient: passed

    ``grad_fn`` returns one gradient tensor per input (a bare tensor when there is one input).
    """
    __tracebackhide__ = True
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    reference = _autograd_gradient(fn, inputs)
    rule = dict(
        expected=[expected_tensor(torch.zeros_like(x) if g is None else g) for x, g in zip(inputs, reference)],
        numeric=[_finite_difference(fn, x, inputs, i, eps) for i, x in enumerate(inputs)],
        rtol=rtol,
        atol=atol,
        numeric_rtol=1e-3,
        numeric_atol=1e-5,
        name=name,
        hint=hint,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grads = grad_fn(*[x.detach().clone() for x in inputs])
    except Exception as error:  # the learner's function failed: say so, and keep its traceback as the cause
        if isinstance(error, NotImplementedError) and not error.args:
            raise  # nbgrader's stub: the task is not written yet, said in the one wording every side uses
        message = f"{{name}} raised {type(error).__name__}: {str(error)[:200]}"
        if key is not None:
            _valid(key, "grad_fn")
            _store(key, "grad_fn", problem_marker(message), {**rule, "visible": True})
        raise CheckFailure(with_hint(message.replace("{name}", name), hint)) from error
    _check("grad_fn", answer("grad_fn", grads), key, rule, name)


def check_module(
    module,
    *,
    layer_types=None,
    n_params: int | None = None,
    sample_input=None,
    output_shape=None,
    name: str = "your module",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail unless ``module`` is an ``nn.Module`` with these leaf layer types, parameter count and output shape.

        >>> check_module(nn.Linear(3, 2), layer_types=["Linear"], n_params=8)
        ✔ your module: passed

    Layer types are the class names of the leaf modules in order, e.g. ``["Linear", "ReLU", "Linear"]``.
    """
    __tracebackhide__ = True
    expected = {
        "layers": [[t, None] for t in layer_types] if layer_types is not None else None,
        "n_params": n_params,
        "output_shape": list(output_shape) if output_shape is not None else None,
    }
    _check(
        "module",
        answer("module", module, sample_input=sample_input),
        key,
        dict(expected=expected, name=name, hint=hint),
        name,
    )


def check_classifier(
    model,
    *,
    min_accuracy: float = 0.0,
    max_params: int | None = None,
    required_layers=(),
    input_shape=(28, 28),
    name: str = "your network",
    hint: str | None = None,
    key: str | None = None,
) -> None:
    """Fail unless ``model`` is a network the grader can rebuild, within the spec, reaching ``min_accuracy``.

        >>> check_classifier(build_classifier(), max_params=110_000)  # the design only  # doctest: +SKIP
        ✔ your network: passed
        >>> check_classifier(trained, max_params=110_000, min_accuracy=0.8)  # doctest: +SKIP
        ✔ your network: passed (test accuracy 0.853)

    ``model`` is an ``nn.Sequential`` of standard layers (``course_utils.networks``). The check is the grader's
    own (``course_utils.classifier``): the network is rebuilt from its description, checked for the parameter
    budget, the ``required_layers`` and the output shape ``(batch, 10)`` for inputs ``(batch, *input_shape)``,
    given the trained weights and, when ``min_accuracy`` is above 0, measured on the 10,000 Fashion-MNIST
    test images.
    """
    __tracebackhide__ = True
    rule = dict(
        architecture="sequential",
        max_params=max_params,
        required_layers=list(required_layers),
        input_shape=[int(n) for n in input_shape],
        min_accuracy=float(min_accuracy),
        name=name,
        hint=hint,
    )
    value = _bounded(answer("classifier", model), rule)
    if key is not None:
        _valid(key, "classifier")
        _store(key, "classifier", value, {**rule, "visible": True})
    problem, accuracy = classifier_report(value, rule, name=name)
    if problem:
        raise CheckFailure(with_hint(problem, hint)) from None
    print(f"✔ {name}: passed" + (f" (test accuracy {accuracy:.3f})" if accuracy is not None else ""))


# ---------------------------------------------------------------- what the learner sees in Jupyter


def _library_frame(tb) -> bool:
    return tb.tb_frame.f_code.co_filename in _HERE or bool(tb.tb_frame.f_locals.get("__tracebackhide__"))


def _without_library_frames(tb):
    kept = []
    while tb is not None:
        if not _library_frame(tb):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def _learner_traceback(error: BaseException) -> list[str]:
    """IPython's usual traceback of ``error`` (and of its cause), minus the frames of this library."""
    from IPython import get_ipython  # only called by IPython, so it is there

    shell = get_ipython()
    try:
        chain, link = [], error
        while link is not None and link not in chain:
            chain.append(link)
            link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
        for link in chain:
            link.__traceback__ = _without_library_frames(link.__traceback__) or link.__traceback__
    except Exception:  # never let the display of a failure fail
        pass
    return shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)


def _unanswered(tb) -> str | None:
    """The function whose body is still nbgrader's stub, when ``tb`` ends at that stub (else None)."""
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
    if line != "raise NotImplementedError()":
        return None
    if code.co_name == "<module>":
        return (
            "This cell is not written yet: replace `raise NotImplementedError()` with your code, "
            "then run the cell again."
        )
    return unanswered(getattr(code, "co_qualname", code.co_name))


def _explain_unanswered(shell, etype, value, tb, tb_offset=None):
    """IPython's handler for NotImplementedError: a plain sentence for an unanswered task, else the usual."""
    message = _unanswered(tb) if not value.args else None
    if message:
        value.args = (message,)
        stb = [f"NotImplementedError: {message}"]
        value._render_traceback_ = lambda: stb
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    return None


def _install_unanswered_handler() -> None:
    """In IPython, explain nbgrader's ``raise NotImplementedError()`` stub instead of showing a traceback."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or (shell.custom_exceptions and shell.custom_exceptions != (NotImplementedError,)):
        return
    shell.set_custom_exc((NotImplementedError,), _explain_unanswered)


_install_unanswered_handler()
