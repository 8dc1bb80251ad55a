"""nbgrader configuration for PyTorch Foundations (read by nbgrader from the repository root).

The instructor source (solutions and hidden tests) lives in solutions/, the student release that
`nbgrader generate_assignment` makes from it in exercises/ (committed). Everything grading produces
(submissions, autograded copies, feedback, the gradebook, the exchange) stays in the git-ignored
grading/ folder.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
GRADING = ROOT / "grading"

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "pytorch-foundations"
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.solution_directory = "grading/source_with_solutions"
# Exercises read the shipped dataset from data/; notebooks only, never copy other files into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.pt"]
c.CourseDirectory.db_url = f"sqlite:///{GRADING / 'gradebook.db'}"
c.Exchange.root = str(GRADING / "exchange")

# The training task of exercise 07 takes ~10 s on 2 CPU cores; leave room for slow machines.
# (nbgrader's Execute preprocessor reads Execute.timeout; ExecutePreprocessor.timeout is ignored.)
# nbgrader's Execute always runs on after an error (its allow_errors is not configurable, hence no setting).
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = "python3"

# Keep runaway prints from bloating submissions and feedback.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

# Solution and hidden-test markers used in solutions/.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# A classroom's copy of the course (make hub) adds its own settings here: the class's exchange, for one.
local = ROOT / "nbgrader_config.local.py"
if local.is_file():
    load_subconfig(str(local))  # noqa: F821
