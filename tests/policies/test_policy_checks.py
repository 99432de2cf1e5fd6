"""The automatic checks are pure functions of the facts: each flips with the fact it looks at."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from policy_support import KEYS, good_facts, with_settings

from conftest import T0
from kyso.policies.checkbase import CheckSpec, Param
from kyso.policies.checks import CHECKS, run_check
from kyso.policies.facts import BackupFact, CheckpointFact, ClockFact, Facts, Verification
from kyso.policies.models import Localised, Status

LEVEL_3_PARAMS: dict[str, dict[str, Any]] = {
    "audit_retention": {"min_days": 90},
    "audit_checkpoints": {"max_interval_seconds": 3600},
    "password_policy": {"min_length_with_mfa": 8, "min_length_without_mfa": 14},
    "login_lockout": {"max_failures": 5},
    "session_timeout": {"admin_minutes": 5, "user_minutes": 15},
    "inactive_accounts": {"max_days": 45},
    "key_strength": {"min_rsa_bits": 2048, "min_ec_bits": 256},
    "signature_hashes": {"allowed": ("sha256", "sha384", "sha512")},
    "certificates_valid": {"warn_days": 7},
}


def check(name: str, facts: Facts, **params: Any) -> tuple[Status, str, str]:
    result = run_check(name, facts, {**LEVEL_3_PARAMS.get(name, {}), **params})
    return result.status, result.detail.vi, result.detail.en


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_passes_on_a_well_run_deployment(name: str) -> None:
    status, vi, en = check(name, good_facts())
    assert status is Status.PASS, (name, en)
    assert vi
    assert en
    assert vi != en


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_is_described_in_both_languages(name: str) -> None:
    spec = CHECKS[name]
    assert spec.description.vi
    assert spec.description.en
    for param_name, param in spec.params.items():
        assert param.kind in (int, str, bool, tuple)
        assert param_name in spec.description.en


# --- audit log ---------------------------------------------------------------------------------

def test_no_audit_log_fails() -> None:
    status, vi, _ = check("audit_log_present", good_facts(audit_files=0))
    assert status is Status.FAIL
    assert "chưa có nhật ký" in vi


@pytest.mark.parametrize(("days", "configured", "need", "status", "how"), [
    (92, 0, 90, Status.PASS, "level-3 floor"),
    (92, 30, 90, Status.PASS, "level-3 floor"),   # purge never goes below the level's floor
    (92, 0, 180, Status.FAIL, "level-3 floor"),
    (400, 400, 365, Status.PASS, "[audit] retention_days"),
])
def test_audit_retention_compares_what_purge_keeps(days: int, configured: int, need: int,
                                                  status: Status, how: str) -> None:
    facts = with_settings(good_facts(audit_retention_days=days), "audit",
                          retention_days=configured)
    got, _vi, en = check("audit_retention", facts, min_days=need)
    assert got is status, en
    assert f"≥ {need}" in en
    assert how in en


def test_audit_integrity_never_verified_fails() -> None:
    facts = good_facts(verification=Verification(recorded=False, problem="never verified"))
    status, _vi, en = check("audit_integrity", facts)
    assert status is Status.FAIL
    assert "kyso audit verify" in en


def test_audit_integrity_with_an_unreadable_record_fails_naming_why() -> None:
    facts = good_facts(verification=Verification(recorded=False, problem="verified.json is "
                                                                         "unreadable (x)"))
    status, _vi, en = check("audit_integrity", facts)
    assert status is Status.FAIL
    assert "unreadable" in en


def test_audit_integrity_that_found_tampering_fails() -> None:
    facts = good_facts(verification=Verification(recorded=True, time=T0, ok=False, size=9))
    status, vi, _en = check("audit_integrity", facts)
    assert status is Status.FAIL
    assert "bị sửa đổi" in vi


def test_stale_verification_is_partly_met() -> None:
    old = Verification(recorded=True, time=T0 - dt.timedelta(hours=30), ok=True, size=9)
    status, vi, en = check("audit_integrity", good_facts(verification=old))
    assert status is Status.PARTIAL
    assert "more than 24" in en
    assert "30,0 giờ" in vi  # Vietnamese decimal comma
    assert check("audit_integrity", good_facts(verification=old), max_age_hours=48)[0] \
        is Status.PASS


def test_a_sparse_schedule_is_reported_but_the_age_of_the_checkpoint_decides() -> None:
    facts = with_settings(good_facts(), "audit", checkpoint_interval_seconds=7200)
    status, vi, en = check("audit_checkpoints", facts)
    assert status is Status.PASS
    assert "scheduled every 7200 s, less often than the required 3600 s" in en
    assert "lịch đặt mỗi 7200 giây, thưa hơn yêu cầu 3600 giây" in vi


def test_a_recent_verified_checkpoint_meets_the_hourly_requirement() -> None:
    recent = CheckpointFact(time=T0 - dt.timedelta(minutes=20), size=90, log_size=120)
    status, vi, en = check("audit_checkpoints", good_facts(checkpoint=recent))
    assert status is Status.PASS
    assert en == ("newest verified signed checkpoint at 2026-11-23T08:40:00+07:00, 20 minutes "
                  "ago, covers 90 of 120 events; scheduled every 3600 s")
    assert "20 phút trước, phủ 90/120 sự kiện; lịch đặt mỗi 3600 giây" in vi


@pytest.mark.parametrize(("age", "status"), [
    (dt.timedelta(seconds=3600), Status.PASS),
    (dt.timedelta(seconds=3601), Status.FAIL),
    (dt.timedelta(hours=5), Status.FAIL),
    (dt.timedelta(minutes=-2), Status.PASS),  # clock skew within the allowance
])
def test_the_age_of_the_newest_verified_checkpoint_against_the_clock_decides(
        age: dt.timedelta, status: Status) -> None:
    cp = CheckpointFact(time=T0 - age, size=120, log_size=121)
    assert check("audit_checkpoints", good_facts(checkpoint=cp))[0] is status


def test_an_old_checkpoint_fails_naming_its_age() -> None:
    old = CheckpointFact(time=T0 - dt.timedelta(hours=5), size=90, log_size=120)
    status, vi, en = check("audit_checkpoints", good_facts(checkpoint=old))
    assert status is Status.FAIL
    assert "5.0 hours ago, older than 3600 s; covers 90 of 120 events" in en
    assert "đã 5,0 giờ, cũ hơn 3600 giây; phủ 90/120" in vi


def test_an_old_checkpoint_fails_even_when_the_log_is_idle() -> None:
    idle = CheckpointFact(time=T0 - dt.timedelta(days=3), size=120, log_size=121)
    assert check("audit_checkpoints", good_facts(checkpoint=idle))[0] is Status.FAIL


def test_no_verified_checkpoint_fails_naming_why() -> None:
    for fact in (CheckpointFact(), CheckpointFact(log_size=7)):
        status, _vi, en = check("audit_checkpoints", good_facts(checkpoint=fact))
        assert status is Status.FAIL
        assert en.startswith("no verified signed checkpoint; run `kyso audit checkpoint`")
    refused = CheckpointFact(log_size=7, refused=1, problem="000000000007.note: checkpoint is "
                                                              "not signed by a trusted key")
    status, _vi, en = check("audit_checkpoints", good_facts(checkpoint=refused))
    assert status is Status.FAIL
    assert "(000000000007.note: checkpoint is not signed by a trusted key)" in en


def test_newer_checkpoints_that_were_refused_are_named_next_to_the_verified_one() -> None:
    cp = CheckpointFact(time=T0 - dt.timedelta(minutes=5), size=90, log_size=99, refused=1,
                        problem="000000000098.note: audit-signer certificate … expired on …")
    status, _vi, en = check("audit_checkpoints", good_facts(checkpoint=cp))
    assert status is Status.PASS
    assert en.endswith("; 1 newer checkpoint(s) refused: 000000000098.note: audit-signer "
                       "certificate … expired on …")


# --- clock -------------------------------------------------------------------------------------

def test_clock_offset_within_the_limit_passes_and_beyond_fails() -> None:
    assert check("clock_offset", good_facts(clock=ClockFact("ntp", offset_ms=-999.0)))[0] \
        is Status.PASS
    status, _vi, en = check("clock_offset", good_facts(clock=ClockFact("ntp", offset_ms=1500.0)))
    assert status is Status.FAIL
    assert "1500.0 ms" in en
    assert check("clock_offset", good_facts(clock=ClockFact("ntp", offset_ms=150.0)),
                 max_ms=100)[0] is Status.FAIL


def test_unmeasured_clock_needs_evidence_and_says_why() -> None:
    status, _vi, en = check("clock_offset", good_facts(clock=ClockFact("")))
    assert status is Status.EVIDENCE
    assert "no NTP server configured" in en
    down = ClockFact("ntp.example.vn", problem="NTP server ntp.example.vn did not answer")
    status, _vi, en = check("clock_offset", good_facts(clock=down))
    assert status is Status.EVIDENCE
    assert "did not answer" in en


# --- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "status"), [
    ({"max_login_failures": 5}, Status.PASS),
    ({"max_login_failures": 3}, Status.PASS),
    ({"max_login_failures": 10}, Status.FAIL),
    ({"max_login_failures": 0}, Status.FAIL),
    ({"lockout": "temporary", "wait_increment_seconds": 0}, Status.FAIL),
    ({"lockout": "permanent", "wait_increment_seconds": 0}, Status.PASS),
])
def test_login_lockout(changes: dict[str, Any], status: Status) -> None:
    assert check("login_lockout", with_settings(good_facts(), "authn", **changes))[0] is status


@pytest.mark.parametrize("name", ["admin_mfa", "remote_mfa"])
def test_mfa_off_fails(name: str) -> None:
    status, _vi, en = check(name, with_settings(good_facts(), "authn", **{name: False}))
    assert status is Status.FAIL
    assert f"{name} = false" in en


@pytest.mark.parametrize(("policy", "remote_mfa", "status"), [
    ("nist-aal2", True, Status.PASS),
    ("vneid-compat", True, Status.PASS),
    ("nist-aal2", False, Status.PASS),       # 15 characters when the password stands alone
    ("vneid-compat", False, Status.FAIL),    # 8 characters, no second factor: below 14
])
def test_password_length_depends_on_mfa(policy: str, remote_mfa: bool, status: Status) -> None:
    facts = with_settings(good_facts(), "authn", password_policy=policy, remote_mfa=remote_mfa)
    facts = replace(facts, password_min_length={"nist-aal2": (8, 15), "vneid-compat": (8, 8)}[policy])
    assert check("password_policy", facts)[0] is status


@pytest.mark.parametrize(("admin", "user", "status"), [
    (5, 15, Status.PASS), (1, 1, Status.PASS), (10, 15, Status.FAIL), (5, 30, Status.FAIL),
    (0, 15, Status.FAIL),
])
def test_session_timeout(admin: int, user: int, status: Status) -> None:
    facts = with_settings(good_facts(), "authn", session_idle_admin_minutes=admin,
                          session_idle_user_minutes=user)
    assert check("session_timeout", facts)[0] is status


@pytest.mark.parametrize(("days", "status"), [(45, Status.PASS), (30, Status.PASS),
                                              (90, Status.FAIL), (0, Status.FAIL)])
def test_inactive_accounts(days: int, status: Status) -> None:
    facts = with_settings(good_facts(), "authn", inactive_account_days=days)
    assert check("inactive_accounts", facts)[0] is status


# --- keys and certificates ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["key_strength", "signature_hashes", "certificates_valid",
                                  "key_files_protected"])
def test_key_checks_without_a_ca_need_evidence(name: str) -> None:
    status, _vi, en = check(name, good_facts(ca_present=False, keys=()))
    assert status is Status.EVIDENCE
    assert "no CA in /h" in en


def test_weak_keys_fail_naming_the_key() -> None:
    weak = replace(KEYS[1], bits=2048)
    status, _vi, en = check("key_strength", good_facts(keys=(KEYS[0], weak)), min_rsa_bits=3072)
    assert status is Status.FAIL
    assert "staff: rsa-2048 < 3072" in en
    assert check("key_strength", good_facts(keys=(replace(KEYS[0], bits=224),)))[0] is Status.FAIL
    dsa = replace(KEYS[0], algorithm="dsa", bits=3072)
    assert check("key_strength", good_facts(keys=(dsa,)))[0] is Status.FAIL


def test_sha1_signatures_fail() -> None:
    status, _vi, en = check("signature_hashes", good_facts(keys=(replace(KEYS[1],
                                                                         signature_hash="sha1"),)))
    assert status is Status.FAIL
    assert "sha1" in en


def test_expired_certificates_fail_and_expiring_ones_are_partly_met() -> None:
    expired = replace(KEYS[2], not_after=T0 - dt.timedelta(seconds=1))
    status, _vi, en = check("certificates_valid", good_facts(keys=(KEYS[0], expired)))
    assert status is Status.FAIL
    assert "audit-signer" in en
    soon = replace(KEYS[2], not_after=T0 + dt.timedelta(days=3))
    status, _vi, en = check("certificates_valid", good_facts(keys=(KEYS[0], soon)))
    assert status is Status.PARTIAL
    assert "audit-signer" in en


@pytest.mark.parametrize("state", ["missing", "readable by others", "not encrypted"])
def test_unprotected_key_files_fail(state: str) -> None:
    bad = replace(KEYS[0], key_file_state=state)
    status, _vi, en = check("key_files_protected", good_facts(keys=(bad, KEYS[1])))
    assert status is Status.FAIL
    assert "root: " in en
    assert state in en


# --- backups -----------------------------------------------------------------------------------

def backups(**changes: Any) -> BackupFact:
    return replace(good_facts().backups, **changes)


def test_missing_or_old_backups_fail() -> None:
    none = backups(files=0, newest=None, newest_time=None)
    assert check("backup_fresh", good_facts(backups=none))[0] is Status.FAIL
    old = backups(newest_time=T0 - dt.timedelta(days=3))
    status, _vi, en = check("backup_fresh", good_facts(backups=old))
    assert status is Status.FAIL
    assert "3.0 days old" in en
    assert check("backup_fresh", good_facts(backups=old), max_age_days=7)[0] is Status.PASS


@pytest.mark.parametrize(("offsite", "fact", "status"), [
    (True, {"exists": False}, Status.PASS),
    (False, {"inside_home": True}, Status.FAIL),
    (False, {"exists": False}, Status.FAIL),
    (False, {"same_device": True}, Status.PARTIAL),
    (False, {"same_device": None}, Status.PARTIAL),
    (False, {}, Status.PASS),
])
def test_backup_separate(offsite: bool, fact: dict[str, Any], status: Status) -> None:
    facts = with_settings(good_facts(backups=backups(**fact)), "backup", offsite=offsite)
    assert check("backup_separate", facts)[0] is status


def test_backup_321_lists_what_is_missing() -> None:
    facts = with_settings(good_facts(backups=backups(same_device=True)), "backup", offsite=False,
                          encrypted=False)
    status, _vi, en = check("backup_321", facts)
    assert status is Status.PARTIAL
    assert "same device" in en
    assert "no offsite copy" in en
    assert "not encrypted" in en
    none = backups(files=0, newest=None, newest_time=None)
    assert check("backup_321", good_facts(backups=none))[0] is Status.FAIL


# --- personal data -----------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "status"), [("ok", Status.PASS), ("missing", Status.EVIDENCE),
                                               ("readable by others", Status.FAIL),
                                               ("too short", Status.FAIL)])
def test_pseudonym_key(state: str, status: Status) -> None:
    assert check("pseudonymisation", good_facts(pseudonym_key=state))[0] is status


# --- failing closed ----------------------------------------------------------------------------

def test_a_check_that_raises_is_a_fail_never_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_facts: Facts, _params: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setitem(CHECKS, "broken", CheckSpec("broken", broken, Localised("x", "x"),
                                                    {"n": Param(int)}))
    status, _vi, en = check("broken", good_facts())
    assert status is Status.FAIL
    assert "RuntimeError" in en
