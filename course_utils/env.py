"""The environment variables the course reads, named once (this module imports nothing heavy).

    >>> os.environ[DEVICE] = "cpu"  # doctest: +SKIP

* ``COURSE_DEVICE``: the device ``get_device()`` returns (cpu, cuda, cuda:N, mps);
* ``COURSE_DATA_DIR``: a folder holding the four Fashion-MNIST files (default: the repo's data/);
* ``COURSE_CACHE_DIR``: where downloads, verified checksums and decoded arrays are cached;
* ``COURSE_RECORD_FILE``: set by the grader only: where ``checks.record`` writes the learner's results.
"""

DEVICE = "COURSE_DEVICE"
DATA_DIR = "COURSE_DATA_DIR"
CACHE_DIR = "COURSE_CACHE_DIR"
RECORD_FILE = "COURSE_RECORD_FILE"
