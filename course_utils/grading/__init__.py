"""The instructor's grading pipeline: ``python -m course_utils.grading <command>`` (see ``cli.py``).

Built on nbgrader's API, with three additions nbgrader lacks:

* **Parallel, past one machine**: jobs run on Dask distributed (an in-process LocalCluster by default, any
  cluster with ``--scheduler``); kernels are forked from a template that has imported torch and the course
  once (one per worker process, shared by its threads; up to 4 local workers are threads of the grader's
  process); only the grader's own process writes results and the gradebook.
* **Jailed**: each kernel runs in namespaces of its own (pid, mount, network, IPC) as a uid of its own (or
  rootless, in a user namespace), with limits on CPU, memory and tasks for all its processes together and
  size-limited tmpfs folders for everything it writes; nothing of the course but ``course_utils`` and the data.
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
| ``sandbox`` | the jail's outer wall: bubblewrap around the kernel template, the limits, the probe (root or rootless) |
| ``uids`` | throw-away uids leased machine-wide (no two live kernels share one) |
| ``template`` | the kernel template (runs in the jail): per job, namespaces, tmpfs quotas, a supervisor, the kernel |
| ``kernel`` | starting and talking to the template; a jupyter kernel manager whose kernel is a template job |
| ``execute`` | run one notebook as far as it gets (every message counted) and name the limit that stopped it |
| ``sanitize`` | nbgrader's autograde sanitizers, fed a snapshot of the gradebook so any worker can run them |
| ``safe_html`` | make learner content safe to render (nh3) and forbid scripts in pages (CSP) |
| ``jobs`` | one job as plain data: check, sanitize, execute, hand back the records as bytes |
| ``engine`` | Dask: where jobs run, results streamed back, a dead worker's job run again elsewhere |
| ``records`` | read a kernel's record file safely (size unpacked, depth, items) |
| ``references`` | the solution notebooks' records, cached by everything they depend on |
| ``verdicts`` | compare records with the references (trusted) |
| ``classifier`` | the trusted evaluation of a trained network: a prescribed one from its weights, a designed one rebuilt from its layer list (the rule is ``course_utils.classifier``, shared with ``check_classifier``) |
| ``constraints`` | the trusted check of stated constraints ("without @"): the submitted cells, parsed with ``course_utils.constraints``' rules |
| ``scoring`` | verdicts (and constraint checks) -> points per graded cell |
| ``results`` | one JSON result per student and assignment (read by feedback and export) |
| ``gradebook`` | write results into nbgrader's gradebook (in place: a human grader's scores are kept) |
| ``autograde`` | ``autograde``: plan, run the jobs on the engine, score, record (the orchestration) |
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
