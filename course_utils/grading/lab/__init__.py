"""The learner's side of grading, in their own JupyterLab (this part ships to students).

| module | job |
| --- | --- |
| ``server`` | the Jupyter server extension: Validate's route, answered with a per-task summary |
| ``validate`` | run a notebook as nbgrader's Validate does and summarise it task by task |
| ``update`` | ``make update``: the course's updates merged into a learner's clone, their edits kept |
"""
