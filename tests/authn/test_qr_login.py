"""QR cross-device login: a one-time nonce (≤ 120 s) signed by the level-2 account's bound
device, completed exactly once; every refusal is clear and audited."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import audit_events, audit_text
from kyso.authn.devices import Device, Devices, approval_message, login_message
from kyso.authn.qr_login import MAX_TTL, QrChallenge, QrLogin, QrState, parse_payload
from kyso.authn.registry import Identity, Level, LockGround, Person, Registry
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AccountLockedError, AuthenticationFailedError, AuthnError

AN_ID = "019090012345"
BINH_ID = "001085001234"
ISSUER = "https://id.thainguyen.gov.vn"


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


@dataclass
class App:
    """The citizen's phone: an account, its key and its bound device."""

    identity: Identity
    key: ec.EllipticCurvePrivateKey
    device: Device

    def sign_login(self, challenge: QrChallenge, *, nonce: str | None = None) -> bytes:
        return sign(self.key, login_message(nonce=nonce or challenge.nonce,
                                            subject=self.identity.subject,
                                            client_id=challenge.client_id))


def make_app(kyso: Kyso, id_number: str = AN_ID, level: Level = Level.TWO) -> App:
    person = {
        AN_ID: Person.of(id_number=AN_ID, full_name="Nguyễn Văn An", birth_date="1990-05-17",
                         sex="male", phone="0912345678"),
        BINH_ID: Person.of(id_number=BINH_ID, full_name="Trần Văn Bình",
                           birth_date="1985-01-01", sex="male", phone="0987654321"),
    }[id_number]
    identity = Registry(kyso.store, kyso.clock).create(person, password_hash=None, level=level)
    key = ec.generate_private_key(ec.SECP256R1())
    device = Devices(kyso).bind_first(identity.subject, spki(key), "phone")
    return App(identity, key, device)


@pytest.fixture
def qr(kyso: Kyso) -> QrLogin:
    return QrLogin(kyso, issuer=ISSUER)


@pytest.fixture
def an(kyso: Kyso) -> App:
    return make_app(kyso)


def last_event(kyso: Kyso, action: str) -> dict[str, Any]:
    return [e for e in audit_events(kyso) if e["action"] == action][-1]


def refused(kyso: Kyso, reason: str, step: str = "approve") -> dict[str, Any]:
    event = last_event(kyso, "QR_LOGIN_ERROR")
    assert event["outcome"] == "failure"
    assert event["details"]["reason"] == reason
    assert event["details"]["step"] == step
    assert AN_ID not in audit_text(kyso)
    return event


# --- the happy path ---------------------------------------------------------------------------

def test_qr_login_start_approve_poll_complete(kyso: Kyso, qr: QrLogin, an: App) -> None:
    challenge = qr.start(client_id="dvc-portal")
    assert challenge.expires_at == kyso.now() + dt.timedelta(seconds=120)
    assert len(challenge.nonce) >= 22  # ≥ 128 bits, base64url
    assert challenge.payload == f"vneid-qr:1:{ISSUER}:{challenge.nonce}"
    assert parse_payload(challenge.payload) == (ISSUER, challenge.nonce)
    assert qr.poll(challenge.nonce).state is QrState.PENDING
    assert qr.poll(challenge.nonce).subject is None

    status = qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    assert status.state is QrState.APPROVED
    polled = qr.poll(challenge.nonce)
    assert (polled.state, polled.subject) == (QrState.APPROVED, an.identity.subject)

    assert qr.complete(challenge.nonce) == an.identity.subject
    assert qr.poll(challenge.nonce).state is QrState.CONSUMED
    assert qr.poll(challenge.nonce).subject is None
    psn = kyso.pseudonyms.pseudonym(AN_ID)
    assert last_event(kyso, "QR_LOGIN_APPROVED")["actor"] == psn
    completed = last_event(kyso, "QR_LOGIN_COMPLETED")
    assert completed["actor"] == psn
    assert completed["details"]["subject"] == an.identity.subject
    assert last_event(kyso, "QR_LOGIN_STARTED")["details"]["client_id"] == "dvc-portal"
    assert challenge.nonce not in audit_text(kyso)  # events name a hash of it
    assert AN_ID not in audit_text(kyso)


