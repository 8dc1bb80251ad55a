"""Grading the course: ``python -m course_utils.grading <command>`` (see ``cli.py``).

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

Folders by audience (each package's ``__init__`` lists its modules):

| package | for | what |
| --- | --- | --- |
| ``pipeline/`` | the instructor | release, collect, references, autograde, scoring, gradebook, feedback, export |
| ``runner/`` | the grader | where notebooks run: the Dask engine, jobs, the kernel template, its jail and uids |
| ``lab/`` | the learner | Validate's summary, ``make update`` (the only part the students' copy carries) |
| ``hub/`` | a classroom | ``make hub``: accounts, the class's Python, the watcher that grades on submission, progress |
| ``authoring/`` | exercise writers | statistics per exercise, copy detection, sample submissions |

And beside them, shared by all: ``cli`` (the one command line), ``config`` (the settings, as traitlets
``Configurable`` classes of ``nbgrader_config.py``), ``course`` (the course's folders and assignments), ``cells``
(nbgrader's cell metadata), ``files`` (reading student folders once, never through a link) and ``git``.
The record-file format both sides share is ``course_utils.records``.
"""

import sys as _sys

# jsonschema (imported by nbformat) compiles a grammar for its optional "iri" format checker when the
# rfc3987_syntax package is installed: 1-3 s per process, paid by the grader and by every worker, for a
# format no notebook schema uses. Mark it unavailable (jsonschema then skips that checker) unless some
# other code in this process has already imported it.
_sys.modules.setdefault("rfc3987_syntax", None)
