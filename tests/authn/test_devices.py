"""Device binding: one active EC P-256 device per account; a new device needs the old device's
signature or a chip check that kyso runs itself (passive authentication against the trusted
CSCA, the card's ID number the account's); hostile keys, signatures and chips are refused;
every decision is audited without the raw ID number."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import PASSPHRASE, T0, audit_events, audit_text
from kyso.audit.events import scrub
from kyso.authn.chip import ChipData, ChipPersonalData, encode_dg13, issue_chip
from kyso.authn.csca import (
    DocumentSigner,
    build_csca_certificate,
    build_ds_certificate,
    current_document_signer,
    load_csca_certificate,
    load_csca_crl,
    revoke_document_signer,
)
from kyso.authn.devices import (
    APPROVAL_TTL,
    Device,
    DeviceApprovalRequest,
    Devices,
    DeviceStatus,
    approval_message,
    load_device_key,
    login_message,
    public_key_der,
    signature_from_base64,
    verify_device_signature,
)
from kyso.authn.devices.records import challenge_ref
from kyso.authn.enrolment import issue_test_chip
from kyso.authn.keys import jwk_thumbprint
from kyso.authn.passive_auth import Indication, PassiveAuthResult
from kyso.authn.registry import Identity, Level, LockGround, Person, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError, IdentityError
from kyso.store.schema import devices as devices_table

AN_ID = "019090012345"
BINH_ID = "001085001234"


def spki(key: Any) -> bytes:
    der: bytes = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def approve_sig(key: ec.EllipticCurvePrivateKey, req: DeviceApprovalRequest) -> bytes:
    return sign(key, req.message)


AN = Person.of(id_number=AN_ID, full_name="Nguyễn Văn An", birth_date="1990-05-17", sex="male")
BINH = Person.of(id_number=BINH_ID, full_name="Trần Văn Bình", birth_date="1985-01-01",
                 sex="male")
FACE = b"\xff\xd8portrait\xff\xd9"


def personal(person: Person, expiry: dt.date = dt.date(2036, 1, 5)) -> ChipPersonalData:
    return ChipPersonalData(person=person, document_number="123456789",
                            issue_date=dt.date(2026, 1, 5), expiry_date=expiry)


def trust(kyso: Kyso) -> dict[str, Any]:
    """This home's test CSCA and its current CRL, as ``kyso id enrol-l2`` trusts them."""
    crl = load_csca_crl(kyso)
    return {"csca": [load_csca_certificate(kyso)], "crls": [crl] if crl is not None else []}


def make_identity(kyso: Kyso, id_number: str = AN_ID, level: Level = Level.TWO) -> Identity:
    person = {
        AN_ID: Person.of(id_number=AN_ID, full_name="Nguyễn Văn An", birth_date="1990-05-17",
                         sex="male", phone="0912345678"),
        BINH_ID: Person.of(id_number=BINH_ID, full_name="Trần Văn Bình",
                           birth_date="1985-01-01", sex="male", phone="0987654321"),
    }[id_number]
    return Registry(kyso.store, kyso.clock).create(person, password_hash=None, level=level)


@pytest.fixture
def an(kyso: Kyso) -> Identity:
    return make_identity(kyso)


@pytest.fixture
def devs(kyso: Kyso) -> Devices:
    return Devices(kyso)


@pytest.fixture
def an_chip(kyso: Kyso) -> ChipData:
    """An's chip card, signed by this home's Document Signer (test CSCA created on first use)."""
    return issue_test_chip(kyso, PASSPHRASE, personal(AN), FACE)


@dataclass
class Bound:
    identity: Identity
    key: ec.EllipticCurvePrivateKey
    device: Device


@pytest.fixture
def bound(an: Identity, devs: Devices) -> Bound:
    key = new_key()
    return Bound(an, key, devs.bind_first(an.subject, spki(key), "iPhone của An"))


def actions(kyso: Kyso) -> list[tuple[str, str]]:
    return [(e["action"], e["outcome"]) for e in audit_events(kyso)]


def last_event(kyso: Kyso, action: str) -> dict[str, Any]:
    return [e for e in audit_events(kyso) if e["action"] == action][-1]


def active_count(kyso: Kyso, subject: str) -> int:
    with kyso.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(devices_table).where(
            devices_table.c.subject == subject, devices_table.c.status == "active")).scalar() or 0)


# --- first binding ----------------------------------------------------------------------------