def test_each_start_gives_a_fresh_nonce(qr: QrLogin) -> None:
    assert len({qr.start().nonce for _ in range(20)}) == 20


def test_a_shorter_ttl_is_allowed_but_never_more_than_120_seconds(kyso: Kyso, qr: QrLogin) -> None:
    assert qr.start(ttl=dt.timedelta(seconds=30)).expires_at == kyso.now() + dt.timedelta(
        seconds=30)
    for ttl in (MAX_TTL + dt.timedelta(seconds=1), dt.timedelta(0), 60):
        with pytest.raises(AuthnError, match="120 seconds"):
            qr.start(ttl=ttl)  # type: ignore[arg-type]


# --- refusals ---------------------------------------------------------------------------------

def test_an_expired_code_cannot_be_approved(kyso: Kyso, clock: FrozenClock, qr: QrLogin,
                                            an: App) -> None:
    challenge = qr.start()
    clock.advance(dt.timedelta(seconds=120))
    assert qr.poll(challenge.nonce).state is QrState.EXPIRED
    with pytest.raises(AuthenticationFailedError, match="expired"):
        qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    refused(kyso, "expired")


def test_an_approved_code_expires_if_not_completed_in_time(kyso: Kyso, clock: FrozenClock,
                                                           qr: QrLogin, an: App) -> None:
    challenge = qr.start()
    qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    clock.advance(dt.timedelta(seconds=121))
    assert qr.poll(challenge.nonce).state is QrState.EXPIRED
    assert qr.poll(challenge.nonce).subject is None
    with pytest.raises(AuthenticationFailedError, match="expired"):
        qr.complete(challenge.nonce)
    refused(kyso, "expired", "complete")


def test_a_completed_code_cannot_be_completed_or_approved_again(kyso: Kyso, qr: QrLogin,
                                                                an: App) -> None:
    challenge = qr.start()
    sig = an.sign_login(challenge)
    qr.approve(challenge.nonce, an.device.id, sig)
    qr.complete(challenge.nonce)
    with pytest.raises(AuthenticationFailedError, match="already used"):
        qr.complete(challenge.nonce)
    refused(kyso, "replayed", "complete")
    with pytest.raises(AuthenticationFailedError, match="already used"):
        qr.approve(challenge.nonce, an.device.id, sig)
    refused(kyso, "replayed")


def test_an_approval_cannot_be_replayed_or_overwritten(kyso: Kyso, qr: QrLogin, an: App) -> None:
    challenge = qr.start()
    qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    binh = make_app(kyso, BINH_ID)
    with pytest.raises(AuthenticationFailedError, match="already approved"):
        qr.approve(challenge.nonce, binh.device.id, binh.sign_login(challenge))
    assert qr.poll(challenge.nonce).subject == an.identity.subject


def test_a_code_that_is_not_approved_cannot_be_completed(kyso: Kyso, qr: QrLogin) -> None:
    challenge = qr.start()
    with pytest.raises(AuthenticationFailedError, match="not approved"):
        qr.complete(challenge.nonce)
    refused(kyso, "not-approved", "complete")
    assert qr.poll(challenge.nonce).state is QrState.PENDING


def test_unknown_codes_are_refused_everywhere(kyso: Kyso, qr: QrLogin, an: App) -> None:
    nonce = "A" * 43
    with pytest.raises(AuthenticationFailedError, match="unknown QR login code"):
        qr.approve(nonce, an.device.id, b"\x00" * 64)
    refused(kyso, "unknown-nonce")
    with pytest.raises(AuthenticationFailedError, match="unknown QR login code"):
        qr.complete(nonce)
    refused(kyso, "unknown-nonce", "complete")
    with pytest.raises(AuthenticationFailedError, match="unknown QR login code"):
        qr.poll(nonce)


