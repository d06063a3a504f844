"""One module per notebook: that lesson's helpers, figures and exercises, and its record (``LESSON``).

A new lesson is one module here (ending with ``LESSON = Lesson(...)``, :mod:`labkit.course`), one notebook and one
test file. :func:`records` finds every module's record; the exercise catalogue (``lk.check``, ``lk.solution``,
``lk.progress``), classroom mode's refusals and progress, the README's lesson table and the browser test read them.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType
from typing import Any

import pandas as pd

from ..course import Lesson, classroom
from ..course.exercises import Attempt, Catalogue, Result
from ..kube.client import Lab
from ..kube.namespaces import lesson_namespace as reset_namespace


@cache
def _lessons() -> dict[str, tuple[Lesson, ModuleType]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(record := getattr(module, "LESSON", None), Lesson):
            found[record.number] = (record, module)
    return dict(sorted(found.items()))


def records() -> tuple[Lesson, ...]:
    """Every lesson's record, in course order (each module of this package that declares ``LESSON``)."""
    return tuple(record for record, _module in _lessons().values())


def lesson(number: str) -> ModuleType:
    """The module behind notebook ``number`` (``lk.lessons.lesson("12")``)."""
    return _lessons()[number][1]


@cache
def catalogue() -> Catalogue:
    """Every lesson's exercises, in course order."""
    return Catalogue(ex for record in records() for ex in record.exercises)


def lesson_namespace(lab: Lab, name: str, *, timeout: float = 90.0) -> str:
    """The lesson's namespace, reset: ``lesson-NN`` for the lab's admin, the student's own one in classroom mode
    (refused, with the reason, for a lesson whose record says a student's rights are not enough).

    Same as ``kubectl delete namespace NAME --wait; kubectl create namespace NAME``, or for a student
    ``kubectl delete deploy,sts,pod,svc,pvc,cm --all -n STUDENT``.
    """
    who = classroom.student(lab)
    if who is None:
        return reset_namespace(lab, name, timeout=timeout)
    rights = {r.namespace: r.rights for r in records()}
    return classroom.student_namespace(lab, who, name, rights.get(name), timeout=timeout)


def check(lab: Any, exercise_id: str, *, namespace: str, answer: Any = None) -> Result:
    """Check an exercise against the live lab: PASS, or what is still wrong and a hint (within seconds).

    Under ``LABKIT_IN_TEST=1`` the exercise's solution is applied first, so stored notebooks show it solved.
    In classroom mode the result also goes to the student's ``labkit-progress`` ConfigMap, for the instructor.
    """
    result = catalogue().check(exercise_id, Attempt(lab, namespace, answer))
    classroom.report(lab, result)
    return result


def solution(exercise_id: str) -> Any:
    """The answer to an exercise, folded away until clicked."""
    return catalogue().solution(exercise_id)


def progress(prefix: str = "") -> pd.DataFrame:
    """Every exercise (or those whose id starts with ``prefix``): passed or not, and how many checks it took."""
    rows = [r for r in catalogue().progress_rows() if r["exercise"].startswith(prefix)]
    # The column names stay English in every language: they are names code uses (``lk.progress()[["exercise",
    # "passed"]]``, the same cell in both editions); the tasks in them are the learner's language.
    return pd.DataFrame(rows, columns=["exercise", "task", "passed", "attempts"])
