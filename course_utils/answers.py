"""What a learner's value becomes before anyone judges it: plain data, the same on both sides.

    >>> answer("scalar", numpy.float32(0.5)), answer("tensor", [torch.ones(1, requires_grad=True)])
    (0.5, [tensor([1.])])

``answer(kind, value)`` is what ``checks.record`` stores and what the checks judge, so the grader (which
reads the record with ``torch.load(weights_only=True)``) judges exactly what the learner's check judged.
It never fails, whatever the value:

* tensors become detached, contiguous CPU copies (no subclass, no graph); a tensor that is not on the
  CPU, not strided (sparse, nested), quantized, or of a dtype outside ``DTYPES`` becomes a *problem*
  marker, a sentence naming its device, layout or dtype;
* NumPy scalars become Python numbers; lists, tuples and str-keyed dicts are kept (tuples as lists);
* anything else becomes a *what* marker: ``describe(value)``, shown in messages in place of the value;
* modules become ``module_summary`` dicts (for ``kind="classifier"``: ``networks.describe_sequential``'s
  layer list and weights, or a problem marker saying why it cannot be described), a tensor passed to
  ``check_grad`` becomes its ``.grad``.

The markers are one-key dicts (``{"__what__": text}``, ``{"__problem__": sentence}``); messages show their
text, never the dict.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from course_utils.networks import NetworkSpecError, describe_layers

#: the dtypes the checks compare (others fail with a message naming the dtype)
DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
)
_WHAT, _PROBLEM = "__what__", "__problem__"
#: the deepest nesting and the most values an answer keeps (beyond them it is described, not recorded)
MAX_NESTING, MAX_ITEMS = 8, 10_000


# ---------------------------------------------------------------- describing values and the markers


def describe(value) -> str:
    """A short name for what a value is, for messages (never fails, never shows internals).

    >>> describe([1, 2])
    'a list of length 2'
    """
    try:
        if value is None:
            return "None (did your function forget to `return`?)"
        if is_what(value):
            return value[_WHAT][:300]
        if is_problem(value):
            return "a value that could not be checked"
        if isinstance(value, torch.Tensor):
            where = "" if value.device.type == "cpu" else f" on the {value.device} device"
            layout = "" if value.layout == torch.strided else f" with layout {value.layout}"
            return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}{where}{layout}"
        if isinstance(value, (list, tuple)):
            return f"a {type(value).__name__} of length {len(value)}"
        if isinstance(value, dict):
            return f"a dict with {len(value)} keys"
        if isinstance(value, type):
            return f"the class {value.__name__} itself (not an instance of it)"
        if isinstance(value, nn.Module):
            return f"an nn.Module ({type(value).__name__})"
        module = type(value).__module__
        name = type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"
        if module == "numpy" and hasattr(value, "shape") and getattr(value, "ndim", 0):
            return f"a {name} of shape {tuple(value.shape)} and dtype {value.dtype}"
        if callable(value):
            return f"a function ({getattr(value, '__name__', name)}), not its result: did you forget to call it?"
        text = repr(value)
        return f"a {name} ({text[:40]}{'…' if len(text) > 40 else ''})"
    except Exception:
        return f"a {type(value).__name__}"


def what(text: str) -> dict:
    """The recorded stand-in for a value that is not of the kind asked for (``describe`` shows ``text``)."""
    return {_WHAT: str(text)[:300]}


def problem_marker(sentence: str) -> dict:
    """The recorded stand-in for a value with a defect stated in full; ``{name}`` is filled in by the judge."""
    return {_PROBLEM: str(sentence)[:500]}


def is_what(value) -> bool:
    """Whether ``value`` is a *what* marker."""
    return isinstance(value, dict) and set(value) == {_WHAT} and isinstance(value[_WHAT], str)


def is_problem(value) -> bool:
    """Whether ``value`` is a *problem* marker."""
    return isinstance(value, dict) and set(value) == {_PROBLEM} and isinstance(value[_PROBLEM], str)


def stated(value: dict, name: str) -> str:
    """A problem marker's sentence about the value called ``name``."""
    return value[_PROBLEM][:500].replace("{name}", name)


