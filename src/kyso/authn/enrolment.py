"""Enrolment of citizens in the e-ID (Decree 69/2024/ND-CP), and administrative locks.

- **Level 1** (:func:`register_level1`, self-service in the app): ID number, personal data,
  phone, a password under the active policy, and a face photo matched against the population
  database. The match itself is out of scope: a :class:`FaceMatcher` returns a score in
  [0, 1]; the stand-in :class:`RecordedScores` returns the score the operator recorded. Below
  the threshold the registration is refused.
- **Level 2** (:func:`enrol_level2`, officer-attended): passive authentication of the chip
  ID card (:mod:`kyso.authn.passive_auth`), the chip's DG13 ID number equal to the account's,
  the card not expired, portrait and fingerprint scores at or above their thresholds, and the
  citizen's consent. The account is promoted with the evidence (DS serial, document number,
  scores, consent time, officer). A citizen **without an account** is registered at level 2
  directly (an officer-attended registration): the account is created from the chip's data,
  without a password (activation sets one), and promoted in the same call.
- :func:`lock_identity` / :func:`unlock_identity`: Decree 69 grounds (Art. 16). Locking
  suspends the citizen's remote-signing credentials (certificate hold); unlocking releases the
  holds the lock placed (:mod:`kyso.signing.gateway.suspension`).

Every decision is one audit event: ``REGISTER`` / ``REGISTER_ERROR``, ``ENROL_LEVEL2`` /
``ENROL_LEVEL2_ERROR`` (``step`` names the failing check), ``USER_LOCKED``,
``USER_UNLOCKED``. Events carry the citizen's pseudonym and masked ID number, never the raw
number or the password.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, Protocol

from cryptography import x509

from kyso.audit import Layer, Outcome
from kyso.authn.chip import ChipData, ChipPersonalData, issue_chip
from kyso.authn.csca import current_document_signer
from kyso.authn.passive_auth import PassiveAuthResult, check_passive_auth
from kyso.authn.passwords import PasswordHasher, hash_params, require_password_policy
from kyso.authn.registry import Identity, Level, LockGround, Person, Registry
from kyso.clock import VIETNAM, vn_iso
from kyso.context import Kyso
from kyso.errors import IdentityError, PasswordPolicyError
from kyso.pki.identifiers import mask_id

__all__ = [
    "FACE_THRESHOLD",
    "FINGERPRINT_THRESHOLD",
    "EnrolmentResult",
    "FaceMatcher",
    "FingerprintMatcher",
    "RecordedScores",
    "RegistrationResult",
    "Step",
    "enrol_level2",
    "issue_test_chip",
    "lock_identity",
    "match_score",
    "register_level1",
    "unlock_identity",
]

FACE_THRESHOLD = 0.80
FINGERPRINT_THRESHOLD = 0.80
_OFFICER = re.compile(r"[\w .:/@-]{1,64}")


class FaceMatcher(Protocol):
    def face_score(self, probe: bytes, reference: bytes) -> float:
        """Similarity in [0, 1] of a live portrait and the reference (database or DG2)."""
        ...


class FingerprintMatcher(Protocol):
    def fingerprint_score(self, probe: bytes, reference: bytes) -> float:
        """Similarity in [0, 1] of live fingerprints and the citizen database's."""
        ...


@dataclass(frozen=True)
class RecordedScores:
    """The stand-in matcher: returns the scores an operator recorded, whatever the images."""

    face: float
    fingerprint: float = 0.0

    def face_score(self, probe: bytes, reference: bytes) -> float:
        return self.face

    def fingerprint_score(self, probe: bytes, reference: bytes) -> float:
        return self.fingerprint


class Step(StrEnum):
    """What an enrolment checks; a refusal names the step that failed."""

    INPUT = "input"
    FACE_MATCH = "face-match"
    FINGERPRINT_MATCH = "fingerprint-match"
    PASSWORD_POLICY = "password-policy"  # noqa: S105 - a step's name
    CONSENT = "consent"
    PASSIVE_AUTH = "passive-auth"
    ID_MATCH = "id-match"
    DOCUMENT_VALIDITY = "document-validity"
    ACCOUNT = "account"


