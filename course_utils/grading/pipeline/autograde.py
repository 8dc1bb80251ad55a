"""``autograde``: grade every submission in parallel, jailed, with verdicts decided outside the jail.

1. the solution notebooks' records are loaded from the cache (``references``) or made first, on the engine;
2. each submitted notebook becomes a job (its bytes, its files, the gradebook's snapshot of its source) that
   a Dask worker sanitizes with nbgrader and runs in a jailed kernel forked from the worker's template
   (``engine``, ``jobs``); each constrained task becomes one more job, its answer cell alone with its test
   cell (``tasks``), so nothing else in the notebook can change that task's grade;
3. this process, the only writer, reads each notebook's records back safely (``records``), compares them
   with the references (``scoring``, ``verdicts``), writes ``autograded/<student>/<assignment>/`` and the
   student's result file (``results``) as soon as the student's notebooks are all back, and at the end
   applies every result to the gradebook (``gradebook``). A re-run skips students whose
   submission, references and limits are unchanged, so an interrupted run resumes where it stopped. A job
   the grader itself could not finish (a broken machine, a worker that kept dying) leaves the student's
   earlier result as it was and is reported, never scored.

    >>> reports = autograde(Course.load("."), ["01_tensors_vs_numpy"], workers=2)  # doctest: +SKIP
    >>> print(reports[0].summary())                                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from course_utils.atomic import write_atomically
from course_utils.grading import files as tree
from course_utils.grading.cells import grade_id as grade_id_of
from course_utils.grading.cells import graded_cells
from course_utils.grading.course import Course, CourseError
from course_utils.grading.pipeline.gradebook import write_scores
from course_utils.grading.pipeline.references import (
    REFERENCE,
    cached_reference,
    job_names,
    reference_job,
    reference_key,
    store_reference,
)
from course_utils.grading.pipeline.release import ensure_released
from course_utils.grading.pipeline.results import load_result, result_notes, result_totals, write_result
from course_utils.grading.pipeline.sanitize import SourceSnapshot
from course_utils.grading.pipeline.scoring import TaskRun, score_notebook
from course_utils.grading.pipeline.tasks import (
    answer_id_of,
    answer_source,
    job_name,
    read_submitted,
    split_job_name,
    task_notebook,
)
from course_utils.grading.runner.engine import Engine
from course_utils.grading.runner.jobs import Job, JobOutput, read_files
from course_utils.grading.runner.sandbox import probe


@dataclass
class AutogradeReport:
    assignment: str
    graded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    totals: dict[str, tuple[float, float]] = field(default_factory=dict)  # student -> (score, max)
    notes: dict[str, list[str]] = field(default_factory=dict)  # student -> limits / problems
    seconds_per_notebook: list[float] = field(default_factory=list)
    reference_seconds: float = 0.0  # execution time of the solution notebooks this run had to run
    not_graded: dict[str, str] = field(default_factory=dict)  # student -> why the grader could not
    stages: list[dict] = field(default_factory=list)  # per notebook: seconds per stage

    def summary(self) -> str:
        lines = [
            f"{self.assignment}: graded {len(self.graded)}, unchanged {len(self.reused)}"
            + (f", NOT GRADED {len(self.not_graded)} (run autograde again)" if self.not_graded else "")
        ]
        for student, why in sorted(self.not_graded.items()):
            lines.append(f"  {student:<24} not graded: {why[:160]}")
        for student, (score, top) in sorted(self.totals.items()):
            note = "; ".join(self.notes.get(student, []))
            lines.append(f"  {student:<24} {score:6.1f} / {top:<6.1f} {note[:110]}")
        if self.reference_seconds:
            lines.append(f"  solution notebooks run for new reference records: {self.reference_seconds:.1f} s")
        if self.seconds_per_notebook:
            mean = sum(self.seconds_per_notebook) / len(self.seconds_per_notebook)
            lines.append(f"  mean execution time per notebook: {mean:.1f} s")
        return "\n".join(lines)


def _submission_fingerprint(folder: Path, reference: str, limits, sandboxed: bool) -> str:
    """A hash of every file of a submission folder (links as such), the reference key and the limits."""
    return tree.tree_digest(folder, reference, limits.to_dict(), sandboxed)


# ---------------------------------------------------------------- one student


def _annotate(nb_json: str, scores) -> str:
    """The executed notebook with each test cell's trusted verdict appended to its outputs; ValueError if it is
    not a valid notebook (the job makes it safe and valid: only a broken or forged result is not)."""
    errors: dict = {}
    nb = nbformat.reads(nb_json, as_version=4, capture_validation_error=errors)
    if errors:
        raise ValueError("the executed notebook is not a valid notebook")
    by_id = {s.grade_id: s for s in scores}
    for cell in nb.cells:
        score = by_id.get(grade_id_of(cell))
        if score is not None and cell.cell_type == "code" and score.score is not None:
            cell.outputs.append(
                nbformat.v4.new_output(
                    "stream", name="stdout", text=f"[grader] {score.score:g} / {score.max_score:g}: {score.message}\n"
                )
            )
    return nbformat.writes(nb)


def _finish_student(
    course: Course,
    assignment: str,
    student: str,
    outputs: list[JobOutput],
    references: dict,
    fingerprint: str,
    cells_of: dict[str, list],
    answers: dict,
) -> dict:
    """Score one student's notebooks (each with its constrained tasks' own jobs), write the autograded copies and
    the result file; return the result. ``answers`` maps a task's job name to the answer cell it ran."""
    result = {"student": student, "assignment": assignment, "fingerprint": fingerprint, "notebooks": {}}
    target = course.autograded_dir / student / assignment
    cap = course.limits.record_bytes
    task_outputs = [o for o in outputs if split_job_name(o.notebook)[1] is not None]
    for out in sorted((o for o in outputs if split_job_name(o.notebook)[1] is None), key=lambda o: o.notebook):
        cells = cells_of[out.notebook]
        records = out.records(cap)
        tasks = {
            split_job_name(t.notebook)[1]: TaskRun(
                answers.get(t.notebook),
                t.records(cap),
                references[t.notebook],
                t.notebook_json,
                t.problem,
                t.limits_hit,
            )
            for t in task_outputs
            if split_job_name(t.notebook)[0] == out.notebook
        }
        scores = score_notebook(
            cells,
            records,
            references[out.notebook],
            problem=out.problem,
            limits_hit=out.limits_hit,
            notebook=out.notebook_json,
            tasks=tasks,
        )
        answer_of = {c.grade_id: c.answer_id for c in cells}
        seconds = out.seconds + sum(t.seconds for t in task_outputs if split_job_name(t.notebook)[0] == out.notebook)
        result["notebooks"][out.notebook] = {
            "seconds": round(seconds, 2),
            "limits_hit": out.limits_hit,
            "problem": out.problem,
            "cells": [dict(s.to_dict(), answer_id=answer_of[s.grade_id]) for s in scores],
        }
        if out.notebook_json is not None:
            try:
                annotated = _annotate(out.notebook_json, scores)
            except (ValueError, RecursionError, AttributeError, TypeError):
                continue  # nothing to show in the formgrader; the scores stand
            write_atomically(target / f"{out.notebook}.ipynb", annotated)
    write_result(course, result)
    return result


