"""The instructor's grading pipeline: ``python -m course_utils.grading <command>`` (see ``cli.py``).

Built on nbgrader's API, with three additions nbgrader lacks:

* **Parallel**: notebooks run in a process pool, one kernel each; one pool serves every assignment of a
  run, solution (reference) runs included, and only the parent writes the gradebook, in one swap of a copy.
* **Jailed**: each kernel runs under bubblewrap as a throw-away uid with rlimits: no network, a read-only
  system, its own writable folder, nothing of the course but ``course_utils`` and the data.
* **Trusted verdicts**: test cells only *record* results (``course_utils.checks.record``); the parent
  compares them with the solution notebook's records, so code in an answer cell can change what the
  kernel prints but not the score.

One job per module, in pipeline order:

| module | job |
| --- | --- |
| ``course`` | the course from ``nbgrader_config.py``: folders (nbgrader's and the workspace's), assignments, limits |
| ``cells`` | reading nbgrader's cell metadata and the hidden-test markers |
| ``release`` | ``release``: exercises/ from solutions/ with nbgrader (and the gradebook's copy of the cells) |
| ``collect`` | ``collect``: an inbox of folders, notebooks and zips into ``submitted/``, safely |
| ``sandbox`` | the jail: bubblewrap, a throw-away uid, rlimits |
| ``kernel`` | a jupyter kernel manager that starts its kernel in the jail |
| ``execute`` | run one notebook as far as it gets and name the limit that stopped it |
| ``jobs`` | one worker's job: sanitize with nbgrader, execute, read the records back safely |
| ``references`` | the solution notebooks' records, cached by everything they depend on |
| ``verdicts`` | load a record file safely and compare it with the references (trusted) |
| ``classifier`` | the trusted evaluation of a trained network: a prescribed one from its weights, a designed one rebuilt from its layer list (``course_utils.networks``) |
| ``constraints`` | the trusted check of stated constraints ("without @"): the submitted cells, parsed with ``course_utils.constraints``' rules |
| ``scoring`` | verdicts (and constraint checks) -> points per graded cell |
| ``results`` | one JSON result per student and assignment (read by feedback and export) |
| ``gradebook`` | write results into nbgrader's gradebook in one atomic swap |
| ``autograde`` | ``autograde``: plan, run the pool, score, record (the orchestration) |
| ``feedback`` | ``feedback``: one HTML report per student and notebook, hidden tests removed |
| ``export`` | ``export``: the grades CSV and a histogram per task |
| ``stats`` | ``stats``: tasks, points, tests, constraint checks, copyable points and grading time per exercise |
| ``copying`` | how much of each solution a lesson or the task's prompt gives away (normalised statement match) |
| ``samples`` | sample submissions built from the release and the solution (dry runs, tests, benchmarks), constraint violations included |
| ``cli`` | the command table |
"""

import sys as _sys

# jsonschema (imported by nbformat) compiles a grammar for its optional "iri" format checker when the
# rfc3987_syntax package is installed: 1-3 s per process, paid by the grader and by every worker, for a
# format no notebook schema uses. Mark it unavailable (jsonschema then skips that checker) unless some
# other code in this process has already imported it.
_sys.modules.setdefault("rfc3987_syntax", None)