def match_score(value: object, what: str) -> float:
    """A match score: a finite number in [0, 1] (not a bool, not text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdentityError(f"{what} must be a number between 0 and 1")
    score = float(value)
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise IdentityError(f"{what} must be a number between 0 and 1")
    return score


@dataclass(frozen=True)
class RegistrationResult:
    identity: Identity
    face_score: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity.to_dict(), "face_score": self.face_score,
                "face_threshold": self.threshold}


@dataclass(frozen=True)
class EnrolmentResult:
    identity: Identity
    passive_auth: PassiveAuthResult
    evidence: Mapping[str, Any] = field(repr=False)
    created: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity.to_dict(), "created": self.created,
                "evidence": dict(self.evidence), "passive_auth": self.passive_auth.to_dict()}


def _refuse(kyso: Kyso, action: str, step: Step, message: str, *, actor: str, object: str,
            id_hint: str, **details: Any) -> NoReturn:
    kyso.record(Layer.AUTHN, action, Outcome.FAILURE, object=object, actor=actor,
                step=step.value, error=message, id_hint=id_hint, **details)
    raise IdentityError(message)


def register_level1(kyso: Kyso, person: Person, password: str, face_score: float, *,
                    threshold: float = FACE_THRESHOLD) -> RegistrationResult:
    """Self-registration at level 1 (face match, password policy, one account per ID)."""
    psn = kyso.pseudonyms.pseudonym(person.id_number)
    where = {"actor": psn, "object": psn, "id_hint": person.masked_id}
    try:
        score = match_score(face_score, "the face-match score")
        limit = match_score(threshold, "the face-match threshold")
    except IdentityError as exc:
        _refuse(kyso, "REGISTER_ERROR", Step.INPUT, str(exc), **where)
    if person.phone is None:
        _refuse(kyso, "REGISTER_ERROR", Step.INPUT,
                "a phone number is needed for a level-1 registration", **where)
    if score < limit:
        _refuse(kyso, "REGISTER_ERROR", Step.FACE_MATCH,
                f"the portrait does not match the population database (score {score:.2f} is "
                f"below the threshold {limit:.2f})", face_score=score, threshold=limit, **where)
    settings = kyso.settings.authn
    context = [person.id_number, person.phone, *person.full_name.split(),
               *([person.email] if person.email else [])]
    try:
        require_password_policy(password, settings.password_policy, context=context)
    except PasswordPolicyError as exc:
        kyso.record(Layer.AUTHN, "REGISTER_ERROR", Outcome.FAILURE, step=Step.PASSWORD_POLICY.value,
                    error=str(exc), **where)
        raise
    password_hash = PasswordHasher(hash_params(settings.password_hash)).hash(password)
    try:
        identity = Registry(kyso.store, kyso.clock).create(
            person, password_hash=password_hash, level=Level.ONE, face_score=score)
    except IdentityError as exc:
        _refuse(kyso, "REGISTER_ERROR", Step.ACCOUNT, str(exc), **where)
    kyso.record(Layer.AUTHN, "REGISTER", Outcome.SUCCESS, object=psn, actor=psn,
                id_hint=person.masked_id, subject=identity.subject, level=1, face_score=score,
                threshold=limit, policy=settings.password_policy)
    return RegistrationResult(identity, score, limit)


def enrol_level2(
    kyso: Kyso,
    id_number: str,
    chip: ChipData,
    *,
    officer: str,
    face_score: float,
    fingerprint_score: float,
    consent: bool,
    csca: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    face_threshold: float = FACE_THRESHOLD,
    fingerprint_threshold: float = FINGERPRINT_THRESHOLD,
    phone: str | None = None,
    email: str | None = None,
) -> EnrolmentResult:
    """Officer-attended level-2 enrolment after a passing chip check (see the module doc)."""
    hint = mask_id(id_number) if isinstance(id_number, str) else "?"
    psn = kyso.pseudonyms.pseudonym(id_number) if isinstance(id_number, str) else "?"
    officer_ok = isinstance(officer, str) and _OFFICER.fullmatch(officer.strip()) is not None
    actor = f"officer:{officer.strip()}" if officer_ok else kyso.actor
    where = {"actor": actor, "object": psn, "id_hint": hint}
    action = "ENROL_LEVEL2_ERROR"
    if not officer_ok:
        _refuse(kyso, action, Step.INPUT, "the officer must be named with 1-64 letters, digits "
                "or . : / @ - (a badge number or an account)", **where)
    officer = officer.strip()
    if not isinstance(id_number, str) or not (len(id_number) == 12 and id_number.isascii()
                                              and id_number.isdigit()):
        _refuse(kyso, action, Step.INPUT, "the ID number must be 12 ASCII digits", **where)
    try:
        face = match_score(face_score, "the face-match score")
        finger = match_score(fingerprint_score, "the fingerprint-match score")
        face_limit = match_score(face_threshold, "the face-match threshold")
        finger_limit = match_score(fingerprint_threshold, "the fingerprint-match threshold")
    except IdentityError as exc:
        _refuse(kyso, action, Step.INPUT, str(exc), **where)
    if consent is not True:
        _refuse(kyso, action, Step.CONSENT, "the citizen's consent was not recorded", **where)
    now = kyso.now()
    report = check_passive_auth(chip, csca=csca, crls=crls, now=now)
    checks = {c.check.value: c.status.value for c in report.checks}
    if not report.passed:
        failing = "; ".join(f"{c.check.value} {c.status.value}: {c.reason}"
                            for c in report.failures)
        _refuse(kyso, action, Step.PASSIVE_AUTH, f"chip passive authentication failed: {failing}",
                checks=checks, ds_serial=report.ds_serial, **where)
    chip_data = report.personal_data
    assert chip_data is not None  # a passing report always carries DG13
    if not hmac.compare_digest(chip_data.person.id_number, id_number):
        _refuse(kyso, action, Step.ID_MATCH,
                f"the chip belongs to another ID number, not {hint}", checks=checks, **where)
    today = now.astimezone(VIETNAM).date()
    if chip_data.expiry_date < today:
        _refuse(kyso, action, Step.DOCUMENT_VALIDITY,
                f"the ID card expired on {chip_data.expiry_date.isoformat()}", **where)
    if face < face_limit:
        _refuse(kyso, action, Step.FACE_MATCH, f"the portrait does not match (score {face:.2f} "
                f"is below the threshold {face_limit:.2f})", face_score=face, **where)
    if finger < finger_limit:
        _refuse(kyso, action, Step.FINGERPRINT_MATCH, f"the fingerprints do not match (score "
                f"{finger:.2f} is below the threshold {finger_limit:.2f})",
                fingerprint_score=finger, **where)

    registry = Registry(kyso.store, kyso.clock)
    current = registry.find(id_number)
    if current is not None and current.locked:
        ground = current.lock_reason.value if current.lock_reason else "unknown"
        _refuse(kyso, action, Step.ACCOUNT, f"the e-ID account of {hint} is locked ({ground}); "
                "unlock it before enrolling", **where)
    evidence: dict[str, Any] = {
        "method": "chip-passive-authentication", "ds_serial": report.ds_serial,
        "csca": report.csca_subject, "document_number": report.document_number,
        "checks": checks, "face_score": face, "face_threshold": face_limit,
        "fingerprint_score": finger, "fingerprint_threshold": finger_limit,
        "consent": True, "consent_at": vn_iso(now), "officer": officer,
    }
    created = current is None
    re_enrolment = current is not None and current.level is Level.TWO
    try:
        if current is None:
            person = Person.of(id_number=id_number, full_name=chip_data.person.full_name,
                               birth_date=chip_data.person.birth_date, sex=chip_data.person.sex,
                               phone=phone, email=email)
            identity = registry.create(person, password_hash=None, level=Level.TWO,
                                       officer=officer, evidence=evidence)
        else:
            identity = registry.promote_level2(current.subject, person=chip_data.person,
                                               officer=officer, evidence=evidence)
    except IdentityError as exc:  # includes a bad phone / e-mail and a concurrent change
        _refuse(kyso, action, Step.ACCOUNT, str(exc), **where)
    kyso.record(Layer.AUTHN, "ENROL_LEVEL2", Outcome.SUCCESS, object=psn, actor=actor,
                id_hint=hint, subject=identity.subject, created=created,
                re_enrolment=re_enrolment, **evidence)
    return EnrolmentResult(identity, report, evidence, created)


# ``kind`` of the USER_UNLOCKED events of a Decree 69 unlock: LockKind.DECREE_69 of
# kyso.authn.login_admin, which imports this module (the brute-force unlock's is "brute-force").
_DECREE_69_LOCK = "decree-69"


def lock_identity(kyso: Kyso, id_number: str, ground: LockGround | str, *,
                  by: str | None = None) -> Identity:
    """Lock an account on a Decree 69 ground (``USER_LOCKED``)."""
    try:
        ground = LockGround(ground)
    except ValueError:
        raise IdentityError("lock reason must be one of "
                            + ", ".join(g.value for g in LockGround)) from None
    registry = Registry(kyso.store, kyso.clock)
    current = registry.get(id_number)
    identity = registry.lock(current.subject, ground, by=by or kyso.actor)
    psn = kyso.pseudonyms.pseudonym(id_number)
    kyso.record(Layer.AUTHN, "USER_LOCKED", Outcome.SUCCESS,
                object=psn, actor=by or kyso.actor,
                id_hint=current.masked_id, ground=ground.value, ground_vi=ground.label_vi,
                previous_status=current.status.value)
    _signing_follows(kyso, identity.subject, locked=True, by=by or kyso.actor, holder=psn,
                     ground=ground.value)
    return identity


def unlock_identity(kyso: Kyso, id_number: str, *, by: str | None = None) -> Identity:
    """Unlock when the grounds have ended (``USER_UNLOCKED``, ``kind`` ``decree-69``); a
    deceased holder's account and an account that is not locked are refused (the refusal is
    recorded too)."""
    registry = Registry(kyso.store, kyso.clock)
    current = registry.get(id_number)
    psn = kyso.pseudonyms.pseudonym(id_number)
    ground = current.lock_reason.value if current.lock_reason else None
    try:
        identity = registry.unlock(current.subject, by=by or kyso.actor)
    except IdentityError as exc:
        kyso.record(Layer.AUTHN, "USER_UNLOCKED", Outcome.FAILURE, object=psn,
                    actor=by or kyso.actor, id_hint=current.masked_id, kind=_DECREE_69_LOCK,
                    ground=ground, error=str(exc))
        raise
    kyso.record(Layer.AUTHN, "USER_UNLOCKED", Outcome.SUCCESS, object=psn, actor=by or kyso.actor,
                id_hint=current.masked_id, kind=_DECREE_69_LOCK, ground=ground)
    _signing_follows(kyso, identity.subject, locked=False, by=by or kyso.actor, holder=psn,
                     ground=ground)
    return identity


def _signing_follows(kyso: Kyso, subject: str, *, locked: bool, by: str, **details: Any) -> None:
    """A locked account's signing credentials are suspended (certificate on hold) and resumed
    on unlock (:mod:`kyso.signing.gateway.suspension`). Imported when used, not at module
    level: authn stays below signing in the layering (the gateway depends on the e-ID
    registry, never the reverse), and ``kyso id`` commands do not load the signing modules."""
    from kyso.signing.gateway import suspension

    if locked:
        suspension.suspend_for_lock(kyso, subject, by=by, **details)
    else:
        suspension.resume_after_unlock(kyso, subject, by=by, **details)


def issue_test_chip(kyso: Kyso, passphrase: str, data: ChipPersonalData, face: bytes) -> ChipData:
    """Personalise a test chip, signed by the current Document Signer (the CSCA and a DS are
    created on first use); ``CHIP_ISSUE`` records the DS serial and the document number."""
    signer = current_document_signer(kyso, passphrase)
    chip = issue_chip(data, face, signer, kyso.now())
    psn = kyso.pseudonyms.pseudonym(data.person.id_number)
    kyso.record(Layer.AUTHN, "CHIP_ISSUE", Outcome.SUCCESS, object=psn,
                id_hint=data.person.masked_id, ds_serial=signer.serial,
                document_number=data.document_number, expiry_date=data.expiry_date.isoformat())
    return chip
