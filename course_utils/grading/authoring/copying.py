"""How much of each solution a learner could copy from the lessons or from the task's own prompt.

    >>> report = copy_report(Course.load("."), Path("notebooks"))          # doctest: +SKIP
    >>> [(t.task, t.points, t.found, t.total) for t in report]             # doctest: +SKIP

A task should be a contract, not code to copy. For every solution answer cell this compares the code
between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` with the code of every lesson notebook and of the
task's prompt (its fenced blocks and inline code spans), statement by statement, after normalising:

* comments, docstrings, whitespace and layout vanish (the comparison is on the syntax tree, ``ast.dump``);
* every variable and argument name becomes ``_``, so renaming does not hide a copy; the names of modules
  and built-ins (``torch``, ``nn``, ``F``, ``np``, ``len``...) and all attribute names (``.sum``, ``.reshape``)
  are kept, since they say what the code does.

A solution statement counts as *found* when its normalised form is a statement of the corpus, or when its
value (what it returns or assigns) is an expression of the corpus. Trivial statements (``pass``, ``return
x``, ``super().__init__()``) are not counted. A task whose every statement is found is **passable by
copying**; ``copied_share`` weights each task's points by the share of its statements found.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_utils.constraint_rules import python_source
from course_utils.grading.cells import grade_id, graded_cells, is_answer_cell, read_notebook

#: names kept as they are when normalising (they carry meaning); every other name becomes "_"
KEPT_NAMES = frozenset({"torch", "nn", "F", "np", "pd", "math", "functional"} | set(dir(builtins)))

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


class _Anonymise(ast.NodeTransformer):
    def visit_Name(self, node):
        return ast.copy_location(ast.Name(id=node.id if node.id in KEPT_NAMES else "_", ctx=ast.Load()), node)

    def visit_arg(self, node):
        return ast.copy_location(ast.arg(arg="_", annotation=None), node)

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        node.name, node.returns, node.decorator_list = "_", None, []
        return node

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        node.name = "_"
        return node


def normalised(node: ast.AST) -> str:
    """``ast.dump`` of a copy of ``node`` with every non-kept name replaced by ``_`` (no positions)."""
    copy = ast.parse(ast.unparse(node)) if isinstance(node, ast.stmt) else ast.parse(ast.unparse(node), mode="eval")
    return ast.dump(_Anonymise().visit(copy), annotate_fields=False, include_attributes=False)


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _trivial(node) -> bool:
    """Statements that say nothing about the task: pass, a bare return, super().__init__(), a docstring."""
    if isinstance(node, ast.expr):  # the condition of an if / while, the iterable of a for
        return isinstance(node, (ast.Name, ast.Constant))
    if isinstance(node, (ast.Pass, ast.Break, ast.Continue)) or _is_docstring(node):
        return True
    value = getattr(node, "value", None)
    if isinstance(node, ast.Return) and (value is None or isinstance(value, ast.Name)):
        return True
    return isinstance(node, ast.Expr) and "super" in ast.unparse(node) and "__init__" in ast.unparse(node)


def leaf_statements(tree: ast.AST) -> list:
    """What a solution consists of: its simple (not compound) statements at any depth, and the conditions
    and iterables of its compound ones (``if``, ``while``, ``for``), minus trivial ones."""
    compound = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.For,
        ast.AsyncFor,
        ast.While,
        ast.If,
        ast.With,
        ast.AsyncWith,
        ast.Try,
        ast.Match,
    )
    units = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.While)):
            units.append(node.test)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            units.append(node.iter)
        elif isinstance(node, ast.stmt) and not isinstance(node, compound):
            units.append(node)
    return [u for u in units if not _trivial(u)]


def _value(node):
    """The expression a statement computes (returned, assigned, evaluated), if it is worth comparing alone."""
    if isinstance(node, ast.expr):
        return node
    value = getattr(node, "value", None)
    if isinstance(node, (ast.Return, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr)) and isinstance(
        value, ast.expr
    ):
        if not isinstance(value, (ast.Name, ast.Constant, ast.Attribute)):
            return value
    return None


@dataclass
class Corpus:
    """Normalised statements and expressions of some code (lessons, a prompt)."""

    statements: set
    expressions: set

    @classmethod
    def of(cls, sources) -> Corpus:
        statements, expressions = set(), set()
        for source in sources:
            try:
                tree = ast.parse(python_source(source))
            except (SyntaxError, ValueError):
                try:
                    tree = ast.parse(source, mode="eval")
                except (SyntaxError, ValueError):
                    continue
            for node in ast.walk(tree):
                if isinstance(node, ast.stmt) and not _is_docstring(node):
                    statements.add(normalised(node))
                elif isinstance(node, ast.expr) and not isinstance(node, (ast.Name, ast.Constant)):
                    try:
                        expressions.add(normalised(node))
                    except SyntaxError:  # e.g. a starred expression alone
                        pass
        return cls(statements, expressions)

    def __or__(self, other: Corpus) -> Corpus:
        return Corpus(self.statements | other.statements, self.expressions | other.expressions)

    def contains(self, node) -> bool:
        if isinstance(node, ast.stmt) and normalised(node) in self.statements:
            return True
        value = _value(node)
        return value is not None and normalised(value) in self.expressions


def lesson_corpus(lessons_dir: Path) -> Corpus:
    """Every code cell of every lesson notebook (``[0-9]*.ipynb``) in ``lessons_dir``."""
    sources = [
        cell.source
        for path in sorted(Path(lessons_dir).glob("[0-9]*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "code"
    ]
    return Corpus.of(sources)


def prompt_code(markdown: str) -> list[str]:
    """The code in a prompt: fenced blocks and inline `code` spans."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.S)
    rest = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def solution_code(answer_source: str) -> str:
    """The code between the solution markers of an answer cell (all regions, each dedented)."""
    regions, current = [], None
    for line in answer_source.splitlines():
        if BEGIN in line:
            current = []
        elif END in line:
            if current is not None:
                regions.append(textwrap.dedent("\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return "\n".join(regions)


@dataclass
class TaskCopy:
    """How much of one task's solution appears in the lessons or its prompt."""

    assignment: str
    task: str
    points: float
    found: int
    total: int
    copied: list  # the statements found, as source

    @property
    def share(self) -> float:
        return self.found / self.total if self.total else 0.0

    @property
    def passable(self) -> bool:
        return self.found == self.total


def task_copies(notebook, assignment: str, lessons: Corpus) -> list[TaskCopy]:
    """One :class:`TaskCopy` per graded task of a solution notebook (or its path)."""
    nb = read_notebook(notebook)
    points = {c.grade_id: c.points for c in graded_cells(nb)}
    prompts = {grade_id(c): c.source for c in nb.cells if c.cell_type == "markdown" and grade_id(c)}
    report = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if not (is_answer_cell(cell) and gid and gid.endswith("_answer")):
            continue
        task = gid[: -len("_answer")]
        corpus = lessons | Corpus.of(prompt_code(prompts.get(f"{task}_prompt", "")))
        try:
            statements = leaf_statements(ast.parse(solution_code(cell.source)))
        except SyntaxError:
            statements = []
        copied = [ast.unparse(s) for s in statements if corpus.contains(s)]
        report.append(TaskCopy(assignment, task, points.get(task, 0.0), len(copied), len(statements), copied))
    return report


def copy_report(course, lessons_dir: Path | None = None) -> list[TaskCopy]:
    """:func:`task_copies` over every notebook of every assignment of ``course``."""
    lessons = lesson_corpus(lessons_dir or course.root / "notebooks")
    return [
        t
        for a in course.assignments()
        for nb in course.notebooks(a)
        for t in task_copies(course.source_notebook(a, nb), a, lessons)
    ]


def copied_share(report: list[TaskCopy]) -> tuple[float, float]:
    """(share of all points passable by copying, share of all points weighted by the statements found)."""
    total = sum(t.points for t in report) or 1.0
    return (sum(t.points for t in report if t.passable) / total, sum(t.points * t.share for t in report) / total)
