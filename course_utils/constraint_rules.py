"""The rules of stated constraints ("without @", "without autograd"): pure AST and plain data, no torch.

    >>> answer_cell_problems("def f(a, b):\\n    return a @ b", "f", ["matmul"])[0]
    '`f` uses `@` (matrix multiplication) on line 2, which this task forbids (a built-in matrix product)'

A task that says "without X" names a **rule** of :data:`RULES` (``matmul``, ``sigmoid``, ``autograd``,
``convolution``, ``loss_functions``, or ``self_contained`` for "write it yourself"). A task is judged on its
**answer cell** alone, the same way in the learner's test cell and in the grade: the test cell's
``course_utils.constraints.constrained`` checks the cell's source with :func:`answer_cell_problems`, then runs
the function under a guard that sees every PyTorch operator it executes (the ATen operators of each rule
below); the grader runs the same check on the submitted answer cell (it only parses it, so it never imports
torch here), then runs the answer cell alone, with the task's test cell, in a fresh kernel of its own
(``course_utils.grading.pipeline.tasks``). Nothing else of the notebook takes part, so a scratch cell can
change no constrained task's grade.

The answer cell must:

1. use no forbidden operator or name: ``@``, or an attribute such as ``.matmul``, ``.sigmoid``,
   ``.backward`` (the rule's :attr:`Rule.names`, in-place variants such as ``addmm_`` included); for
   ``autograd``, make no tensor require gradients (``requires_grad=True``, ``.requires_grad_()``);
2. use no escape hatch: no ``getattr``/``eval``/``exec``/``compile``/``__import__``/``globals``/``vars``/
   ``setattr``/``open``, no private or dunder attribute (``torch._C``, ``__dict__``), no attribute that leads
   out of PyTorch or past the guard, whatever it is reached from (``torch.ops``, ``torch.overrides``,
   ``torch.utils``, ``torch.jit``; and the modules torch re-exports: ``torch.builtins``, ``torch.importlib``,
   ``torch.sys``, ``torch.os``, ``F.np``...), no IPython magic, no import other than ``import torch``,
   ``import math``, ``import torch.nn as nn``, ``import torch.nn.functional as F`` (or ``from torch import nn``);
3. be self-contained: every name it uses is defined in the cell itself, is one of Python's safe built-ins,
   one of the modules ``torch``, ``nn``, ``F``, ``math``, or a function the test cell provides (``uses``:
   the course's own version of an earlier task's function); the function is defined by a ``def`` (or
   ``class``) at the top level of the cell.
"""

from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass, field

__all__ = [
    "Rule",
    "RULES",
    "answer_cell_problems",
    "cell_problems",
    "defining_cells",
    "python_source",
    "message",
    "summary",
    "ESCAPE_ATTRIBUTES",
    "SAFE_SUBMODULES",
]


@dataclass(frozen=True)
class Rule:
    """One stated constraint: what it forbids, in words, as names in the source and as ATen operators at run time.

    >>> RULES["matmul"].what, RULES["matmul"].forbids("addmm_"), RULES["sigmoid"].forbids("log1p")
    ('a built-in matrix product', True, False)
    """

    name: str
    what: str  # for messages: "... which this task forbids (a built-in matrix product)"
    names: frozenset = field(default_factory=frozenset)  # attribute / function names (torch.X, tensor.X, F.X, nn.X)
    patterns: tuple = ()  # regular expressions a forbidden name matches (e.g. any `*_loss`)
    operators: tuple = ()  # ast operator classes, e.g. (ast.MatMult,)
    grad: bool = False  # forbid computing with tensors that require gradients
    aten_denied: frozenset = field(default_factory=frozenset)  # ATen operators (base names) the guard stops
    aten_patterns: tuple = ()  # regular expressions a denied ATen operator's base name matches
    aten_allowed: frozenset | None = None  # when set, an allow-list: only these, element-wise operators and views

    def forbids(self, name: str) -> bool:
        """True when a function or attribute name (``addmm_``, ``sigmoid``) is one this rule forbids."""
        base = _base(name)
        return base in self.names or name in self.names or any(re.search(p, base) for p in self.patterns)

    def forbids_operator(self, op: str, pointwise: bool = False, view: bool = False) -> bool:
        """True when the ATen operator ``op`` (``aten::addmm_`` or ``addmm_``) may not run under this rule.

            >>> RULES["matmul"].forbids_operator("aten::mm"), RULES["matmul"].forbids_operator("aten::sum")
            (True, False)

        ``pointwise`` and ``view`` say whether the operator is element-wise or a view (the kernel asks torch);
        under an allow-list those are permitted.
        """
        base = _base(op.split("::")[-1])
        if base in self.aten_denied or any(re.search(p, base) for p in self.aten_patterns):
            return True
        if self.aten_allowed is None:
            return False
        return not (pointwise or view or base in self.aten_allowed)


