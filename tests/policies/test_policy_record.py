"""The ``POLICY_CHECK`` audit event of a policy report, recorded by ``kyso policy check`` and by
``kyso demo`` through :func:`record_policy_check`."""

from __future__ import annotations

from policy_support import good_facts, with_settings

from conftest import audit_events
from kyso.context import Kyso
from kyso.policies.check import evaluate, record_policy_check
from kyso.policies.models import Status


def test_a_report_with_a_mandatory_failure_is_recorded_as_a_failure(kyso: Kyso) -> None:
    report = evaluate(3, "current", with_settings(good_facts(), "authn", max_login_failures=10))
    record_policy_check(kyso, report)
    (event,) = [e for e in audit_events(kyso) if e["action"] == "POLICY_CHECK"]
    assert (event["layer"], event["outcome"], event["object"], event["actor"]) == (
        "audit", "failure", "current-3", "admin:test")
    counts = report.counts()
    assert event["details"] == {
        "verdict": "fail", "met": counts[Status.PASS], "not_met": counts[Status.FAIL],
        "partly_met": counts[Status.PARTIAL], "evidence_needed": counts[Status.EVIDENCE],
        "mandatory_failed": ["CUR-L2-AUTH-03"]}
    assert sum(counts.values()) == 29


def test_a_report_without_a_mandatory_failure_is_recorded_as_a_success(kyso: Kyso) -> None:
    report = evaluate(3, "current", good_facts())
    record_policy_check(kyso, report)
    event = audit_events(kyso)[-1]
    assert (event["action"], event["outcome"]) == ("POLICY_CHECK", "success")
    assert event["details"]["verdict"] == "evidence"
    assert event["details"]["mandatory_failed"] == []
    assert event["details"]["not_met"] == 0