# ---------------------------------------------------------------- the whole class


@dataclass
class _Plan:
    """What one assignment needs from the engine: its missing references and its students' notebooks."""

    report: AutogradeReport
    key: str
    references: dict = field(default_factory=dict)  # job name -> records (None: being computed)
    cells: dict = field(default_factory=dict)  # notebook -> graded cells of the source, read once
    jobs: list[Job] = field(default_factory=list)
    pending: dict = field(default_factory=dict)  # student -> [JobOutput]
    fingerprints: dict = field(default_factory=dict)  # student -> fingerprint
    answers: dict = field(default_factory=dict)  # student -> {task's job name: the answer cell it runs}


def _notebook_bytes(path: Path, cap: int) -> bytes | None:
    """The submitted notebook's bytes (None: missing or a link); a file over ``cap`` is cut, so it fails to parse."""
    if not path.is_file() or path.is_symlink():
        return None
    with open(path, "rb") as handle:
        return handle.read(cap + 1)


def _plan(course: Course, assignment: str, students, sandboxed: bool, force: bool) -> _Plan:
    """The jobs of every student whose submission changed (or all, with ``force``); unchanged ones are reused."""
    key = reference_key(course, assignment)
    notebooks = course.notebooks(assignment)
    plan = _Plan(
        AutogradeReport(assignment),
        key,
        {name: cached_reference(course, assignment, name, key) for name in job_names(course, assignment)},
        {nb: graded_cells(course.source_notebook(assignment, nb)) for nb in notebooks},
    )
    sources = {nb: nbformat.read(course.source_notebook(assignment, nb), as_version=4) for nb in notebooks}
    task_jobs = [split_job_name(name) for name in plan.references if split_job_name(name)[1] is not None]
    snapshots = {
        nb: SourceSnapshot.from_gradebook(course.db_url, course.coursedir.course_id, assignment, nb) for nb in notebooks
    }
    limits, keep = course.limits, course.setting("Grader", "keep_jobs")
    course_files = read_files(course.source_dir / assignment, limits.disk_bytes)
    for student in students or course.submitted_students(assignment):
        folder = course.submitted_dir / student / assignment
        fingerprint = _submission_fingerprint(folder, key, limits, sandboxed)
        previous = load_result(course, assignment, student)
        if previous and previous.get("fingerprint") == fingerprint and not force:
            plan.report.reused.append(student)
            continue
        plan.fingerprints[student], plan.pending[student] = fingerprint, []
        names = {rel for rel, _ in course_files}
        files = [(rel, data) for rel, data in read_files(folder, limits.disk_bytes) if rel not in names]
        submitted = {}
        for notebook in notebooks:
            submitted[notebook] = _notebook_bytes(folder / f"{notebook}.ipynb", limits.notebook_bytes)
            plan.jobs.append(
                Job(
                    student,
                    assignment,
                    notebook,
                    submitted[notebook],
                    course_files + files,
                    snapshots[notebook],
                    limits,
                    sandboxed,
                    keep,
                )
            )
        plan.answers[student] = {}
        mine = {
            nb: read_submitted(data)
            for nb, data in submitted.items()
            if task_jobs and len(data or b"") <= limits.notebook_bytes
        }
        for notebook, task in task_jobs:  # the answer cell alone, with the source's set-up and test cells
            name = job_name(notebook, task)
            plan.answers[student][name] = answer_source(mine.get(notebook), answer_id_of(sources[notebook], task))
            data = nbformat.writes(task_notebook(sources[notebook], mine.get(notebook), task)).encode("utf-8")
            plan.jobs.append(Job(student, assignment, name, data, course_files, None, limits, sandboxed, keep))
    return plan