def _base(name: str) -> str:
    """``addmm_`` -> ``addmm``: an in-place variant is judged as the operation it is (``__x__`` stays)."""
    return name[:-1] if name.endswith("_") and not name.endswith("__") and len(name) > 1 else name


_CONVOLUTIONS = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "LazyConv1d",
    "LazyConv2d",
    "LazyConv3d",
    "convolution",
    "conv_tbc",
}

#: what "without a built-in matrix product" lets run: besides element-wise operators and views (the kernel asks
#: torch which those are), reductions, creation, copies, joining and reshaping, indexing and sorting
MATMUL_ALLOWED_OPS = frozenset(
    {
        # reductions
        "sum",
        "mean",
        "prod",
        "nansum",
        "nanmean",
        "amax",
        "amin",
        "aminmax",
        "max",
        "min",
        "argmax",
        "argmin",
        "any",
        "all",
        "cumsum",
        "cumprod",
        "cummax",
        "cummin",
        "std",
        "var",
        "std_mean",
        "var_mean",
        "count_nonzero",
        "median",
        "nanmedian",
        "mode",
        "logcumsumexp",
        "logsumexp",
        # creation, random numbers, copies and dtypes
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "arange",
        "linspace",
        "logspace",
        "eye",
        "scalar_tensor",
        "lift_fresh_copy",
        "new_empty",
        "new_empty_strided",
        "new_zeros",
        "new_ones",
        "new_full",
        "fill",
        "zero",
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "randint",
        "randint_like",
        "randperm",
        "normal",
        "uniform",
        "bernoulli",
        "clone",
        "copy",
        "_to_copy",
        "_copy_from",
        "_copy_from_and_resize",
        "contiguous",
        "_local_scalar_dense",
        "resize",
        "set",
        "_unsafe_view",
        "item",
        "_assert_async",
        "_assert_scalar",
        "_functional_assert_async",
        "sym_constrain_range",
        # joining, repeating and reshaping
        "cat",
        "stack",
        "hstack",
        "vstack",
        "repeat",
        "repeat_interleave",
        "tile",
        "flip",
        "roll",
        "rot90",
        "tril",
        "triu",
        "diag_embed",
        "constant_pad_nd",
        "pad",
        "select_scatter",
        "slice_scatter",
        "diagonal_scatter",
        "as_strided_scatter",
        "_reshape_copy",
        "expand_copy",
        "view_copy",
        "permute_copy",
        # indexing, masking and sorting
        "index",
        "index_put",
        "_index_put_impl",
        "index_select",
        "index_add",
        "index_copy",
        "index_fill",
        "gather",
        "scatter",
        "scatter_add",
        "scatter_reduce",
        "masked_select",
        "masked_scatter",
        "take",
        "take_along_dim",
        "nonzero",
        "nonzero_static",
        "argwhere",
        "sort",
        "argsort",
        "topk",
        "kthvalue",
        "msort",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "searchsorted",
        "bucketize",
        "bincount",
        "histc",
        "isin",
        "equal",
        "is_nonzero",
        "is_same_size",
        "allclose",
    }
)

_LOG_SOFTMAX = {"log_softmax", "_log_softmax", "_log_softmax_backward_data", "special_log_softmax"}

