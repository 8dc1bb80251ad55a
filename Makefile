# PyTorch Foundations: `make lab` starts the course, `make check` runs the fast tests, `make test` every test.
# Both set up .venv on first use (and again only when requirements.txt or pyproject.toml change).
SHELL := /bin/bash
# Python 3.11 to 3.13 (the pinned numpy, pandas and nbgrader need 3.11 or later); the first of these found
# (3.11 first: the version the course is measured on)
PYTHON ?= $(shell for v in 3.11 3.12 3.13; do command -v python$$v && break; done || command -v python3)
VENV := .venv
# a classroom's copy of the course (make hub) names the class's Python here: no second venv
-include classroom.mk
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Versions come from requirements.txt (the one place they are pinned), never from here.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# nbgrader's validate_assignment is replaced by course_utils.grading.lab.server (same route, a per-task summary first).
NBGRADER_SERVER_EXTENSIONS := formgrader assignment_list course_list
export PATH := $(BIN):$(PATH)
# OpenMP threads spin while they wait for work. Alone on the machine that is fastest (passive waits
# made the MLP step 17% slower); but a learner's laptop or a shared hub always has other work, and with
# one other busy process spinning makes lesson 07 ten times slower (figures: make bench, sections
# efficiency and contention). So the lab, the hub's kernels and the test run wait passively; benchmarks
# keep OpenMP's default unless they measure the choice. Neither changes any result.
lab check test hub: export OMP_WAIT_POLICY ?= PASSIVE
# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab update check test setup sandbox-tools browser-tools hub-tools hub hub-down lessons release collect autograde feedback export exercise-stats bench clean-venv

lab: setup ## Start JupyterLab at the repo root (with the nbgrader extensions)
	@$(BIN)/jupyter labextension list 2>&1 | grep -i nbgrader
	@$(BIN)/jupyter server extension list 2>&1 | grep -E '^ +(nbgrader|course_utils)[.a-z_]+ .*enabled'
	$(BIN)/jupyter lab --ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" $(ALLOW_ROOT) $(LAB_ARGS)

update: setup ## Pull the course's updates, keeping your edits and outputs (the hub's merge: nbgitpuller)
	$(BIN)/python -m course_utils.grading lab update --repo "$(CURDIR)"

# make test's pytest-xdist workers (TEST_WORKERS=0: one process); a file's tests stay on one worker (conftest.py)
TEST_WORKERS ?= 2
LINTED := course_utils tests bench scripts conftest.py nbgrader_config.py
check: setup ## The fast tier (about a minute): ruff, then the unit tests and the docstrings' examples
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest tests/unit course_utils --doctest-modules -p no:cacheprovider -n 2 \
		--hypothesis-profile=check $(PYTEST_ARGS)

test: setup browser-tools hub-tools ## Every test: the three tiers (unit, kernel, e2e), the docstrings and the lessons under nbval
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest tests course_utils --doctest-modules notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with nbval_sanitize.cfg -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--durations=25 $(PYTEST_ARGS)

setup: $(if $(SETUP_DONE),,$(STAMP)) sandbox-tools

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else "The course needs Python 3.11, 3.12 or 3.13 (this is %d.%d; the pinned numpy, pandas and nbgrader need 3.11 or later): set PYTHON=/path/to/python3.x" % sys.version_info[:2])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt -e .
	@for ext in $(NBGRADER_SERVER_EXTENSIONS); do \
		$(BIN)/jupyter server extension enable --sys-prefix nbgrader.server_extensions.$$ext >/dev/null 2>&1; done
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1 || true
	@# Validate's summary instead of nbgrader's validate_assignment; Create Assignment hidden from learners
	$(BIN)/python -m course_utils.grading lab enable >/dev/null
	@touch $@

sandbox-tools: ## bubblewrap, which sandboxes student notebooks when grading
	@command -v bwrap >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
		else echo "note: install bubblewrap (sudo apt-get install bubblewrap) to grade submissions in a sandbox"; fi; }

browser-tools: ## Chromium for the browser tests (Debian's package; Playwright drives it)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "note: install chromium (sudo apt-get install chromium) to run the browser tests"; fi; }

HUB_DIR := course_utils/grading/hub
hub-tools: $(HUB_DIR)/node_modules/.installed ## JupyterHub's proxy (npm, pinned in $(HUB_DIR)/package-lock.json) and the system's Python with venv
	@/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
		else echo "note: install python3-venv (sudo apt-get install python3-venv) for make hub"; fi; }

$(HUB_DIR)/node_modules/.installed: $(HUB_DIR)/package.json $(HUB_DIR)/package-lock.json
	@command -v npm >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
		else echo "note: install npm (sudo apt-get install npm) for make hub"; exit 0; fi; }
	cd $(HUB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

HUB_PREFIX ?= /srv/pytorch-foundations
HUB_PORT ?= 8000
HUB_MIN_INTERVAL ?= 60
hub: setup sandbox-tools hub-tools ## Run JupyterHub for a class: make hub ROSTER=students.csv INSTRUCTOR=teacher (as root)
	@test -n "$(ROSTER)" -a -n "$(INSTRUCTOR)" || { echo "usage: make hub ROSTER=students.csv INSTRUCTOR=teacher [HUB_PREFIX=$(HUB_PREFIX)] [HUB_PORT=$(HUB_PORT)] [HUB_MIN_INTERVAL=$(HUB_MIN_INTERVAL)]"; exit 2; }
	$(BIN)/python -m course_utils.grading hub up --roster "$(ROSTER)" --instructor "$(INSTRUCTOR)" \
		--prefix "$(HUB_PREFIX)" --port $(HUB_PORT) --min-interval $(HUB_MIN_INTERVAL) \
		--proxy "$(CURDIR)/$(HUB_DIR)/node_modules/.bin/configurable-http-proxy"

hub-down: setup ## Stop the classroom; accounts, homes and grades stay (HUB_DOWN_ARGS="--remove-accounts", "--purge-homes")
	$(BIN)/python -m course_utils.grading hub down --prefix "$(HUB_PREFIX)" $(HUB_DOWN_ARGS)

lessons: setup ## Re-execute every lesson top to bottom, storing outputs
	$(BIN)/python scripts/execute_notebooks.py notebooks/[0-9]*.ipynb

GRADE := $(BIN)/python -m course_utils.grading
release: setup ## Regenerate exercises/ from solutions/ with nbgrader
	$(GRADE) release $(ASSIGNMENT)

collect: setup ## Copy submissions from INBOX (and ASSIGNMENT for single .ipynb/.zip files) into grading/submitted
	@test -n "$(INBOX)" || { echo "usage: make collect INBOX=path/to/submissions [ASSIGNMENT=01_tensors_vs_numpy]"; exit 2; }
	$(GRADE) collect "$(INBOX)" $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

autograde: setup ## Grade every collected submission in parallel, sandboxed (ASSIGNMENT=... for one)
	$(GRADE) autograde $(ASSIGNMENT) $(GRADE_ARGS)

feedback: setup ## One HTML feedback file per student, hidden tests removed
	$(GRADE) feedback $(ASSIGNMENT)

export: setup ## Gradebook CSV and a histogram PNG per task, in grading/export
	$(GRADE) export

exercise-stats: setup ## Tasks, points, visible/hidden tests and grading time per exercise notebook
	$(GRADE) stats $(ASSIGNMENT)

bench: setup ## Run every benchmark, print a table, write bench/results/bench.json
	$(BIN)/python -m bench.run

clean-venv:
	rm -rf $(VENV)
