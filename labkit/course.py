"""The course's records: what each lesson is, needs and lets a student do, declared by the lesson module itself.

Each module of :mod:`labkit.lessons` ends with ``LESSON = Lesson(...)``; :func:`labkit.lessons.records` collects
them, and everything that lists lessons reads those records: the exercise catalogue, classroom mode's refusals and
progress, the README's lesson table (a test keeps it equal), the browser test's notebooks. Adding lesson 14 is one
module, one notebook and one test file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exercises import Exercise


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
