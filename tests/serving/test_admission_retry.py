"""Pure decisions: admission control, deadlines, retry/backoff/hedge policy."""

from __future__ import annotations

import pytest

from serving.admission import AdmissionPolicy, Decision, budget_s, decide, parse_timeout_s
from serving.deployment import per_node_limit
from serving.retry import (
    RetryPolicy,
    attempt_timeout_s,
    backoff_s,
    endpoint_order,
    retryable_http,
)


def test_admit_then_degrade_then_shed() -> None:
    p = AdmissionPolicy(max_in_flight=2, max_degraded=1)
    assert [decide(p, n, d) for n, d in ((0, 0), (1, 0), (2, 0), (2, 1), (9, 5))] == [
        Decision.ADMIT, Decision.ADMIT, Decision.DEGRADE, Decision.SHED, Decision.SHED]
    assert decide(AdmissionPolicy(1, 0), 1) is Decision.SHED


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        AdmissionPolicy(max_in_flight=0)


def test_timeout_header_and_budget() -> None:
    assert parse_timeout_s("250") == 0.25
    assert parse_timeout_s(None) is parse_timeout_s("x") is parse_timeout_s("-1") is None
    assert budget_s(None, 1.0) == pytest.approx(0.998)
    assert budget_s(0.1, 1.0) == pytest.approx(0.098)
    assert budget_s(0.0001, 1.0) == 0.001


def test_backoff_is_capped_full_jitter() -> None:
    p = RetryPolicy(backoff_base_s=0.01, backoff_cap_s=0.05)
    assert backoff_s(p, 0, 1.0) == 0.0
    assert backoff_s(p, 1, 1.0) == 0.01 and backoff_s(p, 2, 1.0) == 0.02
    assert backoff_s(p, 10, 1.0) == 0.05 and backoff_s(p, 10, 0.0) == 0.0


def test_retries_go_to_other_endpoints() -> None:
    assert endpoint_order(3, 2) == [2, 0, 1]
    assert endpoint_order(1, 0) == [0]


def test_attempt_timeout_never_exceeds_deadline() -> None:
    p = RetryPolicy(attempt_timeout_s=0.5)
    assert attempt_timeout_s(p, 2.0) == 0.5 and attempt_timeout_s(p, 0.2) == 0.2
    assert attempt_timeout_s(p, -1) == 0.0


def test_only_server_side_failures_are_retried() -> None:
    assert retryable_http(503) and retryable_http(500) and retryable_http(429)
    assert not retryable_http(422) and not retryable_http(400) and not retryable_http(413)


def test_one_replica_per_node_where_possible() -> None:
    assert per_node_limit(2, 3) == 1 and per_node_limit(3, 3) == 1
    assert per_node_limit(2, 1) == 2 and per_node_limit(5, 2) == 3