def _finish_ready(course: Course, plan: _Plan) -> None:
    """Score every student whose notebooks have all run, once the assignment's references are known."""
    if any(ref is None for ref in plan.references.values()):
        return
    for student, outputs in list(plan.pending.items()):
        if len(outputs) == len(plan.references):
            failed = [o for o in outputs if o.internal_error]
            if failed:  # the grader could not run it: keep the earlier result, say so, grade it next time
                plan.report.not_graded[student] = failed[0].problem or "internal grader error"
            else:
                try:
                    _finish_student(
                        course,
                        plan.report.assignment,
                        student,
                        outputs,
                        plan.references,
                        plan.fingerprints[student],
                        plan.cells,
                        plan.answers.get(student, {}),
                    )
                    plan.report.graded.append(student)
                except OSError as error:  # e.g. the grading folder's disk is full: keep the old result
                    plan.report.not_graded[student] = f"its result could not be written ({error})"
            del plan.pending[student]


def _take(course: Course, plans: dict[str, _Plan], out: JobOutput) -> None:
    plan = plans[out.assignment]
    if out.student == REFERENCE:
        plan.references[out.notebook] = store_reference(course, out, out.records(course.limits.record_bytes), plan.key)
        plan.report.reference_seconds += out.seconds
    else:
        plan.pending[out.student].append(out)
        if split_job_name(out.notebook)[1] is None:
            plan.report.seconds_per_notebook.append(out.seconds)
        plan.report.stages.append(out.stages)
    _finish_ready(course, plan)


