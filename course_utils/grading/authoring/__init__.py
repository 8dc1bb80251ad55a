"""Tools for whoever writes the exercises.

| module | job |
| --- | --- |
| ``stats`` | ``stats``: tasks, points, tests, constraint checks, copyable points and grading time per exercise |
| ``copying`` | how much of each solution a lesson or the task's prompt gives away (normalised statement match) |
| ``samples`` | sample submissions built from the release and the solution (dry runs, tests, benchmarks) |
"""
