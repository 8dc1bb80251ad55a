"""course_utils.grading.hub.classroom: the student edition carries every course module its own modules import
(at import time: an import inside a function may serve the instructor only, as ``lab.server``'s workspace does)."""

from __future__ import annotations

import ast

from course_utils.grading.git import tracked_files
from course_utils.grading.hub.classroom import for_students
from support import REPO


def _module_file(module: str) -> str | None:
    """The repo-relative file of a ``course_utils`` module or package, None for anything else."""
    if module != "course_utils" and not module.startswith("course_utils."):
        return None
    base = module.replace(".", "/")
    return base + ".py" if (REPO / f"{base}.py").is_file() else f"{base}/__init__.py"


def _import_time_nodes(tree: ast.AST):
    """Every node that runs when the module is imported: all but the bodies of functions."""
    for node in ast.iter_child_nodes(tree):
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _import_time_nodes(node)


def test_every_course_module_the_student_edition_imports_is_in_the_student_edition():
    carried = [
        f for f in tracked_files(REPO) if f.startswith("course_utils/") and f.endswith(".py") and for_students(f)
    ]
    assert "course_utils/grading/lab/update.py" in carried  # make update runs in each student's copy
    missing = set()
    for name in carried:
        for node in _import_time_nodes(ast.parse((REPO / name).read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                path = _module_file(module)
                if path and (REPO / path).is_file() and not for_students(path):
                    missing.add(f"{name} imports {module} ({path})")
    assert not missing, sorted(missing)
