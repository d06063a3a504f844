"""The HPA algorithm of lesson 04 against the examples the Kubernetes docs give (Horizontal Pod Autoscaling,
"Algorithm details" and "Configurable scaling behavior"; the HPA walkthrough)."""

from __future__ import annotations

import pandas as pd
import pytest

from labkit.lessons.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Autoscaler,
    Policy,
    Rules,
    compare_with_formula,
    hpa_row,
    proposal,
    scale_down_limit,
    scale_up_limit,
)


@pytest.mark.parametrize(("replicas", "current", "target", "desired"), [
    (1, 200, 100, 2),     # "200.0 / 100.0 == 2.0": the number of replicas is doubled
    (4, 50, 100, 2),      # "50.0 / 100.0 == 0.5": halved
    (1, 305, 50, 7),      # the walkthrough: 305% of the request against a 50% target -> 7 replicas
    (3, 108, 100, 3),     # ratio 1.08: within the 10 % tolerance, no change
    (3, 91, 100, 3),      # ratio 0.91: within tolerance
    (3, 89, 100, 3),      # ratio 0.89: outside; ceil(3 x 0.89) = ceil(2.67) = 3
    (3, 115, 100, 4),     # ratio 1.15: ceil(3.45) = 4
    (10, 1, 50, 1),       # almost idle: ceil(10 x 0.02) = 1
])
def test_proposal_follows_the_docs_formula(replicas: int, current: float, target: float, desired: int) -> None:
    assert proposal(replicas, current, target) == desired


def test_tolerance_is_configurable() -> None:
    assert proposal(3, 108, 100, tolerance=0.05) == 4


def test_default_scale_up_allows_the_larger_of_double_or_plus_four() -> None:
    none_added = lambda _period: 0  # noqa: E731
    assert scale_up_limit(1, none_added, DEFAULT_SCALE_UP) == 5      # max(1 x 2, 1 + 4)
    assert scale_up_limit(10, none_added, DEFAULT_SCALE_UP) == 20    # max(10 x 2, 10 + 4)


def test_docs_scale_down_example_pods_4_or_percent_10_per_minute() -> None:
    # "if there are 80 replicas [...] during the first step 8 replicas will be reduced. In the next iteration when
    # the number of replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8 [...] When the number
    # of replicas falls below 40 the first policy (Pods) is applied and 4 replicas will be reduced at a time."
    rules = Rules(0, (Policy("Pods", 4, 60), Policy("Percent", 10, 60)), "Max")
    none_removed = lambda _period: 0  # noqa: E731
    assert scale_down_limit(80, none_removed, rules) == 72
    assert scale_down_limit(72, none_removed, rules) == 64
    assert scale_down_limit(30, none_removed, rules) == 26


def test_limits_count_what_already_changed_in_the_period() -> None:
    rules = Rules(0, (Policy("Pods", 4, 60),), "Max")
    assert scale_up_limit(5, lambda period: 4, rules) == 5          # 4 already added this minute: no more
    assert scale_down_limit(6, lambda period: 4, rules) == 6        # 4 already removed: no more


def test_select_policy_min_and_disabled() -> None:
    both = (Policy("Pods", 4, 60), Policy("Percent", 10, 60))
    assert scale_down_limit(80, lambda p: 0, Rules(0, both, "Min")) == 76
    assert scale_down_limit(80, lambda p: 0, Rules(0, both, "Disabled")) == 80
    assert scale_up_limit(3, lambda p: 0, Rules(0, both, "Disabled")) == 3


def test_min_and_max_replicas_clamp() -> None:
    hpa = Autoscaler(min_replicas=2, max_replicas=10)
    assert hpa.step(0, 5, 1000, 50) == 10         # wants 100: max 10 (and the default scale-up allows it)
    hpa = Autoscaler(min_replicas=2, max_replicas=10, scale_down=Rules(0, DEFAULT_SCALE_DOWN.policies))
    assert hpa.step(0, 5, 1, 50) == 2             # wants 1: min 2


def test_scale_down_stabilization_keeps_the_highest_recommendation_in_the_window() -> None:
    hpa = Autoscaler(min_replicas=1, max_replicas=10)           # default: 300 s window for scale-down
    assert hpa.step(0, 5, 50, 50) == 5
    assert hpa.step(15, 5, 10, 50) == 5                          # load gone, but 5 was recommended 15 s ago
    assert hpa.step(299, 5, 10, 50) == 5
    assert hpa.step(301, 5, 10, 50) == 1                         # the 5 left the window; 100 % per 15 s allows 1


def test_behavior_fields_shorten_the_window() -> None:
    hpa = Autoscaler.for_hpa({"spec": {"minReplicas": 1, "maxReplicas": 10,
                                       "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}})
    assert hpa.scale_down.stabilization_s == 0 and hpa.scale_down.policies == DEFAULT_SCALE_DOWN.policies
    assert hpa.step(0, 5, 50, 50) == 5
    assert hpa.step(15, 5, 10, 50) == 1


def test_scale_up_rate_is_limited_per_period() -> None:
    hpa = Autoscaler(min_replicas=1, max_replicas=50)
    assert hpa.step(0, 1, 1000, 50) == 5          # wants 20; the default allows +4 (or x2) per 15 s
    assert hpa.step(5, 5, 200, 50) == 5           # still inside the same 15 s: 4 added already
    assert hpa.step(16, 5, 200, 50) == 10         # a new period: x2


def _hpa(**behavior: object) -> dict:
    return {"metadata": {"name": "php-apache"},
            "spec": {"minReplicas": 1, "maxReplicas": 10, "behavior": behavior,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 50}}}]}}


def test_hpa_row_reads_a_cpu_hpa_as_kubectl_get_hpa_does() -> None:
    hpa = _hpa()
    hpa["status"] = {"currentReplicas": 1, "desiredReplicas": 5,
                     "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
                         "averageUtilization": 226, "averageValue": "452m"}}}],
                     "conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}
    row = hpa_row(hpa, 3.0)
    assert (row["metric"], row["current"], row["target"], row["replicas"], row["desired"]) == ("cpu", 226, 50, 1, 5)


def test_hpa_row_reads_a_pods_metric_quantity() -> None:
    hpa = {"metadata": {"name": "web"}, "spec": {"maxReplicas": 5, "metrics": [{"type": "Pods", "pods": {
        "metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "2"}}}]},
        "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [{"type": "Pods", "pods": {
            "metric": {"name": "http_requests_per_second"}, "current": {"averageValue": "2500m"}}}]}}
    row = hpa_row(hpa, 0.0)
    assert (row["metric"], row["current"], row["target"], row["unit"]) == ("http_requests_per_second", 2.5, 2, "/pod")


def test_compare_with_formula_flags_a_disagreement() -> None:
    table = pd.DataFrame([
        {"t": 0.0, "hpa": "php-apache", "current": 226, "target": 50, "replicas": 1, "desired": 5},
        {"t": 15.0, "hpa": "php-apache", "current": 46, "target": 50, "replicas": 5, "desired": 5},
        {"t": 30.0, "hpa": "php-apache", "current": 1, "target": 50, "replicas": 5, "desired": 3},  # wrong on purpose
    ])
    result = compare_with_formula(table, _hpa(scaleDown={"stabilizationWindowSeconds": 0}))
    assert list(result.formula) == [5, 5, 1]
    assert list(result.agree) == [True, True, False]
