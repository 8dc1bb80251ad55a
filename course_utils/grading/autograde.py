"""Grade every submission of an assignment in parallel, jailed, with verdicts decided outside the jail.

1. the solution notebook runs once (cached by a hash of the source and checks.py) -> reference records;
2. each submitted notebook is sanitized by nbgrader and run jailed in a worker process -> its records;
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

    def summary(self) -> str:
        lines = [f"{self.assignment}: graded {len(self.graded)}, unchanged {len(self.reused)}"]
        for student, (score, top) in sorted(self.totals.items()):
            note = "; ".join(self.notes.get(student, []))
            lines.append(f"  {student:<24} {score:6.1f} / {top:<6.1f} {note[:110]}")
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
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


# ---------------------------------------------------------------- references


def reference_records(course: Course, assignment: str, sandboxed: bool) -> tuple[dict[str, dict], str]:
    """Records of the solution notebooks, run jailed like a submission (cached); and their fingerprint."""
    key = course.source_fingerprint(assignment)
    folder = course.workspace / "references" / assignment
    references = {}
    for notebook in course.notebooks(assignment):
        cached, stamp = folder / f"{notebook}.pt", folder / f"{notebook}.key"
        if not (cached.is_file() and stamp.is_file() and stamp.read_text() == key):
            source = course.source_dir / assignment
            out = run_job(Job("__reference__", assignment, notebook, source / f"{notebook}.ipynb",
                              _regular_files(source), course.db_url, course.limits, sandboxed, sanitize=False,
                              uid_slot=3999))
            if out.problem or out.limits_hit or not out.records:
                raise CourseError(f"The solution notebook {assignment}/{notebook} did not run cleanly, so there is "
                                  f"nothing trusted to grade against: {out.problem or out.limits_hit or 'no records'}")
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(out.records, cached)
            _write_atomically(stamp, key)
        references[notebook] = load_records(cached)
    return references, key


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
                    references: dict, fingerprint: str) -> dict:
    result = {"student": student, "assignment": assignment, "fingerprint": fingerprint, "notebooks": {}}
    target = course.autograded_dir / student / assignment
    for out in outputs:
        cells = graded_cells(course.source_dir / assignment / f"{out.notebook}.ipynb")
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


def autograde(course: Course, assignment: str, *, students: list[str] | None = None, workers: int | None = None,
              sandboxed: bool = True, force: bool = False, progress: bool = True) -> AutogradeReport:
    """Grade ``students`` (default: every submission) of ``assignment``; see the module docstring."""
    course.check_assignment(assignment)
    if sandboxed:
        probe()
    ensure_in_gradebook(course, assignment)
    references, ref_key = reference_records(course, assignment, sandboxed)
    report = AutogradeReport(assignment)
    jobs, pending, fingerprints = [], {}, {}
    for slot, student in enumerate(students or submitted_students(course, assignment)):
        folder = course.submitted_dir / student / assignment
        fingerprint = _submission_fingerprint(folder, ref_key, course.limits, sandboxed)
        previous = load_result(course, assignment, student)
        if previous and previous.get("fingerprint") == fingerprint and not force:
            report.reused.append(student)
            continue
        fingerprints[student] = fingerprint
        extra = _regular_files(folder) + _regular_files(course.source_dir / assignment)  # the course's files win
        pending[student] = []
        for notebook in course.notebooks(assignment):
            path = folder / f"{notebook}.ipynb"
            present = path.is_file() and not path.is_symlink()
            jobs.append(Job(student, assignment, notebook, path if present else None, extra, course.db_url,
                            course.limits, sandboxed, uid_slot=slot))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if jobs:
        with _pool(workers) as pool, tqdm(total=len(jobs), desc=f"autograde {assignment}", unit="nb",
                                           disable=not progress) as bar:
            futures = [pool.submit(run_job, job) for job in jobs]
            for future in as_completed(futures):
                out = future.result()
                pending[out.student].append(out)
                report.seconds_per_notebook.append(out.seconds)
                bar.update()
                if len(pending[out.student]) == len(course.notebooks(assignment)):
                    _finish_student(course, assignment, out.student, pending[out.student], references,
                                    fingerprints[out.student])
                    report.graded.append(out.student)
    results = [r for s in report.graded + report.reused if (r := load_result(course, assignment, s))]
    write_scores(course, results)
    for result in results:
        report.totals[result["student"]] = result_totals(result)
        notes = [n for nb in result["notebooks"].values() for n in nb["limits_hit"] + [nb["problem"]] if n]
        if notes:
            report.notes[result["student"]] = notes
    return report