#: every rule a task can name
RULES = {
    rule.name: rule
    for rule in [
        Rule(
            "matmul",
            "a built-in matrix product",
            frozenset(
                {
                    "matmul",
                    "mm",
                    "bmm",
                    "mv",
                    "dot",
                    "vdot",
                    "inner",
                    "outer",
                    "ger",
                    "einsum",
                    "tensordot",
                    "linear",
                    "bilinear",
                    "addmm",
                    "addmv",
                    "addbmm",
                    "baddbmm",
                    "addr",
                    "chain_matmul",
                    "multi_dot",
                    "vecdot",
                    "spmm",
                    "sspaddmm",
                    "smm",
                    "hspmm",
                    "linalg",
                    "Linear",
                    "LazyLinear",
                    "Bilinear",
                    "kron",
                    "cdist",
                    "embedding_bag",
                    "EmbeddingBag",
                    "scaled_dot_product_attention",
                    "multi_head_attention_forward",
                    "MultiheadAttention",
                    "matrix_power",
                    "__matmul__",
                    "__rmatmul__",
                    "__imatmul__",
                }
                | _CONVOLUTIONS
            ),
            operators=(ast.MatMult,),
            aten_allowed=MATMUL_ALLOWED_OPS,
        ),
        Rule(
            "sigmoid",
            "the library's sigmoid (or a function built on it)",
            frozenset(
                {
                    "sigmoid",
                    "expit",
                    "Sigmoid",
                    "logsigmoid",
                    "LogSigmoid",
                    "softplus",
                    "Softplus",
                    "silu",
                    "SiLU",
                    "glu",
                    "GLU",
                    "softmax",
                    "log_softmax",
                    "Softmax",
                    "LogSoftmax",
                    "Softmin",
                    "softmin",
                    "hardsigmoid",
                    "Hardsigmoid",
                    "logit",
                    "mish",
                    "Mish",
                    "logaddexp",
                    "logaddexp2",
                    "logsumexp",
                    "binary_cross_entropy_with_logits",
                    "BCEWithLogitsLoss",
                    "cross_entropy",
                    "CrossEntropyLoss",
                }
            ),
            aten_denied=frozenset(
                {
                    "sigmoid",
                    "sigmoid_backward",
                    "log_sigmoid",
                    "log_sigmoid_forward",
                    "log_sigmoid_backward",
                    "softplus",
                    "softplus_backward",
                    "silu",
                    "silu_backward",
                    "glu",
                    "glu_backward",
                    "glu_jvp",
                    "softmax",
                    "_softmax",
                    "_safe_softmax",
                    "_softmax_backward_data",
                    "special_softmax",
                    "_masked_softmax",
                    "hardsigmoid",
                    "hardsigmoid_backward",
                    "special_expit",
                    "mish",
                    "mish_backward",
                    "logaddexp",
                    "logaddexp2",
                    "logsumexp",
                    "special_logsumexp",
                    "binary_cross_entropy_with_logits",
                    "cross_entropy_loss",
                }
                | _LOG_SOFTMAX
            ),
        ),
        Rule(
            "autograd",
            "autograd (gradients computed by PyTorch)",
            frozenset(
                {
                    "backward",
                    "grad",
                    "autograd",
                    "enable_grad",
                    "func",
                    "vjp",
                    "jvp",
                    "jacobian",
                    "hessian",
                    "jacrev",
                    "jacfwd",
                    "vmap",
                    "gradcheck",
                    "retain_grad",
                    "grad_fn",
                    "Parameter",
                }
            ),
            grad=True,
        ),
        Rule(
            "convolution",
            "a built-in convolution or pooling layer",
            frozenset(_CONVOLUTIONS | {"unfold", "Unfold", "fold", "Fold", "im2col", "col2im"}),
            patterns=(r"^(\w*_)?conv(?!ert)", r"Conv(?!ert)", r"pool", r"Pool"),
            aten_denied=frozenset({"unfold", "unfold_backward", "im2col", "col2im"}),
            aten_patterns=(r"conv(?!ert)", r"pool"),
        ),
        Rule(
            "loss_functions",
            "a library loss function (or the log-softmax, log-sigmoid or softplus it is built from)",
            frozenset(
                {
                    "binary_cross_entropy",
                    "binary_cross_entropy_with_logits",
                    "cross_entropy",
                    "kl_div",
                    "log_softmax",
                    "LogSoftmax",
                    "logsigmoid",
                    "LogSigmoid",
                    "softplus",
                    "Softplus",
                }
            ),
            patterns=(r"_loss$", r"Loss$"),
            aten_denied=frozenset(
                {
                    "binary_cross_entropy",
                    "binary_cross_entropy_with_logits",
                    "kl_div",
                    "log_sigmoid",
                    "log_sigmoid_forward",
                    "log_sigmoid_backward",
                    "softplus",
                    "softplus_backward",
                }
                | _LOG_SOFTMAX
            ),
            aten_patterns=(r"_loss",),
        ),
        Rule("self_contained", "code from outside the answer cell"),
    ]
}

#: module names a constrained cell may use (bound by these imports: at the top of the notebook, or in the cell)
MODULES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "math": "math"}

