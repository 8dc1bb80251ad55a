"""The static rules of stated constraints ("without @", "without autograd"): pure AST, no torch.

    >>> cell_problems("def f(a, b):\\n    return a @ b", "f", ["matmul"])[0]
    '`f` uses `@` (matrix multiplication), which this task forbids (a built-in matrix product)'

A task that says "without X" names a **rule** of :data:`RULES` (``matmul``, ``sigmoid``, ``autograd``,
``convolution``, ``loss_functions``, or ``self_contained`` for "write it yourself"). Both sides run these
rules: the learner's test cell (``course_utils.constraints.constrained``, which adds a guard that watches
torch calls at run time) and the grader (``course_utils.grading.pipeline.constraints``), which only parses
the submitted cells and so never imports torch.

For the cell that defines a constrained function (the *defining cell*):

1. no forbidden operator or name: ``@``, or an attribute such as ``.matmul``, ``.sigmoid``, ``.backward``
   (the rule's :attr:`Rule.names`); for ``autograd``, no ``requires_grad=...`` argument either (other than
   ``False``);
2. no escape hatch: no ``import``, no ``getattr``/``eval``/``exec``/``compile``/``__import__``/``globals``/
   ``vars``/``setattr``/``open``, no private or dunder attribute (``torch._C``, ``__dict__``), no
   ``torch.ops``/``torch.utils``/``torch.jit``/``torch.load``..., no IPython magic;
3. self-contained: every name it uses is defined in the cell itself, is one of Python's safe built-ins,
   one of the modules ``torch``, ``nn``, ``F``, ``math``, or another constrained function the task allows
   (``uses``), whose own defining cell obeys the same rules; the function is defined exactly once, by a
   ``def`` (or ``class``) at the top level of one cell.

And for every other code cell of the notebook (:func:`integrity_problems`, grader only): it must not rebind
the constrained functions or the module names, assign to attributes of a module (``torch.sigmoid = ...``)
or to dunder attributes, use the dynamic escape hatches (``exec``, ``eval``, ``globals``, ``setattr``,
magics...), or import anything outside :data:`ALLOWED_IMPORTS`.
"""
from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass, field

__all__ = ["Rule", "RULES", "cell_problems", "integrity_problems", "defining_cells", "notebook_problems",
           "python_source", "message"]


@dataclass(frozen=True)
class Rule:
    """One stated constraint: what it forbids, in words and as names and operators.

        >>> RULES["matmul"].what
        'a built-in matrix product'
    """
    name: str
    what: str                                  # for messages: "... which this task forbids (a built-in matrix product)"
    names: frozenset = field(default_factory=frozenset)  # attribute / function names (torch.X, tensor.X, F.X, nn.X)
    operators: tuple = ()                      # ast operator classes, e.g. (ast.MatMult,)
    grad: bool = False                         # forbid tensors that require gradients

    def forbids(self, dotted: str) -> bool:
        """True when a dotted torch name (``torch.Tensor.matmul``) has a component this rule forbids."""
        return any(part in self.names for part in dotted.split("."))


_CONVOLUTIONS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                 "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
                 "LazyConv1d", "LazyConv2d", "LazyConv3d", "convolution", "_convolution", "conv_tbc"}

