"""The course's records: what each lesson is, needs and lets a student do, declared by the lesson module itself.

Each module of :mod:`labkit.lessons` ends with ``LESSON = Lesson(...)``; :func:`labkit.lessons.records` collects
them, and everything that lists lessons reads those records: the exercise catalogue, classroom mode's refusals and
progress, the README's lesson table (a test keeps it equal), the browser test's notebooks. Adding lesson 14 is one
module, one notebook (with its Chinese twin in notebooks/zh-CN) and one test file.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

from .exercises import Exercise

T = TypeVar("T")


@dataclass(frozen=True)
class LessonRights:
    """What a lesson needs beyond its own namespace; ``refused`` says why a student cannot run it (None: can)."""

    cluster_scoped: str
    refused: str | None = None


@dataclass(frozen=True)
class Lesson:
    """One lesson: its notebook (``notebooks/NOTEBOOK.ipynb``), the topic the README gives it, the add-ons it starts,
    the rights it needs in classroom mode and its exercises."""

    notebook: str  # "06_prometheus"
    topic: str
    rights: LessonRights
    addons: tuple[str, ...] = ()
    exercises: tuple[Exercise, ...] = ()

    @property
    def number(self) -> str:
        return self.notebook[:2]

    @property
    def namespace(self) -> str:
        """The namespace the notebook works in (``lk.lesson_namespace(lab, "lesson-06")``)."""
        return f"lesson-{self.number}"


def notebook_order(items: list[T]) -> tuple[list[T], int | None]:
    """``items`` (one per notebook, in course order) as the tests run them: in course order, or with
    LABKIT_NOTEBOOK_ORDER=shuffled in an order drawn from LABKIT_SHUFFLE_SEED (else a new seed). The seed comes back
    so that a failing order can be named and run again."""
    if os.environ.get("LABKIT_NOTEBOOK_ORDER") != "shuffled":
        return list(items), None
    seed = int(os.environ.get("LABKIT_SHUFFLE_SEED") or random.SystemRandom().randrange(10**6))
    order = list(items)
    random.Random(seed).shuffle(order)  # noqa: S311 -- an order of tests, no secret
    return order, seed
