"""``autograde``: grade every submission in parallel, jailed, with verdicts decided outside the jail.

1. the solution notebooks' records are loaded from the cache (``references``) or made in the pool first;
2. each submitted notebook is sanitized by nbgrader and run jailed in a worker process (``jobs``), one
   pool of forked workers for every assignment of the run;
3. the parent compares each notebook's records with the references (``scoring``, ``verdicts``), writes
   ``autograded/<student>/<assignment>/`` and the student's result file (``results``), and at the end
   applies every result to the gradebook in one swap (``gradebook``). A re-run skips students whose
   submission, references and limits are unchanged, so an interrupted run resumes where it stopped.

    >>> reports = autograde(Course.load("."), ["01_tensors_vs_numpy"], workers=2)  # doctest: +SKIP
    >>> print(reports[0].summary())
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from course_utils.atomic import write_atomically
from course_utils.grading.cells import graded_cells
from course_utils.grading.cells import grade_id as grade_id_of
from course_utils.grading.constraints import shipped_modules
from course_utils.grading.course import Course
from course_utils.grading.gradebook import write_scores
from course_utils.grading.jobs import Job, JobOutput, regular_files, run_job
from course_utils.grading.references import (REFERENCE, REFERENCE_UID_SLOT, cached_reference, reference_job,
                                             reference_key, store_reference)
from course_utils.grading.release import ensure_released
from course_utils.grading.results import load_result, result_notes, result_totals, write_result
from course_utils.grading.sandbox import probe
from course_utils.grading.scoring import score_notebook


@dataclass
class AutogradeReport:
    assignment: str
    graded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    totals: dict[str, tuple[float, float]] = field(default_factory=dict)   # student -> (score, max)
    notes: dict[str, list[str]] = field(default_factory=dict)             # student -> limits / problems
    seconds_per_notebook: list[float] = field(default_factory=list)
    reference_seconds: float = 0.0    # execution time of the solution notebooks this run had to run

    def summary(self) -> str:
        lines = [f"{self.assignment}: graded {len(self.graded)}, unchanged {len(self.reused)}"]
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
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(folder, followlinks=False)):
        for name in sorted(names):
            path = Path(root) / name
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else b"link"
            digest.update(repr(str(path.relative_to(folder))).encode() + b"\0" + content)
    digest.update(repr((reference, limits, sandboxed)).encode())
    return digest.hexdigest()


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, all started at once before the parent starts any thread or kernel.

    ``fork`` (where the platform has it) makes a worker free to start: it inherits the parent's imported
    nbgrader, nbclient and torch instead of importing them again (seconds per worker). The executor forks
    every worker before its manager thread starts, and the parent has not touched ZMQ or torch's thread
    pools yet, so nothing half-locked is copied. Elsewhere: ``spawn``.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


# ---------------------------------------------------------------- one student


def _annotate(nb_json: str, scores) -> str:
    """The executed notebook with each test cell's trusted verdict appended to its outputs."""
    nb = nbformat.reads(nb_json, as_version=4)
    by_id = {s.grade_id: s for s in scores}
    for cell in nb.cells:
        score = by_id.get(grade_id_of(cell))
        if score is not None and cell.cell_type == "code" and score.score is not None:
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"[grader] {score.score:g} / {score.max_score:g}: {score.message}\n"))
    return nbformat.writes(nb)


def _finish_student(course: Course, assignment: str, student: str, outputs: list[JobOutput],
                    references: dict, fingerprint: str, cells_of: dict[str, list]) -> dict:
    """Score one student's notebooks, write the autograded copies and the result file; return the result."""
    result = {"student": student, "assignment": assignment, "fingerprint": fingerprint, "notebooks": {}}
    target = course.autograded_dir / student / assignment
    shipped = shipped_modules(rel for _, rel in regular_files(course.submitted_dir / student / assignment))
    for out in sorted(outputs, key=lambda o: o.notebook):
        cells = cells_of[out.notebook]
        scores = score_notebook(cells, out.records, references[out.notebook], problem=out.problem,
                                limits_hit=out.limits_hit, notebook=out.notebook_json, shipped=shipped)
        answer_of = {c.grade_id: c.answer_id for c in cells}
        result["notebooks"][out.notebook] = {
            "seconds": round(out.seconds, 2), "limits_hit": out.limits_hit, "problem": out.problem,
            "cells": [dict(s.to_dict(), answer_id=answer_of[s.grade_id]) for s in scores]}
        if out.notebook_json is not None:
            write_atomically(target / f"{out.notebook}.ipynb", _annotate(out.notebook_json, scores))
    write_result(course, result)
    return result


# ---------------------------------------------------------------- the whole class


