"""Revocation, hold and release: the state machine and its audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conftest import CITIZEN, STAFF, T0, audit_events
from kyso.clock import VIETNAM, FrozenClock
from kyso.context import Kyso
from kyso.errors import CertificateNotFoundError, PkiError, RevocationError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.lifecycle import REVOKE_REASONS, hold, parse_reason, release, revoke
from kyso.pki.records import RevocationReason, Status
from kyso.pki.subjects import SubjectRequest


def issue_citizen(kyso: Kyso, ca: CertificateAuthority, n: int = 123) -> str:
    values = {**CITIZEN, "id": f"033301000{n:03d}"}
    return issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**values)).record.serial


def status_of(kyso: Kyso, serial: str) -> Status:
    return issuance.get_record(kyso, serial)[0].status


def events(kyso: Kyso) -> list[dict[str, Any]]:
    return audit_events(kyso)


@pytest.fixture
def serial(kyso: Kyso, ca: CertificateAuthority) -> str:
    return issue_citizen(kyso, ca)


# --- revoke -----------------------------------------------------------------------------------

def test_revoke_a_valid_certificate(kyso: Kyso, serial: str, clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(hours=5))
    change = revoke(kyso, serial, reason="keyCompromise")
    assert change.serial == serial
    assert change.old_status is Status.VALID
    record = change.record
    assert record.status is Status.REVOKED
    assert record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert record.revoked_at == T0 + dt.timedelta(hours=5)
    assert record.invalidity_date is None
    assert status_of(kyso, serial) is Status.REVOKED


def test_revoke_without_reason_is_unspecified(kyso: Kyso, serial: str) -> None:
    record = revoke(kyso, serial).record
    assert record.revocation_reason is RevocationReason.UNSPECIFIED


def test_revoked_certificate_cannot_be_revoked_again(kyso: Kyso, serial: str) -> None:
    revoke(kyso, serial, reason="superseded")
    with pytest.raises(RevocationError, match="is revoked; cannot revoke"):
        revoke(kyso, serial, reason="affiliationChanged")
    record, _ = issuance.get_record(kyso, serial)
    assert record.revocation_reason is RevocationReason.SUPERSEDED


def test_revoked_certificate_may_still_be_moved_to_key_compromise(kyso: Kyso, serial: str,
                                                                  clock: FrozenClock) -> None:
    first = revoke(kyso, serial, reason="superseded").record.revoked_at
    clock.advance(dt.timedelta(days=3))
    record = revoke(kyso, serial, reason="keyCompromise").record
    assert record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert record.revoked_at == first


def test_revoked_certificate_cannot_be_released(kyso: Kyso, serial: str) -> None:
    revoke(kyso, serial, reason="keyCompromise")
    with pytest.raises(RevocationError, match="is revoked; cannot release"):
        release(kyso, serial)
    assert status_of(kyso, serial) is Status.REVOKED


def test_revoked_certificate_cannot_be_held(kyso: Kyso, serial: str) -> None:
    revoke(kyso, serial)
    with pytest.raises(RevocationError, match="cannot hold"):
        hold(kyso, serial)
    assert status_of(kyso, serial) is Status.REVOKED


def test_invalidity_date_in_the_past_is_recorded(kyso: Kyso, serial: str) -> None:
    when = dt.datetime(2026, 11, 20, 8, 0, tzinfo=VIETNAM)
    record = revoke(kyso, serial, reason="keyCompromise", invalidity_date=when).record
    assert record.invalidity_date == when
    assert record.invalidity_date.utcoffset() == dt.timedelta(0)


def test_invalidity_date_equal_to_now_is_accepted(kyso: Kyso, serial: str) -> None:
    assert revoke(kyso, serial, invalidity_date=T0).record.invalidity_date == T0


def test_invalidity_date_in_the_future_is_refused(kyso: Kyso, serial: str) -> None:
    with pytest.raises(RevocationError, match="in the future"):
        revoke(kyso, serial, reason="keyCompromise",
               invalidity_date=T0 + dt.timedelta(seconds=1))
    assert status_of(kyso, serial) is Status.VALID


def test_invalidity_date_without_time_zone_is_refused(kyso: Kyso, serial: str) -> None:
    with pytest.raises(RevocationError, match="time zone"):
        revoke(kyso, serial, invalidity_date=dt.datetime(2026, 11, 20, 8, 0))
    assert status_of(kyso, serial) is Status.VALID


def test_certificate_hold_is_not_a_revocation_reason(kyso: Kyso, serial: str) -> None:
    with pytest.raises(RevocationError, match="use `kyso cert hold`"):
        revoke(kyso, serial, reason="certificateHold")
    with pytest.raises(RevocationError):
        revoke(kyso, serial, reason=RevocationReason.CERTIFICATE_HOLD)
    assert status_of(kyso, serial) is Status.VALID


def test_unknown_reason_is_refused_and_lists_the_reasons(kyso: Kyso, serial: str) -> None:
    with pytest.raises(RevocationError, match=r"unknown revocation reason 'lost'.*keyCompromise"):
        revoke(kyso, serial, reason="lost")


def test_reason_names_are_case_insensitive() -> None:
    assert parse_reason(" KEYCOMPROMISE ") is RevocationReason.KEY_COMPROMISE
    assert parse_reason("cacompromise") is RevocationReason.CA_COMPROMISE


def test_revoke_reasons_offered_exclude_hold() -> None:
    assert "certificateHold" not in REVOKE_REASONS
    assert {"unspecified", "keyCompromise", "superseded", "cessationOfOperation",
            "affiliationChanged", "privilegeWithdrawn"} <= set(REVOKE_REASONS)


def test_unknown_serial_is_not_found(kyso: Kyso, ca: CertificateAuthority) -> None:
    for action in (revoke, hold, release):
        with pytest.raises(CertificateNotFoundError):
            action(kyso, "abc123")


# --- hold and release -------------------------------------------------------------------------

def test_hold_suspends_a_valid_certificate(kyso: Kyso, serial: str) -> None:
    change = hold(kyso, serial)
    assert change.old_status is Status.VALID
    assert change.record.status is Status.ON_HOLD
    assert change.record.revocation_reason is RevocationReason.CERTIFICATE_HOLD
    assert change.record.revoked_at == T0


def test_held_certificate_cannot_be_held_again(kyso: Kyso, serial: str) -> None:
    hold(kyso, serial)
    with pytest.raises(RevocationError, match="is on_hold; cannot hold"):
        hold(kyso, serial)


def test_release_makes_a_held_certificate_valid_again(
    kyso: Kyso, serial: str, clock: FrozenClock
) -> None:
    hold(kyso, serial)
    clock.advance(dt.timedelta(days=2))
    change = release(kyso, serial)
    assert change.old_status is Status.ON_HOLD
    record = change.record
    assert record.status is Status.VALID
    assert record.revoked_at is None
    assert record.revocation_reason is None
    assert record.invalidity_date is None


def test_valid_certificate_cannot_be_released(kyso: Kyso, serial: str) -> None:
    with pytest.raises(RevocationError, match="is valid; cannot release"):
        release(kyso, serial)


def test_held_certificate_can_be_revoked_for_good(
    kyso: Kyso, serial: str, clock: FrozenClock
) -> None:
    hold(kyso, serial)
    clock.advance(dt.timedelta(days=1))
    change = revoke(kyso, serial, reason="keyCompromise")
    assert change.old_status is Status.ON_HOLD
    assert change.record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert change.record.revoked_at == T0 + dt.timedelta(days=1)
    with pytest.raises(RevocationError):
        release(kyso, serial)


def test_hold_release_hold_cycle(kyso: Kyso, serial: str) -> None:
    for _ in range(2):
        hold(kyso, serial)
        release(kyso, serial)
    assert status_of(kyso, serial) is Status.VALID


def test_changes_to_one_certificate_leave_others_alone(
    kyso: Kyso, ca: CertificateAuthority, serial: str
) -> None:
    other = issue_citizen(kyso, ca, 456)
    revoke(kyso, serial)
    assert status_of(kyso, other) is Status.VALID


# --- audit ------------------------------------------------------------------------------------

def test_revocation_is_audited(kyso: Kyso, serial: str) -> None:
    when = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
    revoke(kyso, serial, reason="keyCompromise", invalidity_date=when)
    event = events(kyso)[-1]
    assert (event["action"], event["outcome"], event["object"]) == (
        "CERT_REVOKED", "success", serial)
    details = event["details"]
    assert details["old_status"] == "valid"
    assert details["new_status"] == "revoked"
    assert details["reason"] == "keyCompromise"
    assert details["invalidity_date"] == when.isoformat()
    assert details["profile"] == "citizen"
    assert details["issuer"] == "citizen"


def test_hold_and_release_are_audited_as_status_changes(kyso: Kyso, serial: str) -> None:
    hold(kyso, serial)
    release(kyso, serial)
    held, released = events(kyso)[-2:]
    assert (held["action"], held["details"]["new_status"]) == ("CERT_STATUSCHANGE", "on_hold")
    assert held["details"]["reason"] == "certificateHold"
    assert (released["action"], released["details"]["old_status"],
            released["details"]["new_status"]) == ("CERT_STATUSCHANGE", "on_hold", "valid")


def test_refused_revocation_is_audited_as_a_failure(kyso: Kyso, serial: str) -> None:
    revoke(kyso, serial)
    with pytest.raises(RevocationError):
        revoke(kyso, serial)
    event = events(kyso)[-1]
    assert (event["action"], event["outcome"], event["object"]) == (
        "CERT_REVOKED", "failure", serial)
    assert "cannot revoke" in event["details"]["reason"]


def test_revoking_an_unknown_serial_is_audited_as_a_failure(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(CertificateNotFoundError):
        revoke(kyso, "abc123")
    event = events(kyso)[-1]
    assert (event["action"], event["outcome"], event["object"]) == (
        "CERT_REVOKED", "failure", "abc123")


def test_key_compromise_revokes_every_certificate_on_that_key_and_blocks_renewal(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    first = issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record
    renewed = issuance.renew(kyso, ca, first.serial).record
    revoke(kyso, first.serial, reason="keyCompromise")
    again, _ = issuance.get_record(kyso, renewed.serial)
    assert again.status is Status.REVOKED
    assert again.revocation_reason is RevocationReason.KEY_COMPROMISE
    other = issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record
    with pytest.raises(PkiError, match="revoked"):
        issuance.renew(kyso, ca, renewed.serial)
    assert issuance.get_record(kyso, other.serial)[0].status is Status.VALID  # another key
