"""Lesson 06's rule-file check against a stand-in Prometheus (no cluster needed)."""

import re
import time

import pandas as pd

from labkit.course.exercises import Attempt
from labkit.lessons import prometheus as l06

SERVICES = ("cart", "shop")


def test_the_rule_check_reads_only_what_the_reloaded_rules_recorded(monkeypatch):
    """An earlier, correct rule under the same name writes samples until the reload replaces it: on a busy machine
    promtool alone takes seconds. Those samples must not pass a new rule that records nothing."""
    reloaded = {}

    def load_rules(text):
        time.sleep(0.05)                     # promtool, then the reload: the old rule still evaluates meanwhile
        reloaded["at"] = time.time()
        return []

    def query(expr, *, at=None, timeout=10.0):
        if expr.startswith(l06.P99_RECORD):  # the recorded series, newer than the threshold the check asks for
            since = float(re.search(r"> ([0-9.]+)$", expr).group(1))
            old_rule_sample = reloaded["at"] - 0.01   # the old rule's last evaluation; the new rule records nothing
            rows = [{"service": s, "value": 0.25, "time": pd.Timestamp(old_rule_sample, unit="s", tz="UTC")}
                    for s in SERVICES if old_rule_sample > since]
            return pd.DataFrame(rows, columns=["service", "value", "time"])
        return pd.DataFrame([{"service": s, "value": 0.25} for s in SERVICES])   # the reference p99

    monkeypatch.setattr(l06, "load_rules", load_rules)
    monkeypatch.setattr(l06, "_evaluated_since", lambda record, since: {"health": "ok"})
    monkeypatch.setattr(l06.promql, "query", query)
    no_le = "groups: [{name: x, rules: [{record: r, expr: 'histogram_quantile(0.99, sum by (service) (x))'}]}]"
    problems = l06._check_p99_rule(Attempt(lab=None, namespace="lesson-06", answer=no_le))
    assert problems == ["the query returns no series"]
