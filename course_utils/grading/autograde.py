"""Grade every submission of an assignment in parallel, jailed, with verdicts decided outside the jail.

1. the solution notebook runs once (cached by a hash of the source and checks.py) -> reference records;
2. each submitted notebook is sanitized by nbgrader and run jailed in a worker process -> its records
   (one pool of forked workers for every assignment of the run; missing references run in it first);
3. the parent compares records with ``course_utils.checks.compare_records`` -> points per test cell,
   writes ``autograded/<student>/<assignment>/`` and a result file per student (atomically), and at
   the end applies every result to the gradebook in one swap. A re-run skips students whose
   submission, reference and limits are unchanged, so an interrupted run resumes where it stopped.

    >>> report = autograde(Course.load("."), "01_tensors_vs_numpy", workers=2)  # doctest: +SKIP
    >>> print(report.summary())
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch
from tqdm import tqdm

from course_utils.checks import load_records
from course_utils.grading.course import Course, CourseError, is_safe_id
from course_utils.grading.gradebook import write_scores
from course_utils.grading.jobs import Job, JobOutput, run_job
from course_utils.grading.release import ensure_in_gradebook
from course_utils.grading.sandbox import probe
from course_utils.grading.scoring import graded_cells, score_notebook


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


# ---------------------------------------------------------------- helpers


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _regular_files(folder: Path) -> list[tuple[Path, str]]:
    """Non-notebook regular files under ``folder`` as (path, relative path); links are never followed."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints" and not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if not name.endswith(".ipynb") and not path.is_symlink() and path.is_file():
                files.append((path, str(path.relative_to(folder))))
    return files


def _fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
    return digest.hexdigest()


def _submission_fingerprint(folder: Path, reference_key: str, limits, sandboxed: bool) -> str:
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(names):
            path = Path(root) / name
            files.append((str(path.relative_to(folder)), path.read_bytes() if path.is_file() and not path.is_symlink() else b"link"))
    return _fingerprint(sorted(files), reference_key, limits, sandboxed)


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, all started at once before the parent starts any thread or kernel.

    ``fork`` (where the platform has it) makes a worker free to start: it inherits the parent's imported
    nbgrader, nbclient and torch instead of importing them again (seconds per worker). The executor forks
    every worker before its manager thread starts, and the parent has not touched ZMQ or torch's thread
    pools yet, so nothing half-locked is copied. Elsewhere: ``spawn``.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


# ---------------------------------------------------------------- references


def _reference_paths(course: Course, assignment: str, notebook: str) -> tuple[Path, Path]:
    folder = course.workspace / "references" / assignment
    return folder / f"{notebook}.pt", folder / f"{notebook}.key"


def _cached_reference(course: Course, assignment: str, notebook: str, key: str) -> dict | None:
    cached, stamp = _reference_paths(course, assignment, notebook)
    if cached.is_file() and stamp.is_file() and stamp.read_text() == key:
        return load_records(cached)
    return None


def _reference_job(course: Course, assignment: str, notebook: str, sandboxed: bool, uid_slot: int) -> Job:
    source = course.source_dir / assignment
    return Job("__reference__", assignment, notebook, source / f"{notebook}.ipynb", _regular_files(source),
               course.db_url, course.limits, sandboxed, sanitize=False, uid_slot=uid_slot)


def _store_reference(course: Course, out: JobOutput, key: str) -> dict:
    if out.problem or out.limits_hit or not out.records:
        raise CourseError(f"The solution notebook {out.assignment}/{out.notebook} did not run cleanly, so there is "
                          f"nothing trusted to grade against: {out.problem or '; '.join(out.limits_hit) or 'no records'}")
    cached, stamp = _reference_paths(course, out.assignment, out.notebook)
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out.records, cached)
    _write_atomically(stamp, key)
    return load_records(cached)


#: uid slots of reference runs (student jobs count up from 0)
REFERENCE_UID_SLOT = 3900


# ---------------------------------------------------------------- one student


def _annotate(nb_json: str, scores) -> str:
    """The executed notebook with each test cell's trusted verdict appended to its outputs."""
    nb = nbformat.reads(nb_json, as_version=4)
    by_id = {s.grade_id: s for s in scores}
    for cell in nb.cells:
        score = by_id.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if score is not None and cell.cell_type == "code" and score.score is not None:
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"[grader] {score.score:g} / {score.max_score:g}: {score.message}\n"))
    return nbformat.writes(nb)


def _finish_student(course: Course, assignment: str, student: str, outputs: list[JobOutput],
                    references: dict, fingerprint: str, cells_of: dict[str, list] | None = None) -> dict:
    """Score one student's notebooks; ``cells_of`` (notebook -> graded cells) saves re-reading the source."""
    result = {"student": student, "assignment": assignment, "fingerprint": fingerprint, "notebooks": {}}
    target = course.autograded_dir / student / assignment
    for out in sorted(outputs, key=lambda o: o.notebook):
        cells = (cells_of or {}).get(out.notebook) or graded_cells(
            course.source_dir / assignment / f"{out.notebook}.ipynb")
        scores = score_notebook(cells, out.records, references[out.notebook],
                                problem=out.problem, limits_hit=out.limits_hit)
        answer_of = {c.grade_id: c.answer_id for c in cells}
        result["notebooks"][out.notebook] = {
            "seconds": round(out.seconds, 2), "limits_hit": out.limits_hit, "problem": out.problem,
            "cells": [dict(s.to_dict(), answer_id=answer_of[s.grade_id]) for s in scores]}
        if out.notebook_json is not None:
            _write_atomically(target / f"{out.notebook}.ipynb", _annotate(out.notebook_json, scores))
    _write_atomically(result_path(course, assignment, student), json.dumps(result, indent=1))
    return result


