"""``python -m course_utils.grading``: see course_utils.grading.cli."""

import sys

from course_utils.grading.cli import main

sys.exit(main())
