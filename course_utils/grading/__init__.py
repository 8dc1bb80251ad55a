"""The instructor's grading pipeline: ``python -m course_utils.grading {release,collect,autograde,feedback,export}``.

Built on nbgrader's API, with three additions nbgrader lacks:

* **Parallel**: notebooks run in a process pool, one kernel each; one pool of forked workers serves
  every assignment of a run, solution (reference) runs included, and only the parent writes the
  gradebook, in one swap of a copy (``gradebook.py``), so it is never half-written.
* **Jailed**: each kernel runs under bubblewrap as a throw-away uid with rlimits (``sandbox.py``,
  ``kernel.py``): no network, a read-only system, its own writable folder, nothing of the course but
  ``course_utils`` and the data.
* **Trusted verdicts**: test cells only *record* results (``course_utils.checks.record``); the parent
  compares them with the solution notebook's records (``scoring.py``), so code in an answer cell can
  change what the kernel prints but not the score.

Modules, in pipeline order: course (config), collect, release, sandbox, kernel, execute, jobs,
scoring, gradebook, autograde, feedback, export, cli.
"""

import sys as _sys

# jsonschema (imported by nbformat) compiles a grammar for its optional "iri" format checker when the
# rfc3987_syntax package is installed: 1-3 s per process, paid by the grader and by every worker, for a
# format no notebook schema uses. Mark it unavailable (jsonschema then skips that checker) unless some
# other code in this process has already imported it.
_sys.modules.setdefault("rfc3987_syntax", None)
