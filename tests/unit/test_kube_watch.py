"""kube.watch.list_and_watch without a cluster: a list, the changes, a new list after an error, and the end."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.kube import watch as kw


class FakeWatch:
    """Stands in for kubernetes.watch.Watch: each stream() plays the next script (a list of events or an error)."""

    scripts: list[Any] = []

    def stream(self, list_call: Any, **kwargs: Any) -> Any:
        script = FakeWatch.scripts.pop(0)
        if isinstance(script, Exception):
            raise script
        yield from script

    def stop(self) -> None:
        pass


def _listed(*names: str, rv: str = "1") -> Any:
    return SimpleNamespace(items=[{"metadata": {"name": n}} for n in names], metadata=SimpleNamespace(
        resource_version=rv))


def test_a_list_then_changes_then_a_new_list(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes.watch

    monkeypatch.setattr(kubernetes.watch, "Watch", FakeWatch)
    stopping = threading.Event()
    lists = [_listed("a", "b"), _listed("a", rv="7")]
    FakeWatch.scripts = [
        [{"type": "ADDED", "object": {"metadata": {"name": "c"}}},
         {"type": "DELETED", "raw_object": {"metadata": {"name": "b"}}, "object": None}],
        RuntimeError("the API server went away"),
    ]
    seen = []
    for change in kw.list_and_watch(lambda **_: lists.pop(0), plain=lambda o: o, stopping=stopping, pause_s=0):
        seen.append((change.type, [o["metadata"]["name"] for o in change.objects] or
                     ([change.obj["metadata"]["name"]] if change.obj else [str(change.error)])))
        if len(seen) == 5:
            stopping.set()
    # A watch that ends (its timeout) is followed by a new list, a resync; one that fails says so, then lists again.
    assert seen == [("LISTED", ["a", "b"]), ("ADDED", ["c"]), ("DELETED", ["b"]), ("LISTED", ["a"]),
                    ("FAILED", ["the API server went away"])]