def test_a_device_approval_nonce_is_not_a_qr_login_code(kyso: Kyso, qr: QrLogin, an: App) -> None:
    req = Devices(kyso).request_new(an.identity.subject, spki(ec.generate_private_key(
        ec.SECP256R1())), "new phone")
    sig = sign(an.key, login_message(nonce=req.nonce, subject=an.identity.subject, client_id=""))
    with pytest.raises(AuthenticationFailedError, match="unknown QR login code"):
        qr.approve(req.nonce, an.device.id, sig)
    with pytest.raises(AuthenticationFailedError, match="unknown QR login code"):
        qr.complete(req.nonce)


def test_a_retired_device_cannot_approve(kyso: Kyso, qr: QrLogin, an: App) -> None:
    Devices(kyso).retire(an.device.id)
    challenge = qr.start()
    with pytest.raises(AuthenticationFailedError, match="not an active bound device"):
        qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    refused(kyso, "device-not-active")
    assert qr.poll(challenge.nonce).state is QrState.PENDING


def test_a_pending_device_cannot_approve(kyso: Kyso, qr: QrLogin, an: App) -> None:
    new_key = ec.generate_private_key(ec.SECP256R1())
    req = Devices(kyso).request_new(an.identity.subject, spki(new_key), "new phone")
    challenge = qr.start()
    sig = sign(new_key, login_message(nonce=challenge.nonce, subject=an.identity.subject,
                                      client_id=""))
    with pytest.raises(AuthenticationFailedError, match="not an active bound device"):
        qr.approve(challenge.nonce, req.device_id, sig)


def test_a_device_retired_after_approval_cannot_complete(kyso: Kyso, qr: QrLogin, an: App) -> None:
    challenge = qr.start()
    qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    Devices(kyso).retire(an.device.id)
    with pytest.raises(AuthenticationFailedError, match="no longer bound"):
        qr.complete(challenge.nonce)
    refused(kyso, "device-not-active", "complete")


def test_another_accounts_device_signature_is_refused(kyso: Kyso, qr: QrLogin, an: App) -> None:
    binh = make_app(kyso, BINH_ID)
    challenge = qr.start()
    # Bình's key signing An's login, presented under An's device id or under Bình's own with
    # An's subject: neither verifies.
    forged = sign(binh.key, login_message(nonce=challenge.nonce, subject=an.identity.subject,
                                          client_id=""))
    with pytest.raises(AuthenticationFailedError, match="does not verify"):
        qr.approve(challenge.nonce, an.device.id, forged)
    with pytest.raises(AuthenticationFailedError, match="does not verify"):
        qr.approve(challenge.nonce, binh.device.id, forged)
    refused(kyso, "bad-signature")
    assert qr.poll(challenge.nonce).state is QrState.PENDING


def test_a_signature_over_another_nonce_client_or_purpose_is_refused(kyso: Kyso, qr: QrLogin,
                                                                     an: App) -> None:
    challenge = qr.start(client_id="dvc-portal")
    other = qr.start(client_id="dvc-portal")
    for sig in (
        an.sign_login(challenge, nonce=other.nonce),
        sign(an.key, login_message(nonce=challenge.nonce, subject=an.identity.subject,
                                   client_id="evil-portal")),
        sign(an.key, approval_message(nonce=challenge.nonce, subject=an.identity.subject,
                                      thumbprint=an.device.thumbprint)),
        sign(an.key, challenge.nonce.encode()),
        sign(an.key, challenge.payload.encode()),
    ):
        with pytest.raises(AuthenticationFailedError, match="does not verify"):
            qr.approve(challenge.nonce, an.device.id, sig)
        refused(kyso, "bad-signature")
    assert qr.poll(challenge.nonce).state is QrState.PENDING