def result_path(course: Course, assignment: str, student: str) -> Path:
    return course.workspace / "results" / assignment / f"{student}.json"


def load_result(course: Course, assignment: str, student: str) -> dict | None:
    path = result_path(course, assignment, student)
    return json.loads(path.read_text()) if path.is_file() else None


def result_totals(result: dict) -> tuple[float, float]:
    cells = [c for nb in result["notebooks"].values() for c in nb["cells"]]
    return sum(c["score"] or 0 for c in cells), sum(c["max_score"] for c in cells)


# ---------------------------------------------------------------- the whole class


def submitted_students(course: Course, assignment: str) -> list[str]:
    if not course.submitted_dir.is_dir():
        return []
    return sorted(p.name for p in course.submitted_dir.iterdir()
                  if is_safe_id(p.name) and (p / assignment).is_dir() and not (p / assignment).is_symlink())


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
    key = course.source_fingerprint(assignment)
    notebooks = course.notebooks(assignment)
    plan = _Plan(AutogradeReport(assignment), key,
                 {nb: _cached_reference(course, assignment, nb, key) for nb in notebooks},
                 {nb: graded_cells(course.source_dir / assignment / f"{nb}.ipynb") for nb in notebooks})
    slot = first_slot
    for student in students or submitted_students(course, assignment):
        folder = course.submitted_dir / student / assignment
        fingerprint = _submission_fingerprint(folder, key, course.limits, sandboxed)
        previous = load_result(course, assignment, student)
        if previous and previous.get("fingerprint") == fingerprint and not force:
            plan.report.reused.append(student)
            continue
        plan.fingerprints[student], plan.pending[student] = fingerprint, []
        extra = _regular_files(folder) + _regular_files(course.source_dir / assignment)  # the course's files win
        for notebook in notebooks:
            path = folder / f"{notebook}.ipynb"
            present = path.is_file() and not path.is_symlink()
            plan.jobs.append(Job(student, assignment, notebook, path if present else None, extra, course.db_url,
                                 course.limits, sandboxed, uid_slot=slot))
            slot += 1
    return plan


def _finish_ready(course: Course, plan: _Plan, n_notebooks: int) -> None:
    """Score every student whose notebooks have all run, once the assignment's references are known."""
    if any(ref is None for ref in plan.references.values()):
        return
    for student, outputs in list(plan.pending.items()):
        if len(outputs) == n_notebooks:
            _finish_student(course, plan.report.assignment, student, outputs, plan.references,
                            plan.fingerprints[student], plan.cells)
            plan.report.graded.append(student)
            del plan.pending[student]


def _run_pool(course: Course, plans: dict[str, _Plan], sandboxed: bool, workers: int | None, progress: bool) -> None:
    """Run every missing reference and every job in one pool; score students as their results come in."""
    missing = [(a, nb) for a, plan in plans.items() for nb, ref in plan.references.items() if ref is None]
    reference_jobs = [_reference_job(course, a, nb, sandboxed, REFERENCE_UID_SLOT + i)
                      for i, (a, nb) in enumerate(missing)]
    jobs = reference_jobs + [job for plan in plans.values() for job in plan.jobs]  # references first: others wait
    if not jobs:
        return
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    counts = {a: len(course.notebooks(a)) for a in plans}
    pool = _pool(workers)
    try:
        futures = [pool.submit(run_job, job) for job in jobs]  # forks the workers, before tqdm starts its thread
        with tqdm(total=len(jobs), desc="autograde", unit="nb", disable=not progress) as bar:
            for future in as_completed(futures):
                out = future.result()
                plan = plans[out.assignment]
                if out.student == "__reference__":
                    plan.references[out.notebook] = _store_reference(course, out, plan.key)
                    plan.report.reference_seconds += out.seconds
                else:
                    plan.pending[out.student].append(out)
                    plan.report.seconds_per_notebook.append(out.seconds)
                _finish_ready(course, plan, counts[out.assignment])
                bar.update()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _summarize(course: Course, report: AutogradeReport) -> list[dict]:
    results = [r for s in report.graded + report.reused if (r := load_result(course, report.assignment, s))]
    for result in results:
        report.totals[result["student"]] = result_totals(result)
        notes = [n for nb in result["notebooks"].values() for n in nb["limits_hit"] + [nb["problem"]] if n]
        if notes:
            report.notes[result["student"]] = notes
    return results


def autograde_many(course: Course, assignments: list[str], *, students: list[str] | None = None,
                   workers: int | None = None, sandboxed: bool = True, force: bool = False,
                   progress: bool = True) -> list[AutogradeReport]:
    """Grade several assignments in one worker pool (see the module docstring); one report each.

        >>> [r.summary() for r in autograde_many(course, course.assignments(), workers=2)]  # doctest: +SKIP
    """
    for assignment in assignments:
        course.check_assignment(assignment)
    if sandboxed:
        probe()
    plans, slot = {}, 0
    for assignment in assignments:
        ensure_in_gradebook(course, assignment)
        plans[assignment] = _plan(course, assignment, students, sandboxed, force, slot)
        slot += len(plans[assignment].jobs)
    _run_pool(course, plans, sandboxed, workers, progress)
    results = [r for plan in plans.values() for r in _summarize(course, plan.report)]
    write_scores(course, results)
    return [plan.report for plan in plans.values()]


def autograde(course: Course, assignment: str, *, students: list[str] | None = None, workers: int | None = None,
              sandboxed: bool = True, force: bool = False, progress: bool = True) -> AutogradeReport:
    """Grade ``students`` (default: every submission) of ``assignment``; see the module docstring."""
    return autograde_many(course, [assignment], students=students, workers=workers, sandboxed=sandboxed,
                          force=force, progress=progress)[0]
