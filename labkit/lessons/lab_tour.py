"""Lesson 00, the lab tour: what is real and what is simulated on each backend (the first table a learner sees)."""

from __future__ import annotations

import pandas as pd

from ..course import Lesson, LessonRights
from ..kube.client import Lab

_PARTS = [
    # component, what it does, kwok, kind, current
    ("etcd", "stores every object", "real (local process)", "real (container)", "real"),
    ("kube-apiserver", "the API kubectl and labkit talk to", "real (local process)", "real (container)", "real"),
    ("kube-controller-manager", "Deployment, ReplicaSet, StatefulSet, HPA... controllers",
     "real (local process)", "real (container)", "real"),
    ("kube-scheduler", "places pods on nodes", "real (local process)", "real (container)", "real"),
    ("metrics-server", "CPU/memory usage for kubectl top and HPA", "real (local process)", "real (pod)",
     "as installed"),
    ("nodes / kubelet", "run containers, report status", "simulated by KWOK", "real (Docker containers)", "real"),
    ("containers", "your images and commands", "simulated by KWOK Stages", "real", "real"),
    ("GPUs", "nvidia.com/gpu capacity, NVML, DCGM metrics", "simulated (fake-GPU mode)",
     "simulated (fake-GPU mode)", "real if present, else simulated"),
]


def lab_parts(lab: Lab) -> pd.DataFrame:
    """One row per component: what it does and whether it is real on this lab's backend."""
    column = {"kwok": 2, "kind": 3}.get(lab.backend, 4)
    return pd.DataFrame([(p[0], p[1], p[column]) for p in _PARTS],
                        columns=["component", "role", f"on this lab ({lab.backend})"])


# The lesson's record (labkit.course): what the README, the catalogue and classroom mode read.
LESSON = Lesson(
    "00_lab_tour",
    "what is real and simulated, nodes, versions, a first Deployment with kubectl beside each step",
    LessonRights("reads nodes (get/list/watch nodes: granted to students, read-only)"),
)