#: every rule a task can name
RULES = {rule.name: rule for rule in [
    Rule("matmul", "a built-in matrix product",
         frozenset({"matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "outer", "ger", "einsum", "tensordot",
                    "linear", "bilinear", "addmm", "addmv", "addbmm", "baddbmm", "addr", "chain_matmul",
                    "multi_dot", "vecdot", "spmm", "sspaddmm", "smm", "hspmm", "linalg", "Linear", "LazyLinear",
                    "Bilinear", "kron", "cdist", "__matmul__", "__rmatmul__", "__imatmul__"} | _CONVOLUTIONS),
         (ast.MatMult,)),
    Rule("sigmoid", "the library's sigmoid (or a function built on it)",
         frozenset({"sigmoid", "sigmoid_", "expit", "Sigmoid", "logsigmoid", "LogSigmoid", "softplus", "Softplus",
                    "silu", "SiLU", "glu", "GLU", "softmax", "log_softmax", "Softmax", "LogSoftmax", "Softmin",
                    "softmin", "hardsigmoid", "Hardsigmoid", "logit", "special"})),
    Rule("autograd", "autograd (gradients computed by PyTorch)",
         frozenset({"backward", "grad", "autograd", "requires_grad", "requires_grad_", "enable_grad",
                    "set_grad_enabled", "inference_mode", "func", "vjp", "jvp", "jacobian", "hessian", "jacrev",
                    "jacfwd", "vmap", "gradcheck", "retain_grad", "grad_fn", "Parameter"}), grad=True),
    Rule("convolution", "a built-in convolution or pooling layer",
         frozenset(_CONVOLUTIONS | {"unfold", "Unfold", "fold", "Fold", "max_pool1d", "max_pool2d", "max_pool3d",
                                    "avg_pool1d", "avg_pool2d", "avg_pool3d", "MaxPool1d", "MaxPool2d", "MaxPool3d",
                                    "AvgPool1d", "AvgPool2d", "AvgPool3d", "adaptive_avg_pool2d",
                                    "adaptive_max_pool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "lp_pool2d"})),
    Rule("loss_functions", "a library loss function (or the log-softmax, log-sigmoid or softplus it is built from)",
         frozenset({"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div", "poisson_nll_loss",
                    "gaussian_nll_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "MSELoss", "L1Loss",
                    "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
                    "KLDivLoss", "log_softmax", "LogSoftmax", "logsigmoid", "LogSigmoid", "softplus", "Softplus"})),
    Rule("self_contained", "code from outside the answer cell"),
]}

#: module names a constrained cell may use (bound by these imports only, in any cell)
MODULES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "math": "math"}

#: Python built-ins a constrained cell may use
SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "pow", "print", "range",
    "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "super", "property",
    "staticmethod", "classmethod", "object", "None", "True", "False", "NotImplemented", "Ellipsis",
    "Exception", "ValueError", "TypeError", "IndexError", "KeyError", "RuntimeError", "ZeroDivisionError",
    "ArithmeticError", "AssertionError", "NotImplementedError", "StopIteration", "OverflowError",
})

#: names that run code from strings or change namespaces behind the reader's back
ESCAPE_NAMES = frozenset({"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "setattr",
                          "delattr", "getattr", "open", "get_ipython", "__builtins__", "builtins", "input",
                          "breakpoint", "memoryview"})
#: of those, what other cells may not use either (they could rebind or patch what a constrained cell uses)
INTEGRITY_ESCAPES = frozenset({"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "setattr",
                               "delattr", "__builtins__", "builtins"})
#: torch attributes that reach code outside the function (compiled ops, C++ extensions, pickles, TorchScript)
ESCAPE_ATTRIBUTES = frozenset({"ops", "library", "overrides", "utils", "jit", "fx", "hub", "load", "save",
                               "export", "compile", "classes", "package", "_C", "_dynamo", "_refs", "_prims"})
#: top-level modules any cell of a notebook with constrained tasks may import
ALLOWED_IMPORTS = frozenset({"torch", "numpy", "pandas", "math", "matplotlib", "course_utils", "random",
                             "itertools", "functools", "collections", "statistics", "time", "timeit", "typing",
                             "dataclasses", "copy", "tempfile", "pathlib", "io", "string", "re", "json", "tqdm",
                             "warnings", "pprint", "datetime", "textwrap"})
#: magics other cells may use (IPython turns magics into get_ipython() calls) ...
HARMLESS_MAGICS = frozenset({"matplotlib", "pwd", "who", "whos", "lsmagic", "history"})
#: ... and magics that run Python code, allowed when that code passes the same check
CODE_MAGICS = frozenset({"time", "timeit", "prun"})
#: submodules of otherwise forbidden packages that other cells may import
ALLOWED_SUBMODULES = frozenset({"IPython.display"})

