"""Level-1 registration, level-2 enrolment with the chip check, Decree 69 locks — and the audit
events each decision leaves (pseudonym and masked ID, never the raw number or the password)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from conftest import PASSPHRASE, audit_events, audit_text
from kyso.authn.chip import ChipData, ChipPersonalData, encode_dg13, issue_chip
from kyso.authn.csca import (
    current_document_signer,
    load_csca_certificate,
    load_csca_crl,
    revoke_document_signer,
)
from kyso.authn.enrolment import (
    RecordedScores,
    enrol_level2,
    issue_test_chip,
    lock_identity,
    match_score,
    register_level1,
    unlock_identity,
)
from kyso.authn.registry import AccountStatus, Level, LockGround, Person, Registry
from kyso.context import Kyso
from kyso.errors import IdentityError, PasswordPolicyError

RAW_ID = "019099012345"
AN = Person.of(id_number=RAW_ID, full_name="Nguyễn Văn An", birth_date="1999-04-02",
               sex="male", phone="0912345678")
BINH = Person.of(id_number="033301000123", full_name="Trần Thị Bình", birth_date="2001-03-09",
                 sex="female")
PASSWORD = "Đèn-lồng-phố-Hội!42"


def personal(person: Person = AN, expiry: dt.date = dt.date(2036, 1, 5)) -> ChipPersonalData:
    return ChipPersonalData(person=person, document_number="123456789",
                            issue_date=dt.date(2026, 1, 5), expiry_date=expiry)


@pytest.fixture
def chip(kyso: Kyso) -> ChipData:
    return issue_test_chip(kyso, PASSPHRASE, personal(), b"\xff\xd8portrait\xff\xd9")


def enrol(kyso: Kyso, chip: ChipData, id_number: str = RAW_ID, **overrides: Any) -> Any:
    args: dict[str, Any] = {"officer": "CA-TN-0042", "face_score": 0.95,
                            "fingerprint_score": 0.97, "consent": True,
                            "csca": [load_csca_certificate(kyso)], "crls": [load_csca_crl(kyso)]}
    args.update(overrides)
    return enrol_level2(kyso, id_number, chip, **args)


def events(kyso: Kyso, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] == action]


def registry(kyso: Kyso) -> Registry:
    return Registry(kyso.store, kyso.clock)


# --- level 1 -----------------------------------------------------------------------------------

def test_register_level1_creates_a_level1_account_and_records_register(kyso: Kyso) -> None:
    result = register_level1(kyso, AN, PASSWORD, 0.93)
    assert result.identity.level is Level.ONE
    assert result.face_score == 0.93
    stored = registry(kyso).get(RAW_ID)
    assert stored.subject == result.identity.subject
    assert registry(kyso).password_hash(stored.subject).startswith("$argon2id$")  # type: ignore[union-attr]
    [event] = events(kyso, "REGISTER")
    assert event["outcome"] == "success"
    assert event["actor"] == kyso.pseudonyms.pseudonym(RAW_ID)
    assert event["details"]["id_hint"] == "019******345"
    assert event["details"]["face_score"] == 0.93
    text = audit_text(kyso)
    assert RAW_ID not in text
    assert PASSWORD not in text
    assert RAW_ID not in repr(result)
    assert RAW_ID not in str(result.to_dict())


def test_face_score_below_threshold_is_refused_and_recorded(kyso: Kyso) -> None:
    with pytest.raises(IdentityError, match=r"score 0\.79 is below the threshold 0\.80"):
        register_level1(kyso, AN, PASSWORD, 0.79)
    assert registry(kyso).find(RAW_ID) is None
    [event] = events(kyso, "REGISTER_ERROR")
    assert event["outcome"] == "failure"
    assert event["details"]["step"] == "face-match"


def test_threshold_is_a_parameter(kyso: Kyso) -> None:
    assert register_level1(kyso, AN, PASSWORD, 0.79, threshold=0.7).identity.level is Level.ONE


def test_weak_password_is_refused_by_the_policy_and_recorded_without_the_password(
        kyso: Kyso) -> None:
    with pytest.raises(PasswordPolicyError):
        register_level1(kyso, AN, "password", 0.95)
    with pytest.raises(PasswordPolicyError):
        register_level1(kyso, AN, RAW_ID + "x", 0.95)  # context: the ID number
    assert registry(kyso).find(RAW_ID) is None
    assert [e["details"]["step"] for e in events(kyso, "REGISTER_ERROR")] == [
        "password-policy", "password-policy"]
    assert RAW_ID not in audit_text(kyso)


def test_second_registration_of_the_same_id_is_refused(kyso: Kyso) -> None:
    register_level1(kyso, AN, PASSWORD, 0.95)
    with pytest.raises(IdentityError, match=r"019\*\*\*\*\*\*345 already exists"):
        register_level1(kyso, AN, PASSWORD, 0.95)
    assert events(kyso, "REGISTER_ERROR")[0]["details"]["step"] == "account"


def test_registration_needs_a_phone_number(kyso: Kyso) -> None:
    with pytest.raises(IdentityError, match="phone number"):
        register_level1(kyso, dataclasses.replace(AN, phone=None), PASSWORD, 0.95)


@pytest.mark.parametrize("score", [True, float("nan"), float("inf"), -0.1, 1.5, "0.9", None])
def test_match_scores_must_be_numbers_between_0_and_1(score: object) -> None:
    with pytest.raises(IdentityError, match="between 0 and 1"):
        match_score(score, "the score")


def test_recorded_scores_stand_in_returns_the_recorded_values() -> None:
    matcher = RecordedScores(face=0.91, fingerprint=0.88)
    assert matcher.face_score(b"a", b"b") == 0.91
    assert matcher.fingerprint_score(b"a", b"b") == 0.88


# --- level 2 -----------------------------------------------------------------------------------

def test_enrol_level2_promotes_with_the_evidence(kyso: Kyso, chip: ChipData) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    result = enrol(kyso, chip)
    assert result.identity.level is Level.TWO
    assert not result.created
    evidence = registry(kyso).level2_evidence(result.identity.subject)
    assert evidence is not None
    assert evidence["ds_serial"] == result.passive_auth.ds_serial
    assert evidence["document_number"] == "123456789"
    assert evidence["officer"] == "CA-TN-0042"
    assert (evidence["face_score"], evidence["fingerprint_score"]) == (0.95, 0.97)
    assert evidence["consent"] is True
    assert evidence["consent_at"].endswith("+07:00")
    assert set(evidence["checks"].values()) == {"PASSED"}
    [event] = events(kyso, "ENROL_LEVEL2")
    assert event["outcome"] == "success"
    assert event["actor"] == "officer:CA-TN-0042"
    assert event["object"] == kyso.pseudonyms.pseudonym(RAW_ID)
    assert RAW_ID not in audit_text(kyso)


def test_enrol_level2_without_an_account_registers_at_level2_without_a_password(
        kyso: Kyso, chip: ChipData) -> None:
    result = enrol(kyso, chip, phone="0912345678")
    assert result.created
    assert result.identity.level is Level.TWO
    assert result.identity.person.full_name == "Nguyễn Văn An"
    assert registry(kyso).password_hash(result.identity.subject) is None
    assert events(kyso, "ENROL_LEVEL2")[0]["details"]["created"] is True


def _refused(kyso: Kyso, step: str) -> dict[str, Any]:
    [event] = events(kyso, "ENROL_LEVEL2_ERROR")
    assert event["outcome"] == "failure"
    assert event["details"]["step"] == step
    found = registry(kyso).find(RAW_ID)
    assert found is None or found.level is Level.ONE
    return event


def test_enrolment_without_consent_is_refused(kyso: Kyso, chip: ChipData) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    with pytest.raises(IdentityError, match="consent"):
        enrol(kyso, chip, consent=False)
    _refused(kyso, "consent")


def test_tampered_chip_is_refused_naming_the_hash_check(kyso: Kyso, chip: ChipData) -> None:
    forged = dataclasses.replace(chip, data_groups={**chip.data_groups,
                                                    13: encode_dg13(personal(BINH))})
    with pytest.raises(IdentityError, match="data-group-hashes FAILED"):
        enrol(kyso, forged, phone="0912345678")
    assert _refused(kyso, "passive-auth")["details"]["checks"]["data-group-hashes"] == "FAILED"


def test_revoked_document_signer_is_refused(kyso: Kyso, chip: ChipData) -> None:
    serial = current_document_signer(kyso, PASSPHRASE).serial
    revoke_document_signer(kyso, PASSPHRASE, serial)
    with pytest.raises(IdentityError, match="ds-revocation FAILED"):
        enrol(kyso, chip, crls=[load_csca_crl(kyso)])
    _refused(kyso, "passive-auth")


def test_chip_of_another_person_is_refused(kyso: Kyso) -> None:
    other = issue_test_chip(kyso, PASSPHRASE, personal(BINH), b"face")
    with pytest.raises(IdentityError, match=r"another ID number, not 019\*\*\*\*\*\*345"):
        enrol(kyso, other)
    _refused(kyso, "id-match")


def test_expired_card_is_refused(kyso: Kyso) -> None:
    old = issue_test_chip(kyso, PASSPHRASE, personal(expiry=dt.date(2026, 1, 1)), b"face")
    with pytest.raises(IdentityError, match="expired on 2026-01-01"):
        enrol(kyso, old)
    _refused(kyso, "document-validity")


@pytest.mark.parametrize(("override", "step"), [
    ({"face_score": 0.5}, "face-match"),
    ({"fingerprint_score": 0.79}, "fingerprint-match"),
    ({"fingerprint_score": "0.99"}, "input"),
    ({"officer": ""}, "input"),
    ({"officer": "x\n[forged]"}, "input"),
])
def test_low_scores_and_bad_input_are_refused_naming_the_step(
        kyso: Kyso, chip: ChipData, override: dict[str, Any], step: str) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    with pytest.raises(IdentityError):
        enrol(kyso, chip, **override)
    _refused(kyso, step)


def test_locked_account_cannot_be_enrolled(kyso: Kyso, chip: ChipData) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    lock_identity(kyso, RAW_ID, LockGround.HOLDER_REQUEST)
    with pytest.raises(IdentityError, match="locked"):
        enrol(kyso, chip)
    _refused(kyso, "account")


def test_chip_from_a_rogue_csca_is_refused(kyso: Kyso, chip: ChipData) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from kyso.authn.csca import DocumentSigner, build_csca_certificate, build_ds_certificate

    key = ec.generate_private_key(ec.SECP384R1())
    rogue_csca = build_csca_certificate(key, kyso.now())
    ds_key = ec.generate_private_key(ec.SECP256R1())
    rogue = DocumentSigner(build_ds_certificate(rogue_csca, key, ds_key.public_key(), kyso.now()),
                           ds_key)
    with pytest.raises(IdentityError, match="ds-chain FAILED"):
        enrol(kyso, issue_chip(personal(), b"face", rogue, kyso.now()))
    _refused(kyso, "passive-auth")


# --- locks -------------------------------------------------------------------------------------

def test_lock_and_unlock_record_the_ground(kyso: Kyso) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    locked = lock_identity(kyso, RAW_ID, "card-revoked", by="admin:officer")
    assert locked.status is AccountStatus.LOCKED
    assert locked.lock_reason is LockGround.CARD_REVOKED
    unlocked = unlock_identity(kyso, RAW_ID)
    assert unlocked.status is AccountStatus.ACTIVE
    [lock_event] = events(kyso, "USER_LOCKED")
    assert lock_event["details"]["ground"] == "card-revoked"
    assert lock_event["actor"] == "admin:officer"
    [unlock_event] = events(kyso, "USER_UNLOCKED")
    assert unlock_event["outcome"] == "success"
    assert unlock_event["details"]["ground"] == "card-revoked"
    assert unlock_event["details"]["kind"] == "decree-69"  # every unlock event has a kind
    assert RAW_ID not in audit_text(kyso)


def test_deceased_holder_cannot_be_unlocked_and_the_refusal_is_recorded(kyso: Kyso) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    lock_identity(kyso, RAW_ID, LockGround.DECEASED)
    with pytest.raises(IdentityError, match="cannot be unlocked"):
        unlock_identity(kyso, RAW_ID)
    [event] = events(kyso, "USER_UNLOCKED")
    assert event["outcome"] == "failure"
    assert event["details"]["ground"] == "deceased"
    assert event["details"]["kind"] == "decree-69"


def test_unknown_lock_ground_is_refused(kyso: Kyso) -> None:
    register_level1(kyso, AN, PASSWORD, 0.93)
    with pytest.raises(IdentityError, match="holder-request"):
        lock_identity(kyso, RAW_ID, "bored")
