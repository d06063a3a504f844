"""One exercise system for every lesson: a task, a check against the live lab (PASS or what is wrong, with a hint),
a solution to reveal, and progress kept across notebooks.

A lesson module lists its exercises in ``EXERCISES``; :mod:`labkit.lessons` collects them explicitly. A check reads
the cluster (or an answer the learner gives) once and answers within seconds. Under test (``LABKIT_IN_TEST=1``)
:func:`check` first applies the exercise's solution and then waits, under a deadline, for the check to pass, so the
stored notebooks show a solved exercise while a learner's run shows their own result.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..i18n import _
from ..paths import progress_file
from ..settings import in_test

SOLVED_UNDER_TEST_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Attempt:
    """What a check looks at: the lab, the lesson's namespace, and the learner's answer when the task asks one."""

    lab: Any
    namespace: str
    answer: Any = None

    def require(self, kind: str, name: str, *, api_version: str, why: str = "") -> dict[str, Any]:
        """The object in the lesson's namespace. When it is missing the check ends here, and its one problem is
        "there is no KIND `NAME` in this namespace" (and ``why``, e.g. which cell makes it)."""
        from ..kube.objects import get

        obj = get(self.lab, kind, name, namespace=self.namespace, api_version=api_version)
        if obj is None:
            if why:
                raise Missing(_("there is no {kind} `{name}` in this namespace ({why})").format(
                    kind=kind, name=name, why=_(why)))
            raise Missing(_("there is no {kind} `{name}` in this namespace").format(kind=kind, name=name))
        return obj


class Missing(Exception):
    """What a check needs is not in the namespace: the problem it reports (:meth:`Attempt.require`)."""


def problems_of(exercise: Exercise, attempt: Attempt) -> list[str]:
    """What the exercise's check finds wrong ([] is a PASS); a missing object is the one problem."""
    try:
        return exercise.check(attempt)
    except Missing as exc:
        return [str(exc)]


@dataclass(frozen=True)
class Exercise:
    """One task: what to do, how the lab is checked, the answer."""

    id: str
    task: str
    hint: str
    solution: str
    # Returns the problems still there; an empty list is a PASS.
    check: Callable[[Attempt], list[str]]
    # Under test only: applies the solution; may return the answer to check (for tasks that ask for an answer).
    solve: Callable[[Attempt], Any] | None = None


@dataclass
class Result:
    """What a check found: passed or not, what is wrong, and a hint."""

    exercise: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    hint: str = ""
    solved_by_test: bool = False
    # Under test: whether the check said NOT YET before the solution was applied (it must).
    failed_unsolved: bool | None = None

    def __str__(self) -> str:
        note = ""
        if self.solved_by_test:
            before = _("NOT YET") if self.failed_unsolved else _(
                "PASS (wrong: the check cannot tell unsolved from solved)")
            note = " " + _("(test run, LABKIT_IN_TEST=1: {before} before the solution was applied)").format(
                before=before)
        if self.passed:
            return _("PASS {exercise}: well done.{note}").format(exercise=self.exercise, note=note)
        lines = [_("NOT YET {exercise}:{note}").format(exercise=self.exercise, note=note)]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines + ([_("  hint: {hint}").format(hint=self.hint)] if self.hint else []))

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Catalogue:
    """Every exercise of every lesson, by id; built explicitly from the lessons' ``EXERCISES`` lists."""

    def __init__(self, exercises: Iterable[Exercise]) -> None:
        self.exercises: dict[str, Exercise] = {}
        for ex in exercises:
            if ex.id in self.exercises:
                raise ValueError(f"two exercises share the id {ex.id!r}")
            self.exercises[ex.id] = ex

    def get(self, exercise_id: str) -> Exercise:
        if exercise_id not in self.exercises:
            raise KeyError(f"no exercise {exercise_id!r}; known: {', '.join(sorted(self.exercises))}")
        return self.exercises[exercise_id]

    def check(self, exercise_id: str, attempt: Attempt, *,
              timeout: float = SOLVED_UNDER_TEST_TIMEOUT_S) -> Result:
        """Check once (a learner's run) or, under test, solve, then wait for the check to pass."""
        ex = self.get(exercise_id)
        solved = in_test() and ex.solve is not None
        failed_unsolved = None
        if solved:
            # Prove both sides: the check must fail on the lab as the notebook left it, then pass once solved.
            failed_unsolved = bool(problems_of(ex, attempt))
            answer = ex.solve(attempt)  # type: ignore[misc]
            if answer is not None:
                attempt = Attempt(attempt.lab, attempt.namespace, answer)
        problems = problems_of(ex, attempt)
        deadline = time.monotonic() + timeout
        # The solution was just applied: controllers need a moment; re-check until it passes or the deadline.
        while solved and problems and time.monotonic() < deadline:
            time.sleep(0.5)
            problems = problems_of(ex, attempt)
        # The problems come back in the learner's language; the hint is translated here, where it is handed over.
        result = Result(exercise_id, passed=not problems, problems=problems, hint=_(ex.hint) if problems else "",
                        solved_by_test=solved, failed_unsolved=failed_unsolved)
        record(exercise_id, result.passed)
        return result

    def solution(self, exercise_id: str) -> Any:
        """The answer, folded away until clicked (an HTML ``<details>`` block)."""
        from IPython.display import HTML

        body = html.escape(self.get(exercise_id).solution)
        summary = html.escape(_("Show the solution to {exercise}").format(exercise=exercise_id))
        return HTML(f"<details><summary>{summary}</summary><pre>{body}</pre></details>")

    def progress_rows(self) -> list[dict[str, Any]]:
        data = _load()
        return [{"exercise": k, "task": _(ex.task).split("\n")[0], "passed": data.get(k, {}).get("passed", False),
                 "attempts": data.get(k, {}).get("attempts", 0)} for k, ex in sorted(self.exercises.items())]


def _load() -> dict[str, Any]:
    path = progress_file()
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # a damaged progress file must not break a lesson


def record(exercise_id: str, passed: bool) -> None:
    """Count an attempt, and remember the first pass (``<state dir>/progress.json``)."""
    data = _load()
    entry = data.get(exercise_id, {"attempts": 0, "passed": False})
    entry["attempts"] += 1
    entry["last_check"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if passed and not entry["passed"]:
        entry["passed"] = True
        entry["passed_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data[exercise_id] = entry
    path = progress_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True))
    except OSError:
        pass