#: Python built-ins a constrained cell may use
SAFE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "frozenset",
        "int",
        "isinstance",
        "issubclass",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "next",
        "pow",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "super",
        "property",
        "staticmethod",
        "classmethod",
        "object",
        "None",
        "True",
        "False",
        "NotImplemented",
        "Ellipsis",
        "type",
        "Exception",
        "ValueError",
        "TypeError",
        "IndexError",
        "KeyError",
        "RuntimeError",
        "ZeroDivisionError",
        "ArithmeticError",
        "AssertionError",
        "NotImplementedError",
        "StopIteration",
        "OverflowError",
    }
)

#: names that run code from strings or change namespaces behind the reader's back
ESCAPE_NAMES = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "setattr",
        "delattr",
        "getattr",
        "open",
        "get_ipython",
        "__builtins__",
        "builtins",
        "input",
        "breakpoint",
        "memoryview",
    }
)
#: attributes that lead out of PyTorch, past the guard, or into the interpreter, whatever they are reached from:
#: compiled operators and their registries, the torch-function and dispatch machinery, serialisation, compilers,
#: the modules torch and F re-export (``torch.sys``, ``torch.builtins``, ``F.np``...), frames and code objects.
#: A unit test keeps this in step with the modules torch really exposes.
ESCAPE_ATTRIBUTES = frozenset(
    {
        "ops",
        "library",
        "overrides",
        "utils",
        "jit",
        "fx",
        "hub",
        "load",
        "save",
        "export",
        "onnx",  # the exporter: torch.export and dynamo underneath
        "compile",
        "compiler",
        "classes",
        "package",
        "multiprocessing",
        "distributed",
        "serialization",
        "storage",
        "backends",
        "profiler",
        "futures",
        "monitor",
        "cuda",
        "mps",
        "xpu",
        "mtia",
        "accelerator",
        "ao",
        "quantization",
        "quantized",
        "qat",
        "quantizable",
        "intrinsic",
        "parallel",
        "cpp",
        "from_file",
        "numpy",
        "np",
        "builtins",
        "importlib",
        "sys",
        "os",
        "ctypes",
        "inspect",
        "types",
        "glob",
        "platform",
        "threading",
        "functools",
        "dataclasses",
        "textwrap",
        "warnings",
        "subprocess",
        "pickle",
        "marshal",
        "gc",
        "operator",
        "weakref",
        "f_globals",
        "f_locals",
        "f_back",
        "f_builtins",
        "f_code",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "func_globals",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_hook",
    }
)
#: submodules of torch a constrained cell may reach (all others are in ESCAPE_ATTRIBUTES or private)
SAFE_SUBMODULES = frozenset(
    {
        "torch",
        "nn",
        "functional",
        "linalg",
        "special",
        "fft",
        "init",
        "optim",
        "lr_scheduler",
        "swa_utils",
        "math",
        "random",
        "testing",
        "distributions",
        "quasirandom",
        "signal",
        "windows",
        "nested",
        "masked",
        "sparse",
        "common_types",
        "parameter",
        "attention",
        "amp",
        "cpu",
        "autograd",
        "func",
        "grad",
        "return_types",
        "version",
        "torch_version",
        "modules",
    }
)

SYMBOLS = {ast.MatMult: "`@` (matrix multiplication)"}


def message(
    function: str, what: str, rule: Rule | None = None, line: int | None = None, code: str = "", why: str = ""
) -> str:
    """One problem, as both sides say it: what the function does, where (the line and its code), which rule forbids it.

    >>> message("f", "calls `torch.mm`", RULES["matmul"], 2, "return torch.mm(A, B)")
    '`f` calls `torch.mm` on line 2 (`return torch.mm(A, B)`), which this task forbids (a built-in matrix product)'
    """
    code = code if len(code) <= 70 else code[:67] + "..."
    where = (f" on line {line}" if line else "") + (f" (`{code}`)" if code else "")
    why = f", which this task forbids ({rule.what})" if rule is not None else (f": {why}" if why else "")
    return f"`{function}` {what}{where}{why}"


def summary(problems: list[str]) -> str:
    """What the test cell raises and the grade says about a cell with these problems: the first, and a count.

    >>> summary(["`f` uses `eval` on line 2", "`f` uses `exec` on line 3"])
    '`f` uses `eval` on line 2 (and 1 more problem)'
    """
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")


def python_source(source: str) -> str:
    """A cell's source as the kernel runs it: IPython syntax (magics, ``!``) turned into plain Python.

    >>> python_source("%matplotlib inline")
    "get_ipython().run_line_magic('matplotlib', 'inline')\\n"
    """
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # no IPython, or IPython refuses the cell (then the kernel would not run it either)
        return source


