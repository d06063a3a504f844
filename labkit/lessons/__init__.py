"""One module per notebook: that lesson's helpers, figures and exercises.

A new lesson is one module here (listed in :data:`LESSONS`), one notebook and one test file. The exercises of every
lesson are collected here, explicitly, into one catalogue: ``lk.check``, ``lk.solution`` and ``lk.progress`` read it.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

import pandas as pd

from .. import classroom
from ..exercises import Attempt, Catalogue, Result

# Notebook number -> lesson module (under labkit.lessons), in course order.
LESSONS: dict[str, str] = {
    "00": "lab_tour",
    "01": "deployment_rollouts",
    "02": "statefulset_canary",
    "03": "health_probes",
    "04": "hpa",
    "05": "node_autoscaling",
    "06": "prometheus",
    "07": "dashboards",
    "08": "node_problems",
    "09": "cluster_logging",
    "10": "tracing",
    "11": "troubleshooting",
    "12": "gpu_monitoring",
}


def lesson(number: str) -> ModuleType:
    """The module behind notebook ``number`` (``lk.lessons.lesson("12")``)."""
    return importlib.import_module(f"{__name__}.{LESSONS[number]}")


@cache
def catalogue() -> Catalogue:
    """Every lesson's exercises, in course order."""
    return Catalogue(ex for number in LESSONS for ex in getattr(lesson(number), "EXERCISES", []))


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
    return pd.DataFrame(rows, columns=["exercise", "task", "passed", "attempts"])
