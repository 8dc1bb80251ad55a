"""A JupyterHub classroom on one machine: accounts, grading on submission, the instructor's progress page.

| module | job |
| --- | --- |
| ``classroom`` | ``hub up``/``down``: build the prefix (venv, package, lessons, course, exchange) and run JupyterHub |
| ``accounts`` | the roster and its members' local accounts, with random passwords |
| ``jupyterhub_config.py`` | JupyterHub's config for the classroom (with ``package.json``: its proxy, from npm) |
| ``exchange`` | nbgrader's exchange as the watcher reads it: submissions in, feedback out |
| ``state`` | the watcher's record of each submission, and re-grade requests |
| ``watcher`` | ``hub watch``: grade each new submission and release its feedback (the ``grader`` service) |
| ``progress`` | ``hub progress``: the instructor's page of submissions and re-grades (the ``progress`` service) |
"""