SYMBOLS = {ast.MatMult: "`@` (matrix multiplication)"}


def message(function: str, what: str, rule: Rule | None = None) -> str:
    why = f", which this task forbids ({rule.what})" if rule is not None else ""
    return f"`{function}` {what}{why}"


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


def _magic_calls(tree) -> list[tuple[str, str | None]]:
    """(magic name, the Python code it runs or None) for each IPython magic or shell command of a transformed
    cell (``get_ipython().run_line_magic('name', 'line')``, ``run_cell_magic('name', 'line', 'cell')``)."""
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "get_ipython"):
            texts = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
            label = texts[0] if texts and texts[0] else "?"
            if node.func.attr == "run_line_magic":
                code = re.sub(r"^\s*(?:-[A-Za-z]+(?:\s+\d+)?\s+)*", "", texts[1]) if len(texts) > 1 and texts[1] else None
                found.append((label, code))
            elif node.func.attr == "run_cell_magic":
                found.append((label, texts[2] if len(texts) > 2 else None))
            else:
                found.append((f"!{label}", None))
    return found


def _magics(tree) -> list[str]:
    """Line/cell magic names used in a transformed cell."""
    return [name for name, _ in _magic_calls(tree)]


def _dotted(node) -> str:
    """An attribute as written (``torch.linalg.inv``, ``z.clone().requires_grad_``), shortened if long."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else "..." + text[-57:]


def cell_problems(source: str, function: str, rules, allowed=()) -> list[str]:
    """What breaks the rules in the defining cell of ``function`` (``[]`` when it obeys them).

        >>> cell_problems("def f(a, b):\\n    return a @ b\\n", "f", ["matmul"])
        ['`f` uses `@` (matrix multiplication), which this task forbids (a built-in matrix product)']

    ``allowed`` names other constrained functions the cell may call (defined in their own cells).
    """
    rules = [RULES[r] for r in rules]
    tree, python = _parse(source)
    if tree is None:
        return [message(function, "is defined in a cell that is not valid Python")]
    problems = []
    if _magics(tree):
        problems.append(message(function, "is defined in a cell that uses IPython magics or shell commands "
                                           f"({', '.join(sorted(set(_magics(tree))))}); keep that cell plain Python"))
    top_defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.name == function]
    if not top_defs:
        problems.append(message(function, "must be defined with `def` at the top level of its answer cell"))
    seen = set()
    spans = [(n.lineno, n.end_lineno, n.name) for n in tree.body
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

    def owner(node) -> str:
        """The top-level function of the cell that holds ``node`` (the one the message should name)."""
        line = getattr(node, "lineno", None)
        return next((name for start, end, name in spans if line is not None and start <= line <= end), function)

    def add(problem: str) -> None:
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)

    for node in ast.walk(tree):
        who = owner(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ", ".join(a.name for a in node.names)
            add(message(function, f"is defined in a cell that imports (`{names}`): a constrained answer cell "
                                   "may only use torch, nn, F and math, imported once at the top of the notebook"))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            for rule in rules:
                if isinstance(node.op, rule.operators):
                    add(message(who, f"uses {SYMBOLS.get(type(node.op), type(node.op).__name__)}", rule))
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("_"):
                add(message(who, f"uses the private attribute `{_dotted(node)}`: "
                                  "private and dunder attributes are not allowed in a constrained cell"))
            elif attr in ESCAPE_ATTRIBUTES:
                add(message(who, f"uses `{_dotted(node)}`, which reaches code outside the cell"))
            for rule in rules:
                if attr in rule.names:
                    add(message(who, f"uses `{_dotted(node)}`", rule))
        elif isinstance(node, ast.keyword) and node.arg == "requires_grad" and not (
                isinstance(node.value, ast.Constant) and node.value.value in (False, None)):
            for rule in rules:  # the guard stops such a tensor at run time; the cell says it plainly
                if rule.grad:
                    add(message(who, f"creates a tensor with `requires_grad={_dotted(node.value)}`", rule))
        elif isinstance(node, ast.Name) and node.id in ESCAPE_NAMES and not (node.id == "get_ipython" and _magics(tree)):
            add(message(who, f"uses `{node.id}`, which is not allowed in a constrained cell "
                              "(it could run code the check cannot see)"))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            add(message(function, f"is defined in a cell with a `{type(node).__name__.lower()}` statement, "
                                   "which is not allowed in a constrained cell"))
    defined = module_bindings(python)
    for name in sorted(global_references(python) - defined):
        if name in SAFE_BUILTINS or name in MODULES or name in allowed or name in ESCAPE_NAMES:
            continue
        forbidden = [rule for rule in rules if name in rule.names]  # a bare forbidden name, imported elsewhere
        if forbidden:
            add(message(function, f"uses `{name}`", forbidden[0]))
            continue
        add(message(function, f"uses `{name}`, which its cell does not define: a constrained function may "
                               f"only use what its own cell defines, {', '.join(MODULES)}, Python's built-ins"
                               + (f" and {', '.join(f'`{a}`' for a in allowed)}" if allowed else "")))
    return problems


def defining_cells(sources: list[str], name: str) -> list[int]:
    """Indices of the cells that bind ``name`` at module level (by def, assignment, import, global...)."""
    found = []
    for i, source in enumerate(sources):
        tree, python = _parse(source)
        if tree is not None and name in module_bindings(python):
            found.append(i)
    return found


def _canonical_import(node, alias) -> bool:
    bound = alias.asname or alias.name.split(".")[0]
    if bound not in MODULES:
        return True
    target = MODULES[bound]
    if isinstance(node, ast.Import):
        return (alias.asname or alias.name) == bound and alias.name == target
    return node.level == 0 and f"{node.module}.{alias.name}" == target


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def module_aliases(sources: list[str]) -> set[str]:
    """Names that hold a module (or something reached from one) in any cell: imports, and plain aliases of
    them such as ``t = torch`` or ``T = torch.Tensor`` (followed to a fixed point)."""
    aliases, trees = set(MODULES), [t for t in (_parse(s)[0] for s in sources) if t is not None]
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                aliases |= {a.asname or a.name.split(".")[0] for a in node.names}
    changed = True
    while changed:
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                value = getattr(node, "value", None)
                if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and isinstance(value, (ast.Name, ast.Attribute)):
                    if _root(value) in aliases:
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        for target in targets:
                            for part in ast.walk(target):
                                if isinstance(part, ast.Name) and part.id not in aliases:
                                    aliases.add(part.id)
                                    changed = True
    return aliases


def _store_targets(node) -> list:
    if isinstance(node, (ast.Assign, ast.Delete)):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.comprehension, ast.NamedExpr)):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    return []


def integrity_problems(source: str, protected=(), shipped=(), modules=None) -> list[str]:
    """What, in a cell other than a defining cell, could change what a constrained function does.

        >>> integrity_problems("torch.sigmoid = lambda z: z")
        ['assigns to `torch.sigmoid`: changing a module is not allowed in a notebook with constrained tasks']

    ``protected`` names what the constrained cells rely on (the functions, the built-ins they use);
    ``shipped`` names Python modules the submission ships; ``modules`` the names that hold modules
    (:func:`module_aliases` of the whole notebook).
    """
    tree, python = _parse(source)
    if tree is None:  # the kernel cannot run it either
        return []
    modules = set(MODULES) if modules is None else set(modules)
    problems, magics = [], []
    for name, code in _magic_calls(tree):
        if name in CODE_MAGICS and code is not None and _parse(code)[0] is not None:
            problems += integrity_problems(code, protected, shipped, modules)  # the code the magic runs
        elif name not in HARMLESS_MAGICS:
            magics.append(name)
    if magics:
        problems.append(f"uses IPython magics or shell commands ({', '.join(sorted(set(magics)))}), which are "
                        "not allowed in a notebook with constrained tasks")
    bound = module_bindings(python)
    for name in sorted(bound & set(protected)):
        problems.append(f"redefines `{name}`, which a constrained answer relies on")
    canonical = True
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                top = (alias.name if isinstance(node, ast.Import) else (node.module or "")).split(".")[0]
                if isinstance(node, ast.ImportFrom) and node.level:
                    top = "."
                full = alias.name if isinstance(node, ast.Import) else (node.module or "")
                if top not in ALLOWED_IMPORTS and full not in ALLOWED_SUBMODULES:
                    problems.append(f"imports `{top}`, which a notebook with constrained tasks may not import")
                elif top in shipped:
                    problems.append(f"imports `{top}`, which the submission ships as its own file")
                if not _canonical_import(node, alias):
                    name = alias.asname or alias.name.split(".")[0]
                    problems.append(f"binds `{name}` to something other than `{MODULES[name]}`")
                    canonical = False
        elif isinstance(node, ast.Name) and node.id in INTEGRITY_ESCAPES:
            problems.append(f"uses `{node.id}`, which is not allowed in a notebook with constrained tasks")
        for target in _store_targets(node):
            for part in ast.walk(target):
                if not isinstance(part, (ast.Attribute, ast.Subscript)) or not isinstance(part.ctx, (ast.Store, ast.Del)):
                    continue
                if isinstance(part, ast.Attribute) and part.attr.startswith("__"):
                    problems.append(f"assigns to `{_dotted(part)}`: dunder attributes may not be changed")
                elif _root(part) in modules:
                    problems.append(f"assigns to `{_dotted(part) or _root(part) + '[...]'}`: changing a module is not "
                                    "allowed in a notebook with constrained tasks")
    for name in sorted(bound & set(MODULES)):
        if _rebinds(tree, name) and canonical:
            problems.append(f"rebinds `{name}` (only `import {MODULES[name]}` may bind it)")
    return list(dict.fromkeys(problems))


def _rebinds(tree, name: str) -> bool:
    """True when ``name`` is bound at some point of ``tree`` by anything but an import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, (ast.Store, ast.Del)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.ExceptHandler) and node.name == name:
            return True
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and getattr(node, "name", None) == name:
            return True
    return False


