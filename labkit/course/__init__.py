"""The course: what each lesson is (its record), its exercises and checks, and the classroom around it (students'
namespaces, a private lab per student behind JupyterHub, the server extension that keeps a student's lab alive).

``lesson`` holds the record every lesson module ends with; ``exercises`` the checks; ``classroom``, ``hub`` and
``jupyter`` the classroom.
"""

from __future__ import annotations

from .lesson import Lesson, LessonRights, notebook_order

__all__ = ["Lesson", "LessonRights", "notebook_order"]