@dataclass
class _Plan:
    """What one assignment needs from the pool: its missing references and its students' notebooks."""
    report: AutogradeReport
    key: str
    references: dict = field(default_factory=dict)    # notebook -> records (None: being computed)
    cells: dict = field(default_factory=dict)         # notebook -> graded cells of the source, read once
    jobs: list[Job] = field(default_factory=list)
    pending: dict = field(default_factory=dict)        # student -> [JobOutput]
    fingerprints: dict = field(default_factory=dict)   # student -> fingerprint


def _plan(course: Course, assignment: str, students, sandboxed: bool, force: bool, first_slot: int) -> _Plan:
    """The jobs of every student whose submission changed (or all, with ``force``); unchanged ones are reused."""
    key = reference_key(course, assignment)
    notebooks = course.notebooks(assignment)
    plan = _Plan(AutogradeReport(assignment), key,
                 {nb: cached_reference(course, assignment, nb, key) for nb in notebooks},
                 {nb: graded_cells(course.source_notebook(assignment, nb)) for nb in notebooks})
    slot = first_slot
    for student in students or course.submitted_students(assignment):
        folder = course.submitted_dir / student / assignment
        fingerprint = _submission_fingerprint(folder, key, course.limits, sandboxed)
        previous = load_result(course, assignment, student)
        if previous and previous.get("fingerprint") == fingerprint and not force:
            plan.report.reused.append(student)
            continue
        plan.fingerprints[student], plan.pending[student] = fingerprint, []
        extra = regular_files(folder) + regular_files(course.source_dir / assignment)  # the course's files win
        for notebook in notebooks:
            path = folder / f"{notebook}.ipynb"
            present = path.is_file() and not path.is_symlink()
            plan.jobs.append(Job(student, assignment, notebook, path if present else None, extra, course.db_url,
                                 course.limits, sandboxed, uid_slot=slot))
            slot += 1
    return plan


def _finish_ready(course: Course, plan: _Plan) -> None:
    """Score every student whose notebooks have all run, once the assignment's references are known."""
    if any(ref is None for ref in plan.references.values()):
        return
    for student, outputs in list(plan.pending.items()):
        if len(outputs) == len(plan.references):
            _finish_student(course, plan.report.assignment, student, outputs, plan.references,
                            plan.fingerprints[student], plan.cells)
            plan.report.graded.append(student)
            del plan.pending[student]


def _run_pool(course: Course, plans: dict[str, _Plan], sandboxed: bool, workers: int | None, progress: bool) -> None:
    """Run every missing reference and every job in one pool; score students as their results come in."""
    missing = [(a, nb) for a, plan in plans.items() for nb, ref in plan.references.items() if ref is None]
    reference_jobs = [reference_job(course, a, nb, sandboxed, REFERENCE_UID_SLOT + i)
                      for i, (a, nb) in enumerate(missing)]
    jobs = reference_jobs + [job for plan in plans.values() for job in plan.jobs]  # references first: others wait
    if not jobs:
        return
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    pool = _pool(workers)
    try:
        futures = [pool.submit(run_job, job) for job in jobs]  # forks the workers, before tqdm starts its thread
        with tqdm(total=len(jobs), desc="autograde", unit="nb", disable=not progress) as bar:
            for future in as_completed(futures):
                out = future.result()
                plan = plans[out.assignment]
                if out.student == REFERENCE:
                    plan.references[out.notebook] = store_reference(course, out, plan.key)
                    plan.report.reference_seconds += out.seconds
                else:
                    plan.pending[out.student].append(out)
                    plan.report.seconds_per_notebook.append(out.seconds)
                _finish_ready(course, plan)
                bar.update()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _summarize(course: Course, report: AutogradeReport) -> list[dict]:
    results = [r for s in report.graded + report.reused if (r := load_result(course, report.assignment, s))]
    for result in results:
        report.totals[result["student"]] = result_totals(result)
        if notes := result_notes(result):
            report.notes[result["student"]] = notes
    return results


def autograde(course: Course, assignments: list[str] | None = None, *, students: list[str] | None = None,
              workers: int | None = None, sandboxed: bool = True, force: bool = False,
              progress: bool = True) -> list[AutogradeReport]:
    """Grade ``students`` (default: every submission) of ``assignments`` (default: all) in one worker pool.

        >>> [r.summary() for r in autograde(course, ["01_tensors_vs_numpy"], workers=2)]  # doctest: +SKIP

    Returns one report per assignment (see the module docstring for what happens).
    """
    assignments = assignments or course.assignments()
    for assignment in assignments:
        course.check_assignment(assignment)
    if sandboxed:
        probe()
    plans, slot = {}, 0
    for assignment in assignments:
        ensure_released(course, assignment)
        plans[assignment] = _plan(course, assignment, students, sandboxed, force, slot)
        slot += len(plans[assignment].jobs)
    _run_pool(course, plans, sandboxed, workers, progress)
    results = [r for plan in plans.values() for r in _summarize(course, plan.report)]
    write_scores(course, results)
    return [plan.report for plan in plans.values()]