def notebook_problems(sources: list[str], function: str, rules, uses=(), require=(), shipped=()) -> list[str]:
    """Every static problem of a constrained task, over all code cells of a notebook (the grader's check).

        >>> notebook_problems(["import torch", "def f(a, b):\\n    return a * b"], "f", ["matmul"])
        []
    """
    group = [function, *uses]
    problems, defining = [], {}
    for name in group:
        cells = defining_cells(sources, name)
        if not cells:
            problems.append(message(name, "is not defined in any cell"))
        elif len(cells) > 1:
            problems.append(message(name, f"is defined in {len(cells)} cells: keep one definition, in its answer cell"))
        else:
            defining[name] = cells[0]
    relied_on = set(group)
    for name, index in defining.items():
        problems += cell_problems(sources[index], name, rules, allowed=[g for g in group if g != name])
        tree, python = _parse(sources[index])
        if tree is not None:
            relied_on |= global_references(python) & SAFE_BUILTINS
    if function in defining:
        tree, python = _parse(sources[defining[function]])
        used = global_references(python) if tree is not None else set()
        for name in require:
            if name not in used:
                problems.append(message(function, f"must use your `{name}` (the task asks for it)"))
    modules = module_aliases(sources)
    for i, source in enumerate(sources):
        if i not in defining.values():
            problems += [f"another cell {p}" for p in integrity_problems(source, relied_on, shipped, modules)]
    return list(dict.fromkeys(problems))