def _parse(source: str):
    try:
        python = python_source(source)
        return ast.parse(python), python
    except (SyntaxError, ValueError):
        return None, None


def _all_tables(table):
    yield table
    for child in table.get_children():
        yield from _all_tables(child)


def module_bindings(python: str) -> set[str]:
    """Names a cell binds at module level (assignments, defs, imports, ``global`` declarations that assign)."""
    top = symtable.symtable(python, "<cell>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    for table in _all_tables(top):
        if table is not top:
            bound |= {s.get_name() for s in table.get_symbols() if s.is_declared_global() and s.is_assigned()}
    return bound


def global_references(python: str) -> set[str]:
    """Names a cell reads that resolve to module level (or built-ins) in some scope."""
    refs = set()
    for table in _all_tables(symtable.symtable(python, "<cell>", "exec")):
        for s in table.get_symbols():
            if s.is_referenced() and (table.get_type() == "module" or s.is_global()):
                refs.add(s.get_name())
    return refs


def _magics(tree) -> list[str]:
    """IPython magics and shell commands of a transformed cell (IPython turns them into ``get_ipython()`` calls)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"
        ):
            first = node.args[0] if node.args else None
            label = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else "?"
            found.append(label if node.func.attr in ("run_line_magic", "run_cell_magic") else f"!{label}")
    return found


def _dotted(node) -> str:
    """An attribute as written (``torch.linalg.inv``, ``z.clone().requires_grad_``), shortened if long."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else "..." + text[-57:]


def _canonical_import(node, alias) -> bool:
    """True for ``import torch``, ``import math``, ``import torch.nn as nn``, ``from torch import nn``,
    ``import torch.nn.functional as F``: an import that binds one of :data:`MODULES` to its own module."""
    if isinstance(node, ast.Import):
        bound = alias.asname or alias.name
        return bound in MODULES and MODULES[bound] == alias.name
    bound = alias.asname or alias.name
    return node.level == 0 and bound in MODULES and f"{node.module}.{alias.name}" == MODULES[bound]


def _root(node) -> str | None:
    """The name an attribute or subscript chain starts from (``torch`` for ``torch.Tensor.sum``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_false(node) -> bool:
    return isinstance(node, ast.Constant) and node.value in (False, None)


def cell_problems(source: str, function: str, rules, allowed=()) -> list[str]:
    """What breaks the rules in the answer cell that defines ``function`` (``[]`` when it obeys them).

        >>> cell_problems("def f(a, b):\\n    return a @ b\\n", "f", ["matmul"])
        ['`f` uses `@` (matrix multiplication) on line 2, which this task forbids (a built-in matrix product)']

    ``allowed`` names the functions the test cell provides (the course's own versions of earlier tasks').
    """
    rules = [RULES[r] for r in rules]
    tree, python = _parse(source)
    if tree is None:
        return [message(function, "is defined in a cell that is not valid Python")]
    problems = []
    if _magics(tree):
        problems.append(
            message(
                function,
                "is defined in a cell that uses IPython magics or shell commands "
                f"({', '.join(sorted(set(_magics(tree))))}); keep that cell plain Python",
            )
        )
    top_defs = [
        n
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == function
    ]
    if not top_defs:
        problems.append(message(function, "must be defined with `def` at the top level of its answer cell"))
    seen = set()
    spans = [
        (n.lineno, n.end_lineno, n.name)
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    grad_rule = next((rule for rule in rules if rule.grad), None)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    switched_off = {
        id(t) for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_false(n.value) for t in n.targets
    }  # x.requires_grad = False is fine

    def owner(node) -> str:
        """The top-level function of the cell that holds ``node`` (the one the message should name)."""
        line = getattr(node, "lineno", None)
        return next((name for start, end, name in spans if line is not None and start <= line <= end), function)

    def add(node, what: str, rule: Rule | None = None, who: str | None = None, why: str = "") -> None:
        problem = message(who or owner(node), what, rule, getattr(node, "lineno", None), why=why)
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)

    magics = bool(_magics(tree))
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Attribute, ast.Subscript))
            and isinstance(node.ctx, (ast.Store, ast.Del))
            and _root(node) in MODULES
        ):
            add(node, f"changes `{_dotted(node)}`", why="a constrained answer cell may not change torch, nn, F or math")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if not _canonical_import(node, alias):
                    add(
                        node,
                        f"is defined in a cell that imports `{alias.name}`",
                        who=function,
                        why="a constrained answer cell may only import torch, math, torch.nn as nn and "
                        "torch.nn.functional as F",
                    )
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            for rule in rules:
                if isinstance(node.op, rule.operators):
                    add(node, f"uses {SYMBOLS.get(type(node.op), type(node.op).__name__)}", rule)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_":
            if grad_rule is not None and not (
                node.args
                and _is_false(node.args[0])
                or any(k.arg == "requires_grad" and _is_false(k.value) for k in node.keywords)
            ):
                add(node, f"makes a tensor require gradients (`{_dotted(node)}`)", grad_rule)
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("_"):
                add(
                    node,
                    f"uses the private attribute `{_dotted(node)}`",
                    why="private and dunder attributes are not allowed in a constrained cell",
                )
            elif attr in ESCAPE_ATTRIBUTES:
                add(node, f"uses `{_dotted(node)}`", why="it reaches code outside the cell")
            elif attr == "requires_grad_" and grad_rule is not None and id(node) not in called:
                add(node, f"uses `{_dotted(node)}`", grad_rule)
            elif (
                attr == "requires_grad"
                and isinstance(node.ctx, (ast.Store, ast.Del))
                and grad_rule is not None
                and id(node) not in switched_off
            ):
                add(node, f"sets `{_dotted(node)}`", grad_rule)
            for rule in rules:
                if attr != "requires_grad" and rule.forbids(attr):
                    add(node, f"uses `{_dotted(node)}`", rule)
        elif isinstance(node, ast.keyword) and node.arg == "requires_grad" and not _is_false(node.value):
            if grad_rule is not None:  # the guard stops such a tensor at run time; the cell says it plainly
                add(node.value, f"creates a tensor with `requires_grad={_dotted(node.value)}`", grad_rule)
        elif isinstance(node, ast.Name) and node.id in ESCAPE_NAMES and not (node.id == "get_ipython" and magics):
            add(
                node,
                f"uses `{node.id}`",
                why="not allowed in a constrained cell (it could run code the check cannot see)",
            )
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            add(
                node,
                f"is defined in a cell with a `{type(node).__name__.lower()}` statement",
                who=function,
                why="not allowed in a constrained cell",
            )
    defined = module_bindings(python)
    for name in sorted(global_references(python) - defined):
        if name in SAFE_BUILTINS or name in MODULES or name in allowed or name in ESCAPE_NAMES:
            continue
        forbidden = [rule for rule in rules if rule.forbids(name)]  # a bare forbidden name, imported elsewhere
        line = _first_line(tree, name)
        if forbidden:
            problems.append(message(function, f"uses `{name}`", forbidden[0], line))
            continue
        problems.append(
            message(
                function,
                f"uses `{name}`",
                None,
                line,
                why=f"its cell does not define it, and a constrained function may only use what its "
                f"own cell defines, {', '.join(MODULES)}, Python's built-ins"
                + (f" and {', '.join(f'`{a}`' for a in allowed)}" if allowed else ""),
            )
        )
    return list(dict.fromkeys(problems))


def _first_line(tree, name: str) -> int | None:
    lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name]
    return min(lines) if lines else None


def answer_cell_problems(source: str, function: str, rules, uses=(), require=()) -> list[str]:
    """Every problem of a constrained task's answer cell: the rules (:func:`cell_problems`), then the functions the
    task requires it to call. The test cell and the grader both call this, on the same cell.

        >>> answer_cell_problems("def f(z):\\n    return 2 * z\\n", "f", ["sigmoid"], uses=["g"], require=["g"])
        ['`f` must use `g` (the task asks for it)']
    """
    problems = cell_problems(source, function, rules, allowed=list(uses))
    tree, python = _parse(source)
    if tree is not None and not problems and not _unanswered(tree, function):
        used = global_references(python)
        problems = [
            message(function, f"must use `{name}` (the task asks for it)") for name in require if name not in used
        ]
    return problems


def _unanswered(tree, function: str) -> bool:
    """True when ``function`` is still nbgrader's stub (its body only raises ``NotImplementedError``): calling it
    then says the task is not written yet, which is the one thing to say about it."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
            return (
                len(body) == 1
                and isinstance(body[0], ast.Raise)
                and body[0].exc is not None
                and "NotImplementedError" in ast.unparse(body[0].exc)
            )
    return False


def defining_cells(sources: list[str], name: str) -> list[int]:
    """Indices of the cells that bind ``name`` at module level (by def, assignment, import, global...)."""
    found = []
    for i, source in enumerate(sources):
        tree, python = _parse(source)
        if tree is not None and name in module_bindings(python):
            found.append(i)
    return found