# ---------------------------------------------------------------- the plain form of each kind of answer


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy of ``value`` as a plain ``torch.Tensor`` (no subclass, no graph)."""
    with torch.no_grad():
        copy = value.detach().cpu().resolve_conj().resolve_neg().as_subclass(torch.Tensor)
        return copy.clone(memory_format=torch.contiguous_format)


def _tensor_answer(value: torch.Tensor):
    """A plain copy of a tensor, or a problem marker naming its device, layout or dtype."""
    try:
        if value.is_nested:
            return problem_marker("{name} is a nested tensor: return an ordinary tensor (torch.stack or torch.cat).")
        if value.layout != torch.strided:
            return problem_marker(
                f"{{name}} is a tensor with layout {value.layout}: the checks compare ordinary "
                "(strided) tensors; convert it with .to_dense()."
            )
        if value.device.type == "meta":
            return problem_marker(
                "{name} is a tensor on the meta device, which has a shape but no values: "
                "create it without device='meta'."
            )
        if value.device.type != "cpu":
            return problem_marker(
                f"{{name}} is on the {value.device} device: the checks and the grader work on "
                "the CPU; return it with .cpu()."
            )
        if value.is_quantized:
            return problem_marker("{name} is a quantized tensor: return it with .dequantize().")
        if value.dtype not in DTYPES:
            return problem_marker(
                f"{{name}} has dtype {value.dtype}, which the checks do not compare: convert it, e.g. with .float()."
            )
        return plain_tensor(value)
    except Exception as error:
        return problem_marker(f"{{name}} is a tensor that cannot be read ({type(error).__name__}).")


def _tree(value, tensors_only: bool, depth: int = 0, budget: list | None = None):
    """Plain data for ``value``: tensors, None, bool, int, float, complex, str, lists and str-keyed dicts.

    Containers nested deeper than ``MAX_NESTING`` or holding more than ``MAX_ITEMS`` values in all become a
    *what* marker, so a record file always stays within what the grader reads (grading/records.py).
    """
    budget = [MAX_ITEMS] if budget is None else budget
    if isinstance(value, torch.Tensor):
        return _tensor_answer(value)
    if value is None or type(value) in (bool, int, float, complex, str):
        return value
    if is_what(value) or is_problem(value):  # already plain: answer() is idempotent
        return dict(value)
    if type(value).__module__ == "numpy" and not getattr(value, "ndim", 1):  # a NumPy scalar: its Python value
        item = value.item()
        return item if type(item) in (bool, int, float, complex, str) else what(describe(value))
    for plain in (int, float, complex, str):  # subclasses of the built-ins (they could redefine __eq__)
        if isinstance(value, plain):
            return plain(value)
    container = isinstance(value, (list, tuple)) or (isinstance(value, dict) and not tensors_only)
    if not container:
        return what(describe(value))
    budget[0] -= len(value)
    if depth >= MAX_NESTING or budget[0] < 0:
        return what(describe(value) + (", nested too deeply" if depth >= MAX_NESTING else ", too large to check"))
    if isinstance(value, dict):
        return {str(k): _tree(v, tensors_only, depth + 1, budget) for k, v in value.items()}
    return [_tree(v, tensors_only, depth + 1, budget) for v in value]


def as_number(value):
    """``value`` as a Python int or float when it is one (or a one-element tensor or NumPy number), else None.

    >>> as_number(torch.tensor([2.5])), as_number("2.5"), as_number(True)
    (2.5, None, None)
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or isinstance(value, float):
            return int(value) if isinstance(value, int) else float(value)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                return None
            plain = _tensor_answer(value)
            if not isinstance(plain, torch.Tensor) or plain.numel() != 1 or plain.dtype == torch.bool:
                return None
            number = plain.item()
        elif type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1 and value.dtype.kind in "iuf":
            number = value.item()
        else:
            return None
        return number if type(number) in (int, float) else None
    except Exception:
        return None


