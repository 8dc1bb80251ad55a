"""The instructor's pipeline, in order: release -> collect -> autograde -> feedback -> export.

| module | job |
| --- | --- |
| ``release`` | ``release``: exercises/ from solutions/ with nbgrader (and the gradebook's copy of the cells) |
| ``workspace`` | the grading workspace and the exchange on first use; assignments published to the exchange |
| ``collect`` | ``collect``: an inbox of folders, notebooks and zips into ``submitted/``, safely |
| ``sanitize`` | nbgrader's autograde sanitizers, fed a snapshot of the gradebook so any worker can run them |
| ``tasks`` | a constrained task's own job: its answer cell alone, with the set-up and its test cell |
| ``references`` | the solution notebooks' (and tasks' jobs') records, made once and cached by what they depend on |
| ``autograde`` | ``autograde``: plan, run the jobs on the engine (``runner``), score, record |
| ``verdicts`` | compare a notebook's records with the references (trusted); why a test cell stopped |
| ``constraints`` | the trusted check of stated constraints ("without @") on the submitted answer cell |
| ``scoring`` | verdicts and constraint checks -> points per graded cell |
| ``results`` | one JSON result per student and assignment (read by feedback and export) |
| ``gradebook`` | write results into nbgrader's gradebook (a human grader's scores are kept) |
| ``safe_html`` | make learner content safe to render (nh3) and forbid scripts in pages (CSP) |
| ``feedback`` | ``feedback``: one HTML report per student and notebook, hidden tests removed |
| ``export`` | ``export``: the grades CSV and a histogram per task |
"""
