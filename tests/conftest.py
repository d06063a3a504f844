"""Shared test configuration: tiers are folders (unit needs nothing; e2e, conformance and notebooks need the live
lab, which the ``lab`` fixture below connects to once per session)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from labkit.course import notebook_order

if TYPE_CHECKING:
    import labkit as lk


NOTEBOOK_SEED = pytest.StashKey[int]()

# labkit speaks the locale's language (labkit.i18n); the English notebooks' stored outputs and the tests' expected
# messages are English, whatever this machine's locale. The Chinese notebooks set LABKIT_LANG=zh_CN themselves, and
# the kernels nbval starts inherit this environment.
os.environ.setdefault("LABKIT_LANG", "en")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With LABKIT_NOTEBOOK_ORDER=shuffled (as `make test` runs the strict pass) the notebooks run first, on the lab
    `labkit up` has just started and no test has touched, in a seeded order: each must pass strict nbval on a fresh
    lab whatever ran before it. The seed is printed, so that an order that fails can be run again."""
    by_notebook: dict[object, list[pytest.Item]] = {}
    for item in items:
        if item.path.suffix == ".ipynb":
            by_notebook.setdefault(item.path, []).append(item)
    order, seed = notebook_order(list(by_notebook))
    if seed is None:
        return
    others = [item for item in items if item.path.suffix != ".ipynb"]
    items[:] = [cell for notebook in order for cell in by_notebook[notebook]] + others
    config.stash[NOTEBOOK_SEED] = seed


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    seed = config.stash.get(NOTEBOOK_SEED, None)
    if seed is not None:
        terminalreporter.write_line(f"notebooks ran first in the order of LABKIT_SHUFFLE_SEED={seed}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed wait shows what it last saw (WaitTimeout.last_seen) in the report: CI's log is all there is of a run
    that failed once."""
    report = yield
    excinfo = call.excinfo
    last_seen = getattr(excinfo.value, "last_seen", None) if excinfo else None
    if report.failed and last_seen is not None:
        import pprint

        report.sections.append(("what the wait last saw", pprint.pformat(last_seen, width=118)[:6000]))
    return report


@pytest.fixture(scope="session")
def lab() -> lk.Lab:
    """The live lab. Tests that need it never skip: without a cluster they fail and say how to start one."""
    import labkit as lk

    try:
        return lk.connect()
    except lk.ClusterUnreachable as exc:
        pytest.fail(f"these tests need the live lab cluster and found none: {exc}\n"
                    "start it with `labkit up --backend kwok` (make test does this)", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    """The lab's own promtool (the Prometheus build the lab runs): cached, else got now. A declared dependency: it is
    downloaded or built, never skipped."""
    from labkit.addons.prometheus_operated import component
    from labkit.cluster.binaries import ensure_component

    return str(ensure_component(component(), progress=lambda _m: None)["promtool"])