def module_summary(module: nn.Module, sample_input=None) -> dict:
    """Leaf layers as [type name, parameter shapes], parameter count, state_dict, output (shape) on a sample.

    >>> module_summary(nn.Linear(3, 2))["n_params"]
    8
    """
    layers = [
        [type(m).__name__, [list(p.shape) for p in m.parameters(recurse=False)]]
        for m in module.modules()
        if not list(m.children())
    ]
    summary = {
        "layers": layers,
        "n_params": int(sum(p.numel() for p in module.parameters())),
        "output_shape": None,
        "output": None,
        "state_dict": {str(k): _tree(v, True) for k, v in module.state_dict().items()},
    }
    if sample_input is not None:
        with torch.no_grad():
            out = module(sample_input)
        summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        summary["output"] = _tree(out, True) if isinstance(out, torch.Tensor) else None
    return summary


def _module_answer(value, sample_input=None):
    if not isinstance(value, nn.Module):
        return what(describe(value))
    try:
        summary = module_summary(value)
    except Exception as error:
        return problem_marker(f"{{name}} cannot be inspected ({type(error).__name__}: {str(error)[:200]}).")
    if sample_input is None:
        return summary
    try:
        with torch.no_grad():
            out = value(sample_input)
    except Exception as error:
        shape = tuple(sample_input.shape) if isinstance(sample_input, torch.Tensor) else describe(sample_input)
        return problem_marker(
            f"calling {{name}} on a sample input of shape {shape} failed with "
            f"{type(error).__name__}: {str(error)[:200]}"
        )
    summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
    summary["output"] = _tree(out, True) if isinstance(out, torch.Tensor) else None
    return summary


def _grad_answer(value):
    if not isinstance(value, torch.Tensor):
        return what(describe(value))
    try:
        grad, requires_grad, is_leaf = value.grad, value.requires_grad, value.is_leaf
    except Exception as error:
        return problem_marker(f"{{name}}.grad cannot be read ({type(error).__name__}).")
    if grad is None:
        why = (
            "it does not require gradients: create it with requires_grad=True (or call .requires_grad_()) "
            "before computing with it"
            if not requires_grad
            else "it is not a leaf tensor: use the tensor you created, not one computed from it"
            if not is_leaf
            else "backward() was not called on a result computed from it"
        )
        return problem_marker(f"{{name}}.grad is None: {why}.")
    plain = _tensor_answer(grad)
    return problem_marker(plain[_PROBLEM].replace("{name}", "{name}.grad")) if is_problem(plain) else plain


def _network_answer(model: nn.Module):
    """``networks.describe_sequential(model)`` as plain data (a weight that is not a plain CPU tensor becomes a
    problem marker naming it), or a problem marker saying why the network has no description."""
    try:
        layers = describe_layers(model)
        return {
            "layers": _tree(layers, False),
            "state_dict": {str(k): _tree(v, True) for k, v in model.state_dict().items()},
        }
    except NetworkSpecError as error:
        return problem_marker(f"{{name}} cannot be rebuilt by the grader: {str(error)[:300]}.")
    except Exception as error:
        return problem_marker(f"{{name}} cannot be described ({type(error).__name__}: {str(error)[:200]}).")


def answer(kind: str, value, **options):
    """The plain form of a learner's ``value`` for a record of ``kind`` (see the module docstring).

    >>> answer("grad", torch.ones(2))
    {'__problem__': '{name}.grad is None: it does not require gradients: create it with ...'}
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "scalar":
                number = as_number(value)
                return what(describe(value)) if number is None else number
            if kind == "module":
                return _module_answer(value, options.get("sample_input"))
            if kind == "grad":
                return _grad_answer(value)
            if kind == "grad_fn":
                return (
                    [_tree(value, True)]
                    if isinstance(value, torch.Tensor)
                    else (_tree(value, True) if isinstance(value, (list, tuple)) else what(describe(value)))
                )
            if kind == "classifier":
                if isinstance(value, nn.Module):  # a network designed to a spec: its description
                    return _network_answer(value)
                if not isinstance(value, dict):
                    return what(describe(value))
                if set(value) == {"layers", "state_dict"}:  # a designed network (course_utils.networks)
                    return {
                        "layers": _tree(value["layers"], False),
                        "state_dict": answer("classifier", value["state_dict"]),
                    }
                return {str(k): _tree(v, True) for k, v in value.items()}
            return _tree(value, tensors_only=kind == "tensor")
        except Exception as error:  # a hostile object (broken __len__, __iter__, ...): describe, never crash
            return what(f"a {type(value).__name__} that cannot be read ({type(error).__name__})")
