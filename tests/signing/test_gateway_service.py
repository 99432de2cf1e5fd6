"""The signing gateway as a library: enrolment (a citizen certificate from the citizen CA for a
key only the gateway holds), signature activation data bound to exact hashes and used once,
signHash, lock → hold → unlock, and the audit trail of every decision."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from gateway_support import AN, BINH, level2, requester

from conftest import FAST_KDF, PASSPHRASE, audit_events, audit_text
from kyso.authn.enrolment import lock_identity, unlock_identity
from kyso.authn.registry import Identity, LockGround
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import (
    ActivationError,
    ConfigError,
    CredentialExistsError,
    CredentialSuspendedError,
    GatewayRequestError,
    PassphraseError,
    StepUpRequiredError,
    UnknownCredentialError,
)
from kyso.pki import lifecycle
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import get_record
from kyso.pki.records import RevocationReason, Status
from kyso.signing.gateway import (
    Enrolment,
    Gateway,
    HashAlgorithm,
    MasterSecret,
    authorize,
    consume,
    enrol,
    get_credential,
    list_credentials,
    master_secret_path,
    sign_hash,
)
from kyso.store import schema

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
ECDSA_SHA384 = "1.2.840.10045.4.3.3"
RSA_SHA256 = "1.2.840.113549.1.1.11"

pytest_plugins = ("gateway_fixtures",)


def digest(text: str, algorithm: str = "sha256") -> bytes:
    return hashlib.new(algorithm, text.encode()).digest()


def approve(kyso: Kyso, identity: Identity, credential_id: str, hashes: list[bytes],
            algorithm: HashAlgorithm = HashAlgorithm.SHA256) -> str:
    """A fresh step-up authorizing ``hashes``; the SAD."""
    return authorize(kyso, requester(kyso, identity), credential_id, hashes, algorithm,
                     len(hashes)).sad


def sign(kyso: Kyso, master: MasterSecret, identity: Identity, credential_id: str, sad: str,
         hashes: list[bytes], sign_algo: str = ECDSA_SHA256, **options: Any) -> list[bytes]:
    return list(sign_hash(kyso, master, requester(kyso, identity, login_age=600), credential_id,
                          sad, hashes, sign_algo, **options).signatures)


def events(kyso: Kyso, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(kyso) if e["action"] == action]


# --- enrolment ----------------------------------------------------------------------------------

def test_enrolment_issues_a_citizen_certificate_from_the_citizen_ca_for_the_registry_subject(
        kyso: Kyso, ca: CertificateAuthority, enrolled: Enrolment, binh: Identity) -> None:
    credential = enrolled.credential
    cert = credential.certificate
    record, pseudonym = get_record(kyso, credential.serial)

    assert (record.profile, record.issuer, record.status) == ("citizen", "citizen", Status.VALID)
    assert pseudonym == kyso.pseudonyms.pseudonym(binh.id_number)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Trần Thị Bình"
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "CCCD:033301000123"
    assert cert.issuer == ca.certificate("citizen").subject
    cert.verify_directly_issued_by(ca.certificate("citizen"))
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"  # the citizen profile's default key
    assert [c.subject for c in enrolled.chain] == [ca.certificate("citizen").subject,
                                                  ca.certificate("root").subject]
    assert credential.chain == (ca.certificate("citizen"),)  # CSC chains leave the root out
    assert credential.credential_id.startswith("csc-")
    assert credential.serial not in credential.credential_id
    assert enrolled.to_dict()["credentialID"] == credential.credential_id
    assert x509.load_pem_x509_certificate(enrolled.to_dict()["certificate"].encode()) == cert


@pytest.mark.parametrize(("level", "login_age"), [(1, 0), (2, 200)])
def test_enrolment_needs_a_fresh_level2_login_and_issues_nothing_otherwise(
        kyso: Kyso, ca: CertificateAuthority, master: MasterSecret, binh: Identity, level: int,
        login_age: int) -> None:
    with pytest.raises(StepUpRequiredError):
        enrol(kyso, ca, master, requester(kyso, binh, level=level, login_age=login_age))

    with kyso.store.read() as conn:
        issued = conn.execute(sa.select(schema.certificates.c.serial).where(
            schema.certificates.c.profile == "citizen")).all()
    assert issued == []
    assert events(kyso, "CSC_CREDENTIAL_ENROL")[-1]["outcome"] == "failure"


def test_a_locked_account_cannot_enrol(kyso: Kyso, ca: CertificateAuthority,
                                       master: MasterSecret, binh: Identity) -> None:
    lock_identity(kyso, binh.id_number, LockGround.HOLDER_REQUEST)

    with pytest.raises(CredentialSuspendedError, match="locked"):
        enrol(kyso, ca, master, requester(kyso, binh))


def test_a_second_enrolment_is_refused_naming_the_enabled_credential(
        kyso: Kyso, ca: CertificateAuthority, master: MasterSecret, binh: Identity,
        enrolled: Enrolment) -> None:
    with pytest.raises(CredentialExistsError) as refused:
        enrol(kyso, ca, master, requester(kyso, binh))

    assert refused.value.credential_id == enrolled.credential.credential_id
    assert enrolled.credential.credential_id in str(refused.value)
    assert [c.credential_id for c in list_credentials(kyso, binh.subject)] == [
        enrolled.credential.credential_id]


def test_a_credential_whose_certificate_was_revoked_is_replaced_by_a_new_enrolment(
        kyso: Kyso, ca: CertificateAuthority, master: MasterSecret, binh: Identity,
        enrolled: Enrolment) -> None:
    old = enrolled.credential
    lifecycle.revoke(kyso, old.serial, reason=RevocationReason.KEY_COMPROMISE)

    new = enrol(kyso, ca, master, requester(kyso, binh)).credential

    assert [c.credential_id for c in list_credentials(kyso, binh.subject)] == [new.credential_id]
    assert get_credential(kyso, binh.subject, old.credential_id).status.value == "disabled"
    assert events(kyso, "CSC_CREDENTIAL_DISABLE")[-1]["object"] == old.credential_id


def test_another_citizens_credential_answers_exactly_like_an_unknown_one(
        kyso: Kyso, enrolled: Enrolment) -> None:
    an = level2(kyso, AN)

    with pytest.raises(UnknownCredentialError) as theirs:
        get_credential(kyso, an.subject, enrolled.credential.credential_id)
    with pytest.raises(UnknownCredentialError) as unknown:
        get_credential(kyso, an.subject, "csc-" + "x" * 32)

    assert str(theirs.value) == str(unknown.value) == "credentialID: unknown credential"


# --- authorize and signHash ---------------------------------------------------------------------

def test_approved_hashes_are_signed_in_request_order_by_the_credentials_key(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    values = [digest("đơn đề nghị"), digest("phụ lục")]
    sad = approve(kyso, binh, cid, values)

    signatures = sign(kyso, master, binh, cid, sad, values)

    public = enrolled.credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for value, signature in zip(values, signatures, strict=True):
        public.verify(signature, value, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_a_sad_is_used_once(kyso: Kyso, master: MasterSecret, binh: Identity,
                            enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)
    sign(kyso, master, binh, cid, sad, value)

    with pytest.raises(ActivationError, match="SAD: already used"):
        sign(kyso, master, binh, cid, sad, value)


def test_a_sad_for_another_hash_is_refused_and_stays_usable_for_its_own(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    sad = approve(kyso, binh, cid, [digest("approved")])

    with pytest.raises(ActivationError, match="not authorized for these hashes"):
        sign(kyso, master, binh, cid, sad, [digest("swapped")])
    assert len(sign(kyso, master, binh, cid, sad, [digest("approved")])) == 1


def test_a_sad_expires_after_300_seconds(kyso: Kyso, clock: FrozenClock, master: MasterSecret,
                                         binh: Identity, enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)
    clock.advance(dt.timedelta(seconds=300))

    with pytest.raises(ActivationError, match="SAD: expired"):
        sign(kyso, master, binh, cid, sad, value)


def test_a_sad_is_still_valid_just_before_it_expires(kyso: Kyso, clock: FrozenClock,
                                                     master: MasterSecret, binh: Identity,
                                                     enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)
    clock.advance(dt.timedelta(seconds=299))

    assert len(sign(kyso, master, binh, cid, sad, value)) == 1


def test_a_hash_count_different_from_the_authorized_one_is_refused(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid, both = enrolled.credential.credential_id, [digest("a"), digest("b")]
    sad = approve(kyso, binh, cid, both)

    with pytest.raises(ActivationError, match=r"authorized for 2 signature\(s\), but 1"):
        sign(kyso, master, binh, cid, sad, both[:1])
    with pytest.raises(GatewayRequestError, match="numSignatures: 3, but 2 hashes"):
        authorize(kyso, requester(kyso, binh), cid, both, HashAlgorithm.SHA256, 3)


def test_the_sad_binds_the_hash_set_not_its_order(kyso: Kyso, master: MasterSecret,
                                                 binh: Identity, enrolled: Enrolment) -> None:
    cid, both = enrolled.credential.credential_id, [digest("a"), digest("b")]
    sad = approve(kyso, binh, cid, both)

    signatures = sign(kyso, master, binh, cid, sad, both[::-1])

    public = enrolled.credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signatures[0], both[1], ec.ECDSA(Prehashed(hashes.SHA256())))


def test_a_login_authorizes_once(kyso: Kyso, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    once = requester(kyso, binh)
    authorize(kyso, once, cid, [digest("a")], HashAlgorithm.SHA256, 1)

    with pytest.raises(StepUpRequiredError, match="already authorized"):
        authorize(kyso, once, cid, [digest("b")], HashAlgorithm.SHA256, 1)


def test_authorize_needs_a_fresh_login_but_sign_hash_does_not(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]

    with pytest.raises(StepUpRequiredError, match="older than 120 s"):
        authorize(kyso, requester(kyso, binh, login_age=151), cid, value,
                  HashAlgorithm.SHA256, 1)
    with pytest.raises(StepUpRequiredError, match="level-2"):
        authorize(kyso, requester(kyso, binh, level=1), cid, value, HashAlgorithm.SHA256, 1)
    sad = approve(kyso, binh, cid, value)
    assert len(sign(kyso, master, binh, cid, sad, value)) == 1  # a 600 s old login


def test_the_signature_algorithm_must_fit_the_key_and_the_hash(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)

    with pytest.raises(GatewayRequestError, match="does not suit"):
        sign(kyso, master, binh, cid, sad, value, RSA_SHA256)
    with pytest.raises(GatewayRequestError, match="unsupported signature algorithm"):
        sign(kyso, master, binh, cid, sad, value, "1.2.3.4")
    with pytest.raises(GatewayRequestError, match="does not match signAlgo"):
        sign(kyso, master, binh, cid, sad, value, ECDSA_SHA256,
             hash_oid=HashAlgorithm.SHA384.oid)
    with pytest.raises(GatewayRequestError, match=r"hashes\[0\]: 32 bytes, but a sha384"):
        sign(kyso, master, binh, cid, sad, value, ECDSA_SHA384)
    assert len(sign(kyso, master, binh, cid, sad, value)) == 1  # refusals did not use the SAD


def test_another_citizen_cannot_use_a_sad_or_a_credential(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    an = level2(kyso, AN)
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)

    with pytest.raises(UnknownCredentialError):
        sign(kyso, master, an, cid, sad, value)
    with pytest.raises(UnknownCredentialError):
        authorize(kyso, requester(kyso, an), cid, value, HashAlgorithm.SHA256, 1)
    with pytest.raises(ActivationError, match="SAD: unknown activation data"):
        consume(kyso, requester(kyso, an), cid, sad, value, HashAlgorithm.SHA256)


def test_sha384_and_sha512_hashes_are_signed_with_their_own_digest(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    public = enrolled.credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for algorithm, oid, primitive in ((HashAlgorithm.SHA384, ECDSA_SHA384, hashes.SHA384()),
                                      (HashAlgorithm.SHA512, "1.2.840.10045.2.1",
                                       hashes.SHA512())):
        value = [digest("a", algorithm.label)]
        sad = approve(kyso, binh, cid, value, algorithm)
        [signature] = sign(kyso, master, binh, cid, sad, value, oid, hash_oid=algorithm.oid)
        public.verify(signature, value[0], ec.ECDSA(Prehashed(primitive)))


@pytest.fixture
def rsa_kyso(home: Path, clock: FrozenClock, ca: CertificateAuthority,
             database_url: str | None) -> Iterator[Kyso]:
    """The same home with a site profile whose default citizen key is RSA-2048."""
    shipped = resources.files("kyso.policies") / "profiles" / "citizen.toml"
    (home / "profiles").mkdir(exist_ok=True)
    text = shipped.read_text(encoding="utf-8").replace('default = "ec-p256"',
                                                        'default = "rsa-2048"')
    assert 'default = "rsa-2048"' in text
    (home / "profiles" / "citizen.toml").write_text(text, encoding="utf-8")
    context = open_kyso(load_settings(home=home, database_url=database_url, environ=FAST_KDF),
                        clock=clock, actor="admin:test")
    yield context
    context.close()


def test_an_rsa_credential_signs_pkcs1_v15_and_refuses_ecdsa(
        rsa_kyso: Kyso, master: MasterSecret) -> None:
    kyso = rsa_kyso
    binh = level2(kyso, BINH)
    credential = enrol(kyso, CertificateAuthority(kyso, PASSPHRASE), master,
                       requester(kyso, binh)).credential
    value = [digest("a")]
    sad = approve(kyso, binh, credential.credential_id, value)

    with pytest.raises(GatewayRequestError, match="does not suit"):
        sign(kyso, master, binh, credential.credential_id, sad, value, ECDSA_SHA256)
    [signature] = sign(kyso, master, binh, credential.credential_id, sad, value, RSA_SHA256)

    public = credential.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    public.verify(signature, value[0], padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert credential.csc_info()["key"]["algo"] == [
        "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",
        "1.2.840.113549.1.1.1"]


# --- lock → hold → unlock -------------------------------------------------------------------

def test_locking_the_account_holds_the_certificate_and_unlocking_releases_it(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid, serial, value = enrolled.credential.credential_id, enrolled.credential.serial, [
        digest("a")]
    sad = approve(kyso, binh, cid, value)  # approved before the lock

    lock_identity(kyso, binh.id_number, LockGround.HOLDER_REQUEST)
    held, _ = get_record(kyso, serial)
    info = get_credential(kyso, binh.subject, cid).csc_info()
    with pytest.raises(CredentialSuspendedError, match="locked"):
        sign(kyso, master, binh, cid, sad, value)
    unlock_identity(kyso, binh.id_number)
    released, _ = get_record(kyso, serial)

    assert (held.status, held.revocation_reason) == (Status.ON_HOLD,
                                                     RevocationReason.CERTIFICATE_HOLD)
    assert (info["key"]["status"], info["cert"]["status"]) == ("disabled", "suspended")
    assert released.status is Status.VALID
    assert get_credential(kyso, binh.subject, cid).key_enabled
    assert len(sign(kyso, master, binh, cid, sad, value)) == 1  # the SAD was not used
    suspend, resume = events(kyso, "CSC_CREDENTIAL_SUSPEND"), events(kyso, "CSC_CREDENTIAL_RESUME")
    assert [(e["object"], e["details"]["hold_placed"]) for e in suspend] == [(cid, True)]
    assert [(e["object"], e["details"]["hold_released"]) for e in resume] == [(cid, True)]


def test_unlocking_releases_only_the_holds_the_lock_placed(
        kyso: Kyso, binh: Identity, enrolled: Enrolment) -> None:
    serial = enrolled.credential.serial
    lifecycle.hold(kyso, serial)  # an administrator's hold, for another reason

    lock_identity(kyso, binh.id_number, LockGround.SECURITY)
    unlock_identity(kyso, binh.id_number)

    record, _ = get_record(kyso, serial)
    assert record.status is Status.ON_HOLD
    assert events(kyso, "CSC_CREDENTIAL_SUSPEND")[-1]["details"]["hold_placed"] is False
    with pytest.raises(CredentialSuspendedError, match="on hold"):
        authorize(kyso, requester(kyso, binh), enrolled.credential.credential_id,
                  [digest("a")], HashAlgorithm.SHA256, 1)


def test_a_deceased_holders_lock_keeps_the_credential_suspended(
        kyso: Kyso, binh: Identity, enrolled: Enrolment) -> None:
    lock_identity(kyso, binh.id_number, LockGround.DECEASED)

    with pytest.raises(Exception, match="cannot be unlocked"):
        unlock_identity(kyso, binh.id_number)

    record, _ = get_record(kyso, enrolled.credential.serial)
    assert record.status is Status.ON_HOLD
    assert events(kyso, "CSC_CREDENTIAL_RESUME") == []


# --- the audit trail ------------------------------------------------------------------------

def test_every_enrolment_authorization_and_signature_is_one_event_linking_person_credential_hash(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    approver = requester(kyso, binh)
    sad = authorize(kyso, approver, cid, value, HashAlgorithm.SHA256, 1).sad
    sign(kyso, master, binh, cid, sad, value)
    with pytest.raises(ActivationError):
        sign(kyso, master, binh, cid, sad, value)

    psn = kyso.pseudonyms.pseudonym(binh.id_number)
    enrolments = events(kyso, "CSC_CREDENTIAL_ENROL")
    authorizations = events(kyso, "CSC_AUTHORIZE")
    signatures = events(kyso, "CSC_SIGN_HASH")
    assert [(e["outcome"], e["actor"], e["object"]) for e in enrolments] == [
        ("success", psn, cid)]
    assert enrolments[0]["details"]["serial"] == enrolled.credential.serial
    assert enrolments[0]["layer"] == "signing"
    assert [(e["outcome"], e["actor"], e["object"], e["details"]["hashes"])
            for e in authorizations] == [("success", psn, cid, [value[0].hex()])]
    assert authorizations[0]["details"]["jti"] == approver.jti
    assert authorizations[0]["details"]["client_id"] == "dichvucong"
    assert [(e["outcome"], e["actor"], e["object"], e["details"]["hashes"])
            for e in signatures] == [("success", psn, cid, [value[0].hex()]),
                                     ("failure", psn, cid, [value[0].hex()])]
    assert signatures[0]["details"]["serial"] == enrolled.credential.serial
    assert "already used" in signatures[1]["details"]["reason"]


def test_no_secret_reaches_the_audit_log(kyso: Kyso, master: MasterSecret, binh: Identity,
                                         enrolled: Enrolment) -> None:
    cid, value = enrolled.credential.credential_id, [digest("a")]
    sad = approve(kyso, binh, cid, value)
    sign(kyso, master, binh, cid, sad, value)
    with kyso.store.read() as conn:
        blob = conn.execute(sa.select(schema.signing_credentials.c.key_wrapped)).scalar_one()

    text = audit_text(kyso)
    assert sad not in text
    assert hashlib.sha256(sad.encode()).hexdigest() not in text
    assert binh.id_number not in text
    assert base64.b64encode(blob).decode() not in text
    assert blob.hex() not in text
    for line in text.splitlines():
        json.loads(line)  # every entry is whole


def test_the_stored_credential_row_holds_the_key_only_wrapped(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    from kyso.signing.gateway.keywrap import unwrap_key

    with kyso.store.read() as conn:
        blob = conn.execute(sa.select(schema.signing_credentials.c.key_wrapped)).scalar_one()
    key = unwrap_key(master, blob, credential_id=enrolled.credential.credential_id,
                     subject=binh.subject)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())

    assert scalar not in bytes(blob)
    assert pkcs8 not in bytes(blob)
    assert key.public_key() == enrolled.credential.certificate.public_key()


def test_a_wrong_ca_passphrase_enrols_nothing_and_creates_no_master_secret(
        kyso: Kyso, ca: CertificateAuthority, binh: Identity) -> None:
    gateway = Gateway(kyso, PASSPHRASE + "-wrong")

    with pytest.raises(PassphraseError):
        gateway.enrol(requester(kyso, binh))
    with pytest.raises(ConfigError, match="without the CA passphrase"):
        Gateway(kyso, None).enrol(requester(kyso, binh))

    assert not master_secret_path(kyso.settings.home).exists()
    assert list_credentials(kyso, binh.subject) == []
    assert [e["outcome"] for e in events(kyso, "CSC_CREDENTIAL_ENROL")] == ["failure", "failure"]


def test_the_gateway_creates_the_master_secret_on_first_enrolment_and_signs_with_it(
        kyso: Kyso, ca: CertificateAuthority, binh: Identity) -> None:
    gateway = Gateway(kyso, PASSPHRASE)
    credential = gateway.enrol(requester(kyso, binh)).credential
    value = [digest("a")]
    sad = gateway.authorize(requester(kyso, binh), credential.credential_id, value,
                            HashAlgorithm.SHA256, 1).sad

    later = Gateway(kyso, PASSPHRASE)  # another process: loads the master secret from the home
    signed = later.sign_hash(requester(kyso, binh), credential.credential_id, sad, value,
                             ECDSA_SHA256)

    assert master_secret_path(kyso.settings.home).exists()
    public = credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signed.signatures[0], value[0], ec.ECDSA(Prehashed(hashes.SHA256())))
    assert signed.to_dict() == {"signatures": [base64.b64encode(signed.signatures[0]).decode()]}
