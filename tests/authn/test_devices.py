"""Device binding: one active EC P-256 device per account; a new device needs the old device's
signature or a chip check; hostile keys and signatures are refused; every decision is audited
without the raw ID number."""

from __future__ import annotations

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

from conftest import T0, audit_events, audit_text
from kyso.authn.chip import ChipPersonalData
from kyso.authn.devices import (
    Device,
    DeviceApprovalRequest,
    Devices,
    DeviceStatus,
    approval_message,
    load_device_key,
    login_message,
    verify_device_signature,
)
from kyso.authn.keys import jwk_thumbprint
from kyso.authn.passive_auth import Indication, PassiveAuthResult
from kyso.authn.registry import Identity, Level, LockGround, Person, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError, IdentityError
from kyso.store.schema import devices as devices_table

AN_ID = "019090012345"
BINH_ID = "001085001234"
DS_SERIAL = "5a1f03"


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


@dataclass(frozen=True)
class Chip:
    id_number: str
    ds_serial: str = DS_SERIAL


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
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
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
        lambda: devs.approve_with_chip(req.subject, req.device_id, Chip(AN_ID)),
        lambda: devs.approve_with_chip(req.subject, req.device_id, Chip(AN_ID)),
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


# --- approval by the chip card ----------------------------------------------------------------

def test_chip_check_activates_the_pending_device_and_retires_the_old_one(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    device = devs.approve_with_chip(req.subject, req.device_id, Chip(AN_ID))
    assert device.active
    assert device.approved_by == f"chip:{DS_SERIAL}"
    assert devs.get(bound.device.id).status is DeviceStatus.RETIRED
    with pytest.raises(AuthenticationFailedError, match="already used"):  # the nonce is spent
        devs.approve_with_device(req.nonce, approve_sig(bound.key, req), bound.device.id)
    assert last_event(kyso, "DEVICE_APPROVED")["details"]["approved_by"] == f"chip:{DS_SERIAL}"


def test_chip_check_binds_a_device_when_the_old_phone_is_gone(kyso: Kyso, bound: Bound,
                                                             devs: Devices) -> None:
    devs.retire(bound.device.id)
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    device = devs.approve_with_chip(req.subject, req.device_id, Chip(AN_ID))
    assert devs.active(bound.identity.subject) == device
    assert last_event(kyso, "DEVICE_APPROVED")["details"]["retired_device"] is None


def test_a_chip_of_another_person_is_refused_without_logging_either_number(
        kyso: Kyso, bound: Bound, devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthenticationFailedError, match="does not belong") as exc:
        devs.approve_with_chip(req.subject, req.device_id, Chip(BINH_ID))
    assert BINH_ID not in str(exc.value)
    assert AN_ID not in str(exc.value)
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "chip-mismatch"
    text = audit_text(kyso)
    assert BINH_ID not in text
    assert AN_ID not in text


def test_chip_check_needs_a_live_approval_request(kyso: Kyso, clock: FrozenClock, bound: Bound,
                                                 devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    clock.advance(dt.timedelta(minutes=5))
    with pytest.raises(AuthenticationFailedError, match="expired"):
        devs.approve_with_chip(req.subject, req.device_id, Chip(AN_ID))
    assert devs.get(req.device_id).status is DeviceStatus.PENDING
    assert devs.active(bound.identity.subject) == bound.device
    assert last_event(kyso, "DEVICE_APPROVAL_ERROR")["details"]["reason"] == "expired"


def test_chip_check_cannot_activate_another_accounts_device(kyso: Kyso, bound: Bound,
                                                            devs: Devices) -> None:
    binh = make_identity(kyso, BINH_ID)
    req = devs.request_new(binh.subject, spki(new_key()), "Bình's phone")
    with pytest.raises(IdentityError, match="no such device"):
        devs.approve_with_chip(bound.identity.subject, req.device_id, Chip(AN_ID))
    assert devs.get(req.device_id).status is DeviceStatus.PENDING


def passive_auth_result(id_number: str, indication: Indication = Indication.TOTAL_PASSED
                        ) -> PassiveAuthResult:
    person = Person.of(id_number=id_number, full_name="Nguyễn Văn An", birth_date="1990-05-17",
                       sex="male")
    data = ChipPersonalData(person=person, document_number="C01234567",
                            issue_date=dt.date(2024, 7, 1), expiry_date=dt.date(2030, 5, 17))
    return PassiveAuthResult(indication=indication, checks=(), checked_at=T0,
                             ds_serial=DS_SERIAL, personal_data=data)


def test_a_passed_passive_authentication_result_is_accepted_as_is(bound: Bound,
                                                                  devs: Devices) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    device = devs.approve_with_chip(req.subject, req.device_id, passive_auth_result(AN_ID))
    assert device.approved_by == f"chip:{DS_SERIAL}"


@pytest.mark.parametrize("indication", [Indication.TOTAL_FAILED, Indication.INDETERMINATE])
def test_a_passive_authentication_that_did_not_pass_is_refused(
        bound: Bound, devs: Devices, indication: Indication) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthnError, match="did not pass"):
        devs.approve_with_chip(req.subject, req.device_id, passive_auth_result(AN_ID, indication))
    assert devs.get(req.device_id).status is DeviceStatus.PENDING


@pytest.mark.parametrize("chip", [
    object(),
    Chip(12345, DS_SERIAL),  # type: ignore[arg-type]
    Chip(AN_ID, None),  # type: ignore[arg-type]
    Chip(AN_ID, ""),
    Chip(AN_ID, "bad serial\n"),
    Chip(AN_ID, "x" * 500),
])
def test_a_malformed_chip_result_is_refused(bound: Bound, devs: Devices, chip: Any) -> None:
    req = devs.request_new(bound.identity.subject, spki(new_key()), "new phone")
    with pytest.raises(AuthnError, match=r"chip|Document Signer"):
        devs.approve_with_chip(req.subject, req.device_id, chip)
    assert devs.get(req.device_id).status is DeviceStatus.PENDING


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
    with pytest.raises(AuthnError, match="device id"):
        devs.approve_with_device("A" * 43, b"\x00" * 64, value)
    with pytest.raises(AuthnError, match="device id"):
        devs.retire(value)


def test_messages_are_domain_separated_and_canonical() -> None:
    approve = approval_message(nonce="n", subject="u-1", thumbprint="t")
    login = login_message(nonce="n", subject="u-1", client_id="")
    assert approve.startswith(b"kyso/device-signature/v1\x00")
    assert approve == (b'kyso/device-signature/v1\x00{"nonce":"n","purpose":"approve-device",'
                       b'"subject":"u-1","thumbprint":"t"}')
    assert login != approve
    assert approval_message(nonce='n","x":"', subject="u-1", thumbprint="t") != approve


def test_approval_ttl_is_bounded(kyso: Kyso) -> None:
    with pytest.raises(AuthnError, match="at most"):
        Devices(kyso, approval_ttl=dt.timedelta(hours=1))
    with pytest.raises(AuthnError, match="at most"):
        Devices(kyso, approval_ttl=dt.timedelta(0))