def _run(course: Course, plans: dict[str, _Plan], sandboxed: bool, engine: Engine, progress: bool) -> None:
    """Run every missing reference (first) and every job on the engine; score students as results come in."""
    missing = [(a, nb) for a, plan in plans.items() for nb, ref in plan.references.items() if ref is None]
    reference_jobs = [reference_job(course, a, nb, sandboxed) for a, nb in missing]
    jobs = reference_jobs + [job for plan in plans.values() for job in plan.jobs]
    if not jobs:
        return
    if sandboxed:
        engine.check_sandbox()
    with tqdm(total=len(jobs), desc="autograde", unit="nb", disable=not progress) as bar:
        for _, out in engine.run(jobs, first=len(reference_jobs)):
            _take(course, plans, out)
            bar.update()


def _summarize(course: Course, report: AutogradeReport) -> list[dict]:
    results = [r for s in report.graded + report.reused if (r := load_result(course, report.assignment, s))]
    for result in results:
        report.totals[result["student"]] = result_totals(result)
        if notes := result_notes(result):
            report.notes[result["student"]] = notes
    return results


def autograde(
    course: Course,
    assignments: list[str] | None = None,
    *,
    students: list[str] | None = None,
    workers: int | None = None,
    sandboxed: bool = True,
    force: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    engine: Engine | None = None,
    lock=None,
    certificates: Path | None = None,
) -> list[AutogradeReport]:
    """Grade ``students`` (default: every submission) of ``assignments`` (default: all) on one engine.

        >>> [r.summary() for r in autograde(course, ["01_tensors_vs_numpy"], workers=2)]  # doctest: +SKIP

    The engine is a Dask cluster: ``engine`` (one you keep between calls), else a cluster at ``scheduler``,
    else a local cluster of ``workers`` made for this call (``runner.engine``: threads of this process up to a
    few, worker processes beyond). Returns one report per assignment
    (see the module docstring for what happens). ``lock`` (held while the release and the gradebook are read
    or written, never while notebooks run) lets several calls for different students share one course.
    """
    lock = lock or contextlib.nullcontext()
    assignments = assignments or course.assignments()
    for assignment in assignments:
        course.check_assignment(assignment)
    if sandboxed:
        probe()
    plans = {}
    with lock:
        for assignment in assignments:
            ensure_released(course, assignment)
            plans[assignment] = _plan(course, assignment, students, sandboxed, force)
    if engine is not None:
        _run(course, plans, sandboxed, engine, progress)
    elif any(plan.jobs for plan in plans.values()) or any(None in p.references.values() for p in plans.values()):
        with Engine(scheduler=scheduler, workers=workers, certificates=certificates) as fresh:
            _run(course, plans, sandboxed, fresh, progress)
    results = [r for plan in plans.values() for r in _summarize(course, plan.report)]
    try:
        with lock:
            write_scores(course, results)
    except (OSError, SQLAlchemyError) as error:  # e.g. a full disk: the result files hold every decision
        raise CourseError(
            f"the gradebook {course.db_path} could not be updated ({str(error).splitlines()[0][:200]}); "
            f"every result is kept in {course.results_dir}: free the space and run autograde again "
            "(unchanged submissions are not graded twice)"
        ) from None
    return [plan.report for plan in plans.values()]