def test_a_locked_account_cannot_approve_or_complete(kyso: Kyso, qr: QrLogin, an: App) -> None:
    registry = Registry(kyso.store, kyso.clock)
    challenge = qr.start()
    qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    registry.lock(an.identity.subject, LockGround.HOLDER_REQUEST, by="admin:test")
    with pytest.raises(AccountLockedError, match="locked"):
        qr.complete(challenge.nonce)
    refused(kyso, "account-locked", "complete")
    second = qr.start()
    with pytest.raises(AccountLockedError, match="locked"):
        qr.approve(second.nonce, an.device.id, an.sign_login(second))
    refused(kyso, "account-locked")


def test_a_level_1_account_cannot_approve(kyso: Kyso, qr: QrLogin) -> None:
    app = make_app(kyso, BINH_ID, level=Level.ONE)
    challenge = qr.start()
    with pytest.raises(AuthenticationFailedError, match="level-2"):
        qr.approve(challenge.nonce, app.device.id, app.sign_login(challenge))
    refused(kyso, "level-1")


def test_concurrent_completes_hand_out_the_subject_exactly_once(kyso: Kyso, qr: QrLogin,
                                                                an: App) -> None:
    challenge = qr.start()
    qr.approve(challenge.nonce, an.device.id, an.sign_login(challenge))
    barrier = threading.Barrier(6)
    results: list[object] = []

    def complete() -> None:
        barrier.wait()
        try:
            results.append(qr.complete(challenge.nonce))
        except AuthenticationFailedError as exc:
            results.append(exc)

    threads = [threading.Thread(target=complete) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(an.identity.subject) == 1
    assert sum(isinstance(r, AuthenticationFailedError) for r in results) == 5
    assert sum(e["action"] == "QR_LOGIN_COMPLETED" for e in audit_events(kyso)) == 1


# --- hostile input ----------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [b"", b"\x00" * 64, b"garbage", b"\x30" * 10_000])
def test_garbage_signatures_are_refused(kyso: Kyso, qr: QrLogin, an: App, sig: bytes) -> None:
    challenge = qr.start()
    with pytest.raises(AuthenticationFailedError, match="not an ECDSA P-256 signature"):
        qr.approve(challenge.nonce, an.device.id, sig)
    refused(kyso, "bad-signature")


@pytest.mark.parametrize("sig", ["a string", None, 42, ["list"]])
def test_signatures_of_the_wrong_type_are_refused(qr: QrLogin, an: App, sig: Any) -> None:
    challenge = qr.start()
    with pytest.raises(AuthenticationFailedError, match="must be bytes"):
        qr.approve(challenge.nonce, an.device.id, sig)


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "ñ", "a:b", None, 42, b"bytes"])
def test_malformed_nonces_and_device_ids_are_refused(qr: QrLogin, an: App, value: Any) -> None:
    for call in (lambda: qr.poll(value), lambda: qr.complete(value),
                 lambda: qr.approve(value, an.device.id, b"\x00" * 64)):
        with pytest.raises(AuthnError, match="nonce"):
            call()
    with pytest.raises(AuthnError, match="device id"):
        qr.approve("A" * 43, value, b"\x00" * 64)


@pytest.mark.parametrize("client_id", ["x" * 65, "with space", "ñ", "tab\t", None, 7])
def test_malformed_client_ids_are_refused(qr: QrLogin, client_id: Any) -> None:
    with pytest.raises(AuthnError, match="client id"):
        qr.start(client_id=client_id)


@pytest.mark.parametrize("payload", [
    "", "vneid-qr:1:", "vneid-qr:2:kyso:" + "A" * 43, "vneid-qr:1:kyso:bad nonce",
    "vneid-qr:1::" + "A" * 43, "vneid-qr:1:kyso:" + "A" * 400, None, b"vneid-qr:1:kyso:AAAA",
])
def test_parse_payload_refuses_anything_but_a_qr_login_code(payload: Any) -> None:
    with pytest.raises(AuthnError):
        parse_payload(payload)


@pytest.mark.parametrize("issuer", ["", "with space", "x" * 201, None])
def test_the_issuer_must_be_printable_ascii(kyso: Kyso, issuer: Any) -> None:
    with pytest.raises(AuthnError, match="issuer"):
        QrLogin(kyso, issuer=issuer)