def test_bind_first_makes_the_device_active_and_audits_with_the_pseudonym(
        kyso: Kyso, an: Identity, devs: Devices) -> None:
    key = new_key()
    device = devs.bind_first(an.subject, spki(key), "  iPhone   của An ")
    assert device.status is DeviceStatus.ACTIVE
    assert device.name == "iPhone của An"
    assert device.thumbprint == jwk_thumbprint(key.public_key())
    assert device.approved_by == "first-binding"
    assert device.activated_at == kyso.now()
    assert devs.active(an.subject) == device
    event = last_event(kyso, "DEVICE_BOUND")
    assert event["outcome"] == "success"
    assert event["actor"] == kyso.pseudonyms.pseudonym(AN_ID)
    assert event["object"] == f"device:{device.id}"
    assert AN_ID not in audit_text(kyso)


def test_bind_first_refuses_an_account_that_already_has_an_active_device(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    with pytest.raises(IdentityError, match="already has an active device"):
        devs.bind_first(bound.identity.subject, spki(new_key()), "second phone")
    assert devs.list(bound.identity.subject) == [bound.device]
    event = last_event(kyso, "DEVICE_BIND_ERROR")
    assert event["details"]["reason"] == "already-bound"


def test_bind_first_refuses_a_locked_account(kyso: Kyso, an: Identity, devs: Devices) -> None:
    Registry(kyso.store, kyso.clock).lock(an.subject, LockGround.HOLDER_REQUEST, by="admin:test")
    with pytest.raises(AccountLockedError, match="locked"):
        devs.bind_first(an.subject, spki(new_key()), "phone")
    assert devs.list(an.subject) == []


def test_bind_first_refuses_an_unknown_account(devs: Devices) -> None:
    with pytest.raises(IdentityError, match="no e-ID account"):
        devs.bind_first("u-nobody", spki(new_key()), "phone")


def test_one_device_key_cannot_be_bound_to_two_accounts(kyso: Kyso, bound: Bound,
                                                         devs: Devices) -> None:
    binh = make_identity(kyso, BINH_ID)
    with pytest.raises(IdentityError, match="already registered"):
        devs.bind_first(binh.subject, spki(bound.key), "phone")
    assert devs.active(binh.subject) is None


def test_racing_first_bindings_leave_exactly_one_active_device(kyso: Kyso, an: Identity,
                                                               devs: Devices) -> None:
    results: list[object] = []
    keys = [new_key() for _ in range(4)]
    barrier = threading.Barrier(len(keys))

    def bind(key: ec.EllipticCurvePrivateKey) -> None:
        barrier.wait()
        try:
            results.append(devs.bind_first(an.subject, spki(key), "phone"))
        except IdentityError as exc:
            results.append(exc)

    threads = [threading.Thread(target=bind, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Device) for r in results) == 1
    assert sum(isinstance(r, IdentityError) for r in results) == 3
    assert active_count(kyso, an.subject) == 1


def test_the_database_itself_refuses_a_second_active_device(kyso: Kyso, bound: Bound) -> None:
    row = {"id": "dev-rogue", "subject": bound.identity.subject, "name": "rogue",
           "public_key": spki(new_key()), "thumbprint": "x" * 43, "status": "active",
           "created_at": kyso.now()}
    with pytest.raises(sa.exc.IntegrityError):
        kyso.store.write(lambda conn: conn.execute(sa.insert(devices_table).values(**row)))
    assert active_count(kyso, bound.identity.subject) == 1


# --- approval by the old device ---------------------------------------------------------------

def test_old_device_approves_new_device_which_replaces_it_in_one_step(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    new = new_key()
    req = devs.request_new(bound.identity.subject, spki(new), "Samsung của An")
    assert req.expires_at == kyso.now() + dt.timedelta(minutes=5)
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert last_event(kyso, "DEVICE_APPROVAL_REQUESTED")["outcome"] == "success"

    device = devs.approve_with_device(req.nonce, approve_sig(bound.key, req), bound.device.id)
    assert device.id == req.device_id
    assert device.status is DeviceStatus.ACTIVE
    assert device.approved_by == f"device:{bound.device.id}"
    assert devs.get(bound.device.id).status is DeviceStatus.RETIRED
    assert devs.active(bound.identity.subject) == device
    event = last_event(kyso, "DEVICE_APPROVED")
    assert event["details"]["approved_by"] == f"device:{bound.device.id}"
    assert event["details"]["retired_device"] == bound.device.id
    assert event["actor"] == kyso.pseudonyms.pseudonym(AN_ID)


def test_raw_r_s_signatures_are_accepted_like_der(bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    sig = raw(approve_sig(bound.key, req))
    assert len(sig) == 64
    assert devs.approve_with_device(req.nonce, sig, bound.device.id).active


def test_an_approval_nonce_is_single_use(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    sig = approve_sig(bound.key, req)
    devs.approve_with_device(req.nonce, sig, bound.device.id)
    with pytest.raises(AuthenticationFailedError, match="already used"):
        devs.approve_with_device(req.nonce, sig, bound.device.id)
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "replayed"


def refused(kyso: Kyso, devs: Devices, bound: Bound, req: DeviceApprovalRequest, sig: bytes,
            signer: str, reason: str, match: str) -> None:
    with pytest.raises(AuthenticationFailedError, match=match):
        devs.approve_with_device(req.nonce, sig, signer)
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert devs.active(bound.identity.subject) == bound.device
    event = last_event(kyso, "DEVICE_APPROVAL_ERROR")
    assert event["outcome"] == "failure"
    assert event["details"]["reason"] == reason
    assert AN_ID not in audit_text(kyso)


def test_new_device_cannot_approve_itself(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    new = new_key()
    req = devs.request_new(bound.identity.subject, spki(new), "phone")
    refused(kyso, devs, bound, req, approve_sig(new, req), req.device_id, "signer-not-active",
            "not this account's active device")


def test_new_device_signature_under_the_old_device_id_does_not_verify(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    new = new_key()
    req = devs.request_new(bound.identity.subject, spki(new), "phone")
    refused(kyso, devs, bound, req, approve_sig(new, req), bound.device.id, "bad-signature",
            "does not verify")


def test_a_retired_device_cannot_approve(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    first_req = devs.request_new(bound.identity.subject, spki(second := new_key()), "phone 2")
    devs.approve_with_device(first_req.nonce, approve_sig(bound.key, first_req), bound.device.id)
    current = devs.active(bound.identity.subject)
    assert current is not None
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone 3")
    with pytest.raises(AuthenticationFailedError, match="not this account's active device"):
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req), bound.device.id)
    assert devs.active(bound.identity.subject) == current
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert second  # the active device can still approve
    assert devs.approve_with_device(req.nonce, approve_sig(second, req), current.id).active


def test_another_accounts_device_cannot_approve(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    binh = make_identity(kyso, BINH_ID)
    binh_key = new_key()
    binh_device = devs.bind_first(binh.subject, spki(binh_key), "Bình's phone")
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    refused(kyso, devs, bound, req, approve_sig(binh_key, req), binh_device.id,
            "signer-not-active", "not this account's active device")
    assert devs.active(binh.subject) == binh_device


def test_a_signature_over_another_thumbprint_is_refused(kyso: Kyso, bound: Bound,
                                                        devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    other = jwk_thumbprint(new_key().public_key())
    sig = sign(bound.key, approval_message(nonce=req.nonce, subject=req.subject, thumbprint=other))
    refused(kyso, devs, bound, req, sig, bound.device.id, "bad-signature", "does not verify")


def test_a_signature_over_another_nonce_or_purpose_is_refused(kyso: Kyso, bound: Bound,
                                                              devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    for message in (
        approval_message(nonce="A" * 43, subject=req.subject, thumbprint=req.thumbprint),
        login_message(nonce=req.nonce, subject=req.subject, client_id=""),
        req.nonce.encode(),
    ):
        refused(kyso, devs, bound, req, sign(bound.key, message), bound.device.id,
                "bad-signature", "does not verify")


def test_an_expired_approval_request_is_refused(kyso: Kyso, clock: FrozenClock, bound: Bound,
                                                devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    clock.advance(dt.timedelta(minutes=5))
    refused(kyso, devs, bound, req, approve_sig(bound.key, req), bound.device.id, "expired",
            "expired")


def test_an_unknown_nonce_is_refused_and_audited(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    with pytest.raises(AuthenticationFailedError, match="unknown"):
        devs.approve_with_device("B" * 43, b"\x00" * 64, bound.device.id)
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "unknown-nonce"


def test_a_new_request_replaces_the_pending_one(bound: Bound, devs: Devices) -> None:
    old = devs.request_new(bound.identity.subject, spki(new_key()), "phone A")
    new = devs.request_new(bound.identity.subject, spki(new_key()), "phone B")
    with pytest.raises(AuthenticationFailedError, match="unknown"):
        devs.approve_with_device(old.nonce, approve_sig(bound.key, old), bound.device.id)
    assert sorted(d.name for d in devs.list(bound.identity.subject)) == ["iPhone của An",
                                                                        "phone B"]
    assert devs.approve_with_device(new.nonce, approve_sig(bound.key, new), bound.device.id).active


def test_a_locked_account_cannot_approve_a_device(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    Registry(kyso.store, kyso.clock).lock(bound.identity.subject, LockGround.SECURITY, by="x")
    with pytest.raises(AccountLockedError):
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req), bound.device.id)
    assert devs.get(req.device_id).status is DeviceStatus.PENDING


def test_racing_device_and_chip_approvals_leave_exactly_one_active_device(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    sig = approve_sig(bound.key, req)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def run(call: Callable[[], Device]) -> None:
        barrier.wait()
        try:
            results.append(call())
        except (AuthenticationFailedError, IdentityError) as exc:
            results.append(exc)

    calls: list[Callable[[], Device]] = [
        lambda: devs.approve_with_device(req.nonce, sig, bound.device.id),
        lambda: devs.approve_with_device(req.nonce, sig, bound.device.id),
        lambda: devs.approve_with_chip(req.nonce, an_chip, **trust(kyso)),
        lambda: devs.approve_with_chip(req.nonce, an_chip, **trust(kyso)),
    ]
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Device) for r in results) == 1, results
    assert active_count(kyso, bound.identity.subject) == 1
    assert devs.get(req.device_id).active
    assert devs.get(bound.device.id).status is DeviceStatus.RETIRED


def test_the_active_device_signs_by_default_and_a_request_of_another_account_is_refused(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    binh = make_identity(kyso, BINH_ID)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    with pytest.raises(IdentityError, match="not for this account"):
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req), subject=binh.subject)
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "wrong-account"
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    device = devs.approve_with_device(req.nonce, approve_sig(bound.key, req),
                                      subject=bound.identity.subject)
    assert device.approved_by == f"device:{bound.device.id}"
    assert last_event(kyso, "DEVICE_APPROVED")["details"]["method"] == "device-signature"


def test_without_an_active_device_only_a_chip_check_can_approve(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    devs.retire(bound.device.id)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    with pytest.raises(AuthenticationFailedError, match="no active device"):
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req))
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "no-active-device"
    assert devs.get(req.device_id).status is DeviceStatus.PENDING


# --- reading an approval request back ---------------------------------------------------------

def test_approval_request_reads_back_the_live_request_and_its_message(
        bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    assert devs.approval_request(req.nonce) == req
    assert devs.approval_request(req.nonce, subject=bound.identity.subject).message == req.message


def test_approval_request_refuses_unknown_used_expired_and_foreign_requests(
        kyso: Kyso, clock: FrozenClock, bound: Bound, devs: Devices) -> None:
    binh = make_identity(kyso, BINH_ID)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "phone")
    with pytest.raises(AuthenticationFailedError, match="unknown"):
        devs.approval_request("C" * 43)
    with pytest.raises(IdentityError, match="not for this account"):
        devs.approval_request(req.nonce, subject=binh.subject)
    with pytest.raises(AuthnError, match="nonce"):
        devs.approval_request("bad nonce")
    clock.advance(APPROVAL_TTL)
    with pytest.raises(AuthenticationFailedError, match="expired"):
        devs.approval_request(req.nonce)
    fresh = devs.request_new(bound.identity.subject, spki(new_key()), "phone 2")
    devs.approve_with_device(fresh.nonce, approve_sig(bound.key, fresh))
    with pytest.raises(AuthenticationFailedError, match="already used"):
        devs.approval_request(fresh.nonce)


# --- approval by the chip card ----------------------------------------------------------------
# approve_with_chip takes the chip as read and the trust inputs and runs passive authentication
# itself, exactly as level-2 enrolment does: nothing the caller says about a chip is trusted.

def pending_untouched(kyso: Kyso, devs: Devices, bound: Bound, req: DeviceApprovalRequest
                      ) -> None:
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert devs.active(bound.identity.subject) == bound.device
    assert "DEVICE_APPROVED" not in [a for a, _ in actions(kyso)]


def chip_refused(kyso: Kyso, devs: Devices, bound: Bound, req: DeviceApprovalRequest,
                 chip: Any, reason: str, match: str, **overrides: Any) -> dict[str, Any]:
    with pytest.raises(AuthenticationFailedError, match=match) as exc:
        devs.approve_with_chip(req.nonce, chip, **{**trust(kyso), **overrides})
    assert AN_ID not in str(exc.value)
    pending_untouched(kyso, devs, bound, req)
    event = last_event(kyso, "DEVICE_APPROVAL_ERROR")
    assert event["outcome"] == "failure"
    assert event["details"]["reason"] == reason
    assert event["details"]["subject"] == bound.identity.subject
    assert AN_ID not in audit_text(kyso)
    return event


def test_chip_check_activates_the_pending_device_and_retires_the_old_one(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    serial = current_document_signer(kyso, PASSPHRASE).serial
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    device = devs.approve_with_chip(req.nonce, an_chip, **trust(kyso),
                                    subject=bound.identity.subject, officer=" CA-TN-0042 ")
    assert device.id == req.device_id
    assert device.active
    assert device.approved_by == f"chip:{serial}"
    assert devs.get(bound.device.id).status is DeviceStatus.RETIRED
    assert devs.active(bound.identity.subject) == device
    with pytest.raises(AuthenticationFailedError, match="already used"):  # the nonce is spent
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req), bound.device.id)
    event = last_event(kyso, "DEVICE_APPROVED")
    assert event["actor"] == "officer:CA-TN-0042"
    details = event["details"]
    assert details["citizen"] == kyso.pseudonyms.pseudonym(AN_ID)
    assert details["approved_by"] == f"chip:{serial}"
    assert details["ds_serial"] == serial
    assert details["method"] == "chip-passive-authentication"
    assert details["retired_device"] == bound.device.id
    assert set(details["checks"].values()) == {"PASSED"}
    assert len(details["checks"]) == 6
    assert AN_ID not in audit_text(kyso)


def test_chip_check_binds_a_device_when_the_old_phone_is_gone(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    devs.retire(bound.device.id)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    device = devs.approve_with_chip(req.nonce, an_chip, **trust(kyso))
    assert devs.active(bound.identity.subject) == device
    event = last_event(kyso, "DEVICE_APPROVED")
    assert event["details"]["retired_device"] is None
    assert event["actor"] == kyso.pseudonyms.pseudonym(AN_ID)  # the holder's own app read it
    assert "officer" not in event["details"]


def test_a_chip_of_another_person_is_refused_without_logging_either_number(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    binh_chip = issue_test_chip(kyso, PASSPHRASE, personal(BINH), FACE)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    event = chip_refused(kyso, devs, bound, req, binh_chip, "chip-mismatch", "does not belong")
    assert event["details"]["ds_serial"] == current_document_signer(kyso, PASSPHRASE).serial
    assert BINH_ID not in audit_text(kyso)
    assert devs.approve_with_chip(req.nonce, issue_test_chip(kyso, PASSPHRASE, personal(AN),
                                                             FACE), **trust(kyso)).active


def test_a_tampered_chip_is_refused_naming_the_hash_check(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    forged = dataclasses.replace(an_chip, data_groups={
        **an_chip.data_groups, 13: encode_dg13(personal(dataclasses.replace(AN,
                                                                            full_name="Kẻ Giả")))})
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    event = chip_refused(kyso, devs, bound, req, forged, "passive-auth",
                         "data-group-hashes FAILED")
    assert event["details"]["checks"]["data-group-hashes"] == "FAILED"
    assert devs.approve_with_chip(req.nonce, an_chip, **trust(kyso)).active  # still live


def test_a_chip_under_a_rogue_csca_is_refused(kyso: Kyso, bound: Bound, devs: Devices,
                                             an_chip: ChipData) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    rogue_csca = build_csca_certificate(key, kyso.now())  # the real CSCA's name
    ds_key = ec.generate_private_key(ec.SECP256R1())
    rogue = DocumentSigner(build_ds_certificate(rogue_csca, key, ds_key.public_key(), kyso.now()),
                           ds_key)
    forged = issue_chip(personal(AN), FACE, rogue, kyso.now())
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    chip_refused(kyso, devs, bound, req, forged, "passive-auth", "ds-chain FAILED")
    # trusting the rogue CSCA still leaves its Document Signer's revocation unknown
    chip_refused(kyso, devs, bound, req, forged, "passive-auth", "ds-revocation INDETERMINATE",
                 csca=[rogue_csca])


def test_a_revoked_document_signer_is_refused(kyso: Kyso, bound: Bound, devs: Devices,
                                              an_chip: ChipData) -> None:
    revoke_document_signer(kyso, PASSPHRASE, current_document_signer(kyso, PASSPHRASE).serial)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    chip_refused(kyso, devs, bound, req, an_chip, "passive-auth", "ds-revocation FAILED")


def test_without_a_crl_the_chip_check_is_indeterminate_and_refused(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    chip_refused(kyso, devs, bound, req, an_chip, "passive-auth", "ds-revocation INDETERMINATE",
                 crls=[])


def test_an_expired_id_card_is_refused(kyso: Kyso, bound: Bound, devs: Devices) -> None:
    old = issue_test_chip(kyso, PASSPHRASE, personal(AN, expiry=dt.date(2026, 1, 1)), FACE)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    chip_refused(kyso, devs, bound, req, old, "card-expired", "expired on 2026-01-01")


@dataclass(frozen=True)
class LookAlike:
    """What the old API accepted: an object that merely claims a passed chip check."""

    id_number: str = AN_ID
    ds_serial: str = "5a1f03"
    passed: bool = True


def forged_report() -> PassiveAuthResult:
    return PassiveAuthResult(indication=Indication.TOTAL_PASSED, checks=(), checked_at=T0,
                             ds_serial="5a1f03", personal_data=personal(AN))


@pytest.mark.parametrize("make", [LookAlike, forged_report, object, dict, lambda: None,
                                  lambda: b"chip"], ids=["look-alike", "forged-report",
                                                         "object", "dict", "none", "bytes"])
def test_anything_but_the_chip_itself_is_refused(kyso: Kyso, bound: Bound, devs: Devices,
                                                 an_chip: ChipData,
                                                 make: Callable[[], Any]) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthnError, match="ChipData"):
        devs.approve_with_chip(req.nonce, make(), **trust(kyso))
    pending_untouched(kyso, devs, bound, req)


@pytest.mark.parametrize(("trust_args", "match"), [
    ({"csca": []}, "CSCA certificate"),
    ({"csca": [b"-----BEGIN CERTIFICATE-----"]}, "CSCA certificate"),
    ({"csca": "csca.pem"}, "CSCA certificate"),
    ({"crls": "csca.crl"}, "CRLs"),
    ({"crls": [None]}, "CRLs"),
])
def test_the_trust_inputs_must_be_certificates_and_crls(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData, trust_args: dict[str, Any],
        match: str) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthnError, match=match):
        devs.approve_with_chip(req.nonce, an_chip, **{**trust(kyso), **trust_args})
    pending_untouched(kyso, devs, bound, req)


@pytest.mark.parametrize("officer", ["", "x\n[forged]", "a" * 65, 42])
def test_a_malformed_officer_is_refused(kyso: Kyso, bound: Bound, devs: Devices,
                                        an_chip: ChipData, officer: Any) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthnError, match="officer"):
        devs.approve_with_chip(req.nonce, an_chip, **trust(kyso), officer=officer)
    pending_untouched(kyso, devs, bound, req)


def test_chip_check_needs_a_live_approval_request(kyso: Kyso, clock: FrozenClock, bound: Bound,
                                                 devs: Devices, an_chip: ChipData) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    clock.advance(APPROVAL_TTL)
    chip_refused(kyso, devs, bound, req, an_chip, "expired", "has expired")


def test_chip_check_cannot_activate_another_accounts_device(
        kyso: Kyso, bound: Bound, devs: Devices, an_chip: ChipData) -> None:
    binh = make_identity(kyso, BINH_ID)
    req = devs.request_new(binh.subject, spki(new_key()), "Bình's phone")
    with pytest.raises(IdentityError, match="not for this account"):
        devs.approve_with_chip(req.nonce, an_chip, **trust(kyso), subject=bound.identity.subject)
    with pytest.raises(AuthenticationFailedError, match="does not belong"):  # An's chip, Bình's
        devs.approve_with_chip(req.nonce, an_chip, **trust(kyso))
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert devs.active(binh.subject) is None


# --- retirement and reads ---------------------------------------------------------------------

def test_retire_frees_the_account_for_a_new_first_binding(kyso: Kyso, bound: Bound,
                                                          devs: Devices) -> None:
    retired = devs.retire(bound.device.id)
    assert retired.status is DeviceStatus.RETIRED
    assert retired.retired_at == kyso.now()
    assert devs.active(bound.identity.subject) is None
    event = last_event(kyso, "DEVICE_RETIRED")
    assert event["actor"] == "admin:test"
    assert event["details"]["citizen"] == kyso.pseudonyms.pseudonym(AN_ID)
    with pytest.raises(IdentityError, match="already retired"):
        devs.retire(bound.device.id)
    assert devs.bind_first(bound.identity.subject, spki(new_key()), "new").active


def test_retire_of_an_unknown_or_foreign_device_is_refused(kyso: Kyso, bound: Bound,
                                                           devs: Devices) -> None:
    with pytest.raises(IdentityError, match="no device"):
        devs.retire("dev-unknown")
    binh = make_identity(kyso, BINH_ID)
    with pytest.raises(IdentityError, match="no such device for this account"):
        devs.retire(bound.device.id, subject=binh.subject)
    assert devs.active(bound.identity.subject) == bound.device


def test_list_shows_every_device_oldest_first_and_hides_the_key(
        clock: FrozenClock, bound: Bound, devs: Devices) -> None:
    clock.advance(dt.timedelta(seconds=1))
    devs.request_new(bound.identity.subject, spki(new_key()), "pending phone")
    listed = devs.list(bound.identity.subject)
    assert [d.name for d in listed] == ["iPhone của An", "pending phone"]
    record = listed[0].to_dict()
    assert set(record) == {"id", "subject", "name", "status", "thumbprint", "approved_by",
                           "created_at", "activated_at", "retired_at"}
    assert "public_key" not in repr(listed[0])


# --- hostile input ----------------------------------------------------------------------------

def _off_curve_spki() -> bytes:
    der = bytearray(spki(new_key()))
    der[-1] ^= 0x01  # y no longer matches x
    return bytes(der)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: spki(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "P-256"),
    (lambda: spki(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    (lambda: spki(ec.generate_private_key(ec.SECP256K1())), "P-256"),
    (lambda: spki(ed25519.Ed25519PrivateKey.generate()), "P-256"),
    (_off_curve_spki, "not a valid DER"),
    (lambda: spki(new_key())[:-5], "not a valid DER"),
    (lambda: spki(new_key()) + b"\x00", "not a valid DER"),
    (lambda: b"garbage", "not a valid DER"),
    (lambda: b"", "1-512 bytes"),
    (lambda: b"\x30" * 100_000, "1-512 bytes"),
    (lambda: spki(new_key()).hex(), "DER bytes"),
    (lambda: None, "DER bytes"),
])
def test_only_p256_subject_public_keys_are_accepted(an: Identity, devs: Devices,
                                                    make: Callable[[], Any], match: str) -> None:
    with pytest.raises(AuthnError, match=match):
        devs.bind_first(an.subject, make(), "phone")
    assert devs.list(an.subject) == []


def test_compressed_points_are_stored_uncompressed(an: Identity, devs: Devices) -> None:
    key = new_key()
    compressed = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.CompressedPoint)
    der = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    device = devs.bind_first(an.subject, der, "phone")
    assert device.public_key == spki(key)


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "phone\x00", "tab\u200bless\u0007", 42])
def test_bad_device_names_are_refused(an: Identity, devs: Devices, name: Any) -> None:
    with pytest.raises(AuthnError, match="device name"):
        devs.bind_first(an.subject, spki(new_key()), name)


_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.mark.parametrize(("make", "match"), [
    (lambda good: good + b"\x00", "not an ECDSA P-256 signature"),  # trailing byte after DER
    (lambda good: good[:-1], "not an ECDSA P-256 signature"),  # truncated DER
    (lambda good: b"\x00" * 64, "not an ECDSA P-256 signature"),  # r = s = 0
    (lambda good: _N.to_bytes(32, "big") * 2, "not an ECDSA P-256 signature"),  # r = s = n
    (lambda good: raw(good) + b"\x00", "not an ECDSA P-256 signature"),  # 65 bytes
    (lambda good: b"\x30" + b"\xff" * 5000, "not an ECDSA P-256 signature"),
    (lambda good: b"", "not an ECDSA P-256 signature"),
    (lambda good: bytes.fromhex("300702020005020107"), "not an ECDSA P-256 signature"),  # BER int
    (lambda good: bytes.fromhex("308106020105020107"), "not an ECDSA P-256 signature"),  # BER len
    (lambda good: raw(good)[::-1], "does not verify"),
    (lambda good: good.hex(), "must be bytes"),
    (lambda good: None, "must be bytes"),
])
def test_malformed_signatures_are_refused(make: Callable[[bytes], Any], match: str) -> None:
    key = new_key()
    message = b"message"
    good = sign(key, message)
    verify_device_signature(key.public_key(), good, message)
    verify_device_signature(key.public_key(), raw(good), message)
    with pytest.raises(AuthenticationFailedError, match=match):
        verify_device_signature(load_device_key(spki(key)), make(good), message)


@pytest.mark.parametrize("value", ["", "x" * 65, "nonce with space", "ñ" * 10, None, 42,
                                   "a\nb"])
def test_malformed_nonces_and_device_ids_are_refused(bound: Bound, devs: Devices,
                                                     value: Any) -> None:
    with pytest.raises(AuthnError, match="nonce"):
        devs.approve_with_device(value, b"\x00" * 64, bound.device.id)
    with pytest.raises(AuthnError, match="nonce"):
        devs.approval_request(value)
    if value is not None:  # no signer id: the account's active device signs
        with pytest.raises(AuthnError, match="device id"):
            devs.approve_with_device("A" * 43, b"\x00" * 64, value)
    with pytest.raises(AuthnError, match="device id"):
        devs.retire(value)


def test_public_key_files_pem_or_der_become_the_same_subject_public_key_info() -> None:
    key = new_key()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_der(pem) == spki(key)
    assert public_key_der(b"# exported by the app\n" + pem) == spki(key)
    assert public_key_der(spki(key)) == spki(key)


def test_a_private_key_file_is_refused_without_echoing_it() -> None:
    pem = new_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    with pytest.raises(AuthnError, match="private key") as exc:
        public_key_der(pem)
    body = pem.decode().splitlines()[1]
    assert body not in str(exc.value)


@pytest.mark.parametrize(("data", "match"), [
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "PEM CERTIFICATE"),
    (b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", "not a valid PEM"),
    (b"hello", "neither a PEM public key"),
    (b"", "neither a PEM public key"),
])
def test_other_key_files_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(AuthnError, match=match):
        public_key_der(data)


def test_signatures_in_base64_or_base64url_with_line_breaks_are_decoded() -> None:
    sig = sign(new_key(), b"m")
    standard = base64.b64encode(sig)
    assert signature_from_base64(standard[:40] + b"\n" + standard[40:] + b"\n") == sig
    assert signature_from_base64(base64.urlsafe_b64encode(sig).rstrip(b"=")) == sig


@pytest.mark.parametrize(("text", "match"), [
    (b"", "empty"), (b"  \n", "empty"), (b"\xff\xfe", "not base64"), (b"abc$", "not base64"),
    (b"A", "not base64"), (b"A" * 2000, "at most 1024"),
])
def test_text_that_is_not_a_base64_signature_is_refused(text: bytes, match: str) -> None:
    with pytest.raises(AuthnError, match=match):
        signature_from_base64(text)


def test_messages_are_domain_separated_and_canonical() -> None:
    approve = approval_message(nonce="n", subject="u-1", thumbprint="t")
    login = login_message(nonce="n", subject="u-1", client_id="")
    assert approve.startswith(b"kyso/device-signature/v1\x00")
    assert approve == (b'kyso/device-signature/v1\x00{"nonce":"n","purpose":"approve-device",'
                       b'"subject":"u-1","thumbprint":"t"}')
    assert login != approve
    assert approval_message(nonce='n","x":"', subject="u-1", thumbprint="t") != approve


def test_a_challenge_reference_survives_the_event_scrubber_whole() -> None:
    # sha256("nonce568") is d6db633277545437…: its first 16 hex characters hold 12 digits, which
    # the scrubber would mask as an ID number; the 32-character reference is left whole.
    ref = challenge_ref("nonce568")
    assert ref.startswith("challenge:d6db633277545437")
    assert scrub({"object": ref}) == {"object": ref}
    assert challenge_ref("nonce568") == ref != challenge_ref("nonce569")


def test_approval_ttl_is_bounded(kyso: Kyso) -> None:
    with pytest.raises(AuthnError, match="at most"):
        Devices(kyso, approval_ttl=dt.timedelta(hours=1))
    with pytest.raises(AuthnError, match="at most"):
        Devices(kyso, approval_ttl=dt.timedelta(0))
