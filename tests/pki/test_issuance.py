"""Issuing, renewing and rekeying end-entity certificates."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    ObjectIdentifier,
)

from conftest import BASE_URL, CITIZEN, FAST_KDF, PASSPHRASE, SEAL, STAFF, T0, audit_events, audit_text
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import (
    DuplicateKeyError,
    InvalidIdentifierError,
    KeyPolicyError,
    PkiError,
    ProfileError,
    ValidityError,
)
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.keys import KeyType, spki_sha256
from kyso.pki.records import RevocationReason, Status
from kyso.pki.serials import SERIAL_BITS, new_serial, parse_serial, serial_hex
from kyso.pki.subjects import SubjectRequest
from kyso.store import schema

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def issue(kyso: Kyso, ca: CertificateAuthority, profile: str = "staff",
          values: dict[str, str] | None = None, **options: Any) -> issuance.IssuedCertificate:
    defaults = {"staff": STAFF, "seal": SEAL, "citizen": CITIZEN}[profile]
    return issuance.issue(kyso, ca, profile, SubjectRequest.of(**(values or defaults)),
                          **options)


def events(kyso: Kyso) -> list[dict[str, Any]]:
    return audit_events(kyso)


def ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(cls)


# --- serial numbers ---------------------------------------------------------------------------

def test_new_serial_is_positive_and_exactly_159_bits() -> None:
    for _ in range(200):
        serial = new_serial()
        assert serial > 0
        assert serial.bit_length() == SERIAL_BITS == 159


def test_serial_hex_is_lowercase_without_leading_zeros() -> None:
    assert serial_hex(0xABCDEF) == "abcdef"
    assert serial_hex(0x0F) == "f"


@pytest.mark.parametrize("text", ["0xABCDEF", "ab:cd:ef", "AB CD EF", "00abcdef", " abcdef "])
def test_parse_serial_accepts_common_spellings_and_returns_the_canonical_form(text: str) -> None:
    assert parse_serial(text) == "abcdef"


@pytest.mark.parametrize("text", ["", "0x", "xyz", "1" * 41, "12-34"])
def test_parse_serial_refuses_non_hex(text: str) -> None:
    from kyso.errors import CertificateNotFoundError

    with pytest.raises(CertificateNotFoundError):
        parse_serial(text)


def test_issued_serial_is_positive_159_bits_and_stored_in_canonical_hex(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    issued = issue(kyso, ca)
    cert = issued.record.certificate
    assert cert.serial_number > 0
    assert cert.serial_number.bit_length() == 159
    assert issued.record.serial == format(cert.serial_number, "x")
    assert issued.record.serial == issued.record.serial.lower()
    assert not issued.record.serial.startswith("0")
    with kyso.store.read() as conn:
        stored = conn.execute(sa.select(schema.certificates.c.serial).where(
            schema.certificates.c.profile == "staff")).scalars().all()
        first = conn.execute(sa.select(schema.certified_keys.c.first_serial).where(
            schema.certified_keys.c.spki_sha256 == spki_sha256(cert.public_key())  # type: ignore[arg-type]
        )).scalar_one()
    assert stored == [issued.record.serial]
    assert first == issued.record.serial


def test_serials_of_several_certificates_are_unique(kyso: Kyso, ca: CertificateAuthority) -> None:
    serials = set()
    for i in range(5):
        values = {**CITIZEN, "id": f"03330100{i:04d}"}
        serials.add(issue(kyso, ca, "citizen", values).record.serial)
    assert len(serials) == 5


def test_colliding_serial_is_replaced_before_storing(
    kyso: Kyso, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed, other = (1 << 158) | 0x1234, (1 << 158) | 0x5678
    sequence: Iterator[int] = iter([fixed, fixed, other])
    monkeypatch.setattr(issuance, "new_serial", lambda: next(sequence))
    first = issue(kyso, ca, "citizen")
    second = issue(kyso, ca, "citizen", {**CITIZEN, "id": "033301000456"})
    assert first.record.serial == serial_hex(fixed)
    assert second.record.serial == serial_hex(other)
    assert second.record.certificate.serial_number == other
    second.record.certificate.verify_directly_issued_by(ca.certificate("citizen"))


# --- keys -------------------------------------------------------------------------------------

def test_generated_key_follows_the_profile_default(kyso: Kyso, ca: CertificateAuthority) -> None:
    issued = issue(kyso, ca)
    assert isinstance(issued.private_key, ec.EllipticCurvePrivateKey)
    assert issued.private_key.curve.name == "secp256r1"
    assert issued.record.key_type == "ec-p256"
    assert spki_sha256(issued.private_key.public_key()) == spki_sha256(
        issued.record.certificate.public_key())  # type: ignore[arg-type]
    assert "PRIVATE" not in repr(issued)
    assert "key=<hidden>" in repr(issued)


def test_requested_key_type_is_used(kyso: Kyso, ca: CertificateAuthority) -> None:
    issued = issue(kyso, ca, key_type=KeyType.EC_P384)
    assert issued.record.key_type == "ec-p384"


def test_key_type_the_profile_does_not_allow_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(KeyPolicyError, match="does not allow ed25519"):
        issue(kyso, ca, key_type=KeyType.ED25519)


def test_given_public_key_is_certified_without_a_private_key(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = issue(kyso, ca, public_key=key.public_key())
    assert issued.private_key is None
    assert spki_sha256(issued.record.certificate.public_key()) == spki_sha256(  # type: ignore[arg-type]
        key.public_key())


def test_two_prepared_certificates_for_one_key_store_nothing(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    a = issuance.prepare(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN),
                         public_key=key.public_key())
    b = issuance.prepare(kyso, ca, "citizen",
                         SubjectRequest.of(**{**CITIZEN, "id": "033301000456"}),
                         public_key=key.public_key())
    before = len(events(kyso))
    with pytest.raises(DuplicateKeyError):
        issuance.commit(kyso, ca, [a, b])
    failures = events(kyso)[before:]
    assert [(e["action"], e["outcome"]) for e in failures] == [
        ("CERT_CREATION", "failure"), ("CERT_CREATION", "failure")]
    assert failures[1]["details"]["holder"] == kyso.pseudonyms.pseudonym("033301000456")
    with kyso.store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(schema.certificates).where(
            schema.certificates.c.profile == "citizen")).scalar_one()
    assert count == 0


# --- profile and issuer choice ----------------------------------------------------------------

def test_ca_profile_cannot_be_issued_as_a_certificate(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(PkiError, match="is a CA profile"):
        issuance.issue(kyso, ca, "issuing-staff", SubjectRequest.of(name="Rogue CA"))


def test_issuer_not_listed_by_the_profile_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="issued by staff, not citizen"):
        issue(kyso, ca, issuer="citizen")


def test_unknown_profile_is_refused_and_audited(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(ProfileError):
        issuance.issue(kyso, ca, "nurse", SubjectRequest.of(**CITIZEN))
    last = events(kyso)[-1]
    assert (last["action"], last["outcome"]) == ("CERT_CREATION", "failure")
    assert last["details"]["profile"] == "nurse"


def test_chain_is_issuing_ca_then_root(kyso: Kyso, ca: CertificateAuthority) -> None:
    issued = issue(kyso, ca, "citizen")
    assert issued.chain == (ca.certificate("citizen"), ca.certificate("root"))


# --- validity ---------------------------------------------------------------------------------

def test_default_validity_is_the_profile_default_from_now(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    cert = issue(kyso, ca).record.certificate
    assert cert.not_valid_before_utc == T0
    assert cert.not_valid_after_utc == T0 + dt.timedelta(days=1095)
    citizen = issue(kyso, ca, "citizen").record.certificate
    assert citizen.not_valid_after_utc == T0 + dt.timedelta(days=365)


def test_validity_up_to_the_profile_maximum_is_accepted(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    cert = issue(kyso, ca, days=1826).record.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=1826)


def test_validity_above_the_profile_maximum_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(ValidityError, match="1827 days exceeds the staff profile's maximum"):
        issue(kyso, ca, days=1827)
    with pytest.raises(ValidityError, match="maximum of 1095"):
        issue(kyso, ca, "citizen", days=1096)


@pytest.mark.parametrize("days", [0, -1])
def test_validity_below_one_day_is_refused(
    kyso: Kyso, ca: CertificateAuthority, days: int
) -> None:
    with pytest.raises(ValidityError, match="at least one day"):
        issue(kyso, ca, days=days)


def test_default_validity_is_shortened_to_the_issuers_end(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    ca_end = ca.certificate("staff").not_valid_after_utc
    clock.set(ca_end - dt.timedelta(days=200))
    cert = issue(kyso, ca).record.certificate
    assert cert.not_valid_after_utc == ca_end
    assert cert.not_valid_before_utc == ca_end - dt.timedelta(days=200)


def test_explicit_validity_beyond_the_issuers_end_is_refused(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    ca_end = ca.certificate("staff").not_valid_after_utc
    clock.set(ca_end - dt.timedelta(days=200))
    with pytest.raises(ValidityError, match="outlive the issuing CA"):
        issue(kyso, ca, days=365)
    assert issue(kyso, ca, values={**STAFF, "id": "019099054321"},
                 days=200).record.not_after == ca_end


def test_issuer_outlives_every_issued_certificate(kyso: Kyso, ca: CertificateAuthority) -> None:
    for profile in ("staff", "seal", "citizen"):
        issued = issue(kyso, ca, profile)
        issuer = ca.certificate(issued.record.issuer)
        assert issued.record.not_after <= issuer.not_valid_after_utc
        assert issued.record.not_before >= issuer.not_valid_before_utc


# --- certificate content ----------------------------------------------------------------------

def test_staff_certificate_extensions(kyso: Kyso, ca: CertificateAuthority) -> None:
    cert = issue(kyso, ca).record.certificate
    assert cert.version is x509.Version.v3
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca is False
    assert bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.content_commitment
    for bit in ("key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign",
                "crl_sign"):
        assert not getattr(ku.value, bit), bit
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.RFC822Name) == [STAFF["email"]]
    policies = ext(cert, x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [
        "1.3.6.1.4.1.32473.704.1.2.1"]


def test_key_identifiers_link_the_certificate_to_its_issuer(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    issued = issue(kyso, ca)
    cert = issued.record.certificate
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(issued.private_key.public_key())  # type: ignore[union-attr]
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    issuer_ski = ext(ca.certificate("staff"), x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == issuer_ski.digest
    assert cert.issuer == ca.certificate("staff").subject


def test_crl_and_aia_urls_are_built_from_the_base_url(kyso: Kyso, ca: CertificateAuthority) -> None:
    for profile, issuer in (("staff", "staff"), ("citizen", "citizen")):
        cert = issue(kyso, ca, profile).record.certificate
        dps = ext(cert, x509.CRLDistributionPoints).value
        assert [n.value for dp in dps for n in dp.full_name] == [
            f"{BASE_URL}/crl/{issuer}.crl"]
        aia = {d.access_method: d.access_location.value
               for d in ext(cert, x509.AuthorityInformationAccess).value}
        assert aia == {
            AuthorityInformationAccessOID.OCSP: f"{BASE_URL}/ocsp/{issuer}",
            AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE_URL}/crt/{issuer}.crt",
        }


def test_base_url_with_a_path_and_trailing_slash_gives_clean_urls(tmp_path: Path) -> None:
    ctx = open_kyso(load_settings(home=tmp_path / "h", environ=FAST_KDF), clock=FrozenClock(T0),
                    actor="admin:test")
    try:
        init_ca(ctx, passphrase=PASSPHRASE, org="UBND tỉnh Hưng Yên", province="hung-yen",
                key_type=KeyType.EC_P384, base_url="http://pki.hungyen.gov.vn/ca/")
        authority = CertificateAuthority(ctx, PASSPHRASE)
        cert = issuance.issue(ctx, authority, "citizen",
                              SubjectRequest.of(**CITIZEN)).record.certificate
    finally:
        ctx.close()
    dps = ext(cert, x509.CRLDistributionPoints).value
    assert dps[0].full_name[0].value == "http://pki.hungyen.gov.vn/ca/crl/citizen.crl"
    aia = [d.access_location.value for d in ext(cert, x509.AuthorityInformationAccess).value]
    assert "http://pki.hungyen.gov.vn/ca/ocsp/citizen" in aia


def test_seal_certificate_has_email_protection_and_document_signing_and_no_san(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    """emailProtection as for staff and citizen: NSS (pdfsig) does not trust a PDF signer
    without it (tests/signing/test_pdf_external_tools.py)."""
    cert = issue(kyso, ca, "seal").record.certificate
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def test_certificate_is_signed_by_the_issuing_ca_with_sha384(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    cert = issue(kyso, ca).record.certificate
    cert.verify_directly_issued_by(ca.certificate("staff"))
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    with pytest.raises(ValueError, match=r"[Ii]ssuer"):
        cert.verify_directly_issued_by(ca.certificate("citizen"))


def test_record_subject_masks_the_id_number(kyso: Kyso, ca: CertificateAuthority) -> None:
    record = issue(kyso, ca).record
    assert STAFF["id"] not in record.subject
    assert "CCCD:019******345" in record.subject
    assert record.holder_hint == "019******345"
    assert record.to_dict()["holder"] == "019******345"
    assert STAFF["id"] not in json.dumps(record.to_dict(), ensure_ascii=False)


# --- audit ------------------------------------------------------------------------------------

def test_successful_issuance_writes_a_cert_creation_event(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    issued = issue(kyso, ca)
    event = events(kyso)[-1]
    assert event["action"] == "CERT_CREATION"
    assert event["outcome"] == "success"
    assert event["layer"] == "pki"
    assert event["actor"] == "admin:test"
    assert event["object"] == issued.record.serial
    assert event["time"] == T0.isoformat()
    details = event["details"]
    assert details["profile"] == "staff"
    assert details["issuer"] == "staff"
    assert details["holder_hint"] == "019******345"
    assert details["holder"] == kyso.pseudonyms.pseudonym(STAFF["id"])
    assert details["holder"].startswith("psn:")
    assert details["common_name"] == STAFF["name"]


def test_refused_issuance_writes_a_failed_cert_creation_event(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    before = len(events(kyso))
    with pytest.raises(InvalidIdentifierError):
        issue(kyso, ca, values={**STAFF, "dob": "1998-04-02"})
    new = events(kyso)[before:]
    assert len(new) == 1
    assert (new[0]["action"], new[0]["outcome"]) == ("CERT_CREATION", "failure")
    assert new[0]["details"]["profile"] == "staff"
    assert "1998" in new[0]["details"]["reason"]


def test_validity_refusal_is_audited(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(ValidityError):
        issue(kyso, ca, days=5000)
    last = events(kyso)[-1]
    assert last["outcome"] == "failure"
    assert "5000" in last["details"]["reason"]


def test_no_raw_id_number_anywhere_in_the_audit_file(kyso: Kyso, ca: CertificateAuthority) -> None:
    issued = issue(kyso, ca)
    issue(kyso, ca, "citizen")
    for bad in ({**STAFF, "dob": "1998-04-02"},
                {**STAFF, "email": "x@gmail.com"},
                {**STAFF, "id": STAFF["id"] + "9"}):
        with pytest.raises(PkiError):
            issue(kyso, ca, values=bad)
    with pytest.raises(InvalidIdentifierError):
        issue(kyso, ca, "seal", {**SEAL, "tax_code": STAFF["id"]})  # ID typed as tax code
    issuance.renew(kyso, ca, issued.record.serial)
    text = audit_text(kyso)
    assert text.count("\n") >= 8
    for raw in (STAFF["id"], CITIZEN["id"], STAFF["id"] + "9"):
        assert raw not in text


# --- renew and rekey --------------------------------------------------------------------------

def test_renew_keeps_key_and_subject_with_a_new_serial(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    old = issue(kyso, ca).record
    clock.advance(dt.timedelta(days=1000))
    new = issuance.renew(kyso, ca, old.serial).record
    assert new.serial != old.serial
    assert new.replaces == old.serial
    assert new.certificate.subject == old.certificate.subject
    assert spki_sha256(new.certificate.public_key()) == spki_sha256(  # type: ignore[arg-type]
        old.certificate.public_key())
    assert new.not_before == T0 + dt.timedelta(days=1000)
    assert new.not_after == new.not_before + dt.timedelta(days=1095)
    assert new.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name) == [
            STAFF["email"]]
    still, _ = issuance.get_record(kyso, old.serial)
    assert still.status is Status.VALID


def test_renewal_keeps_the_holder_pseudonym_and_hint(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = issue(kyso, ca).record
    new = issuance.renew(kyso, ca, old.serial).record
    _, old_psn = issuance.get_record(kyso, old.serial)
    _, new_psn = issuance.get_record(kyso, new.serial)
    assert new_psn == old_psn == kyso.pseudonyms.pseudonym(STAFF["id"])
    assert new.holder_hint == "019******345"
    assert events(kyso)[-1]["details"]["replaces"] == old.serial


def test_renew_honours_the_profile_maximum(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = issue(kyso, ca).record
    with pytest.raises(ValidityError):
        issuance.renew(kyso, ca, old.serial, days=1827)


def test_renew_of_a_revoked_certificate_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    from kyso.pki.lifecycle import revoke

    old = issue(kyso, ca).record
    revoke(kyso, old.serial, reason="keyCompromise")
    with pytest.raises(PkiError, match="is revoked"):
        issuance.renew(kyso, ca, old.serial)


def test_renew_of_an_unknown_serial_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    from kyso.errors import CertificateNotFoundError

    with pytest.raises(CertificateNotFoundError):
        issuance.renew(kyso, ca, "abc123")


def test_rekey_changes_the_key_and_revokes_the_old_certificate_as_superseded(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    old = issue(kyso, ca)
    new = issuance.rekey(kyso, ca, old.record.serial)
    assert new.private_key is not None
    assert spki_sha256(new.record.certificate.public_key()) != spki_sha256(  # type: ignore[arg-type]
        old.record.certificate.public_key())
    assert new.record.certificate.subject == old.record.certificate.subject
    assert new.record.replaces == old.record.serial
    assert new.record.key_type == old.record.key_type
    revoked, _ = issuance.get_record(kyso, old.record.serial)
    assert revoked.status is Status.REVOKED
    assert revoked.revocation_reason is RevocationReason.SUPERSEDED
    actions = [(e["action"], e["outcome"]) for e in events(kyso)[-2:]]
    assert actions == [("CERT_CREATION", "success"), ("CERT_REVOKED", "success")]


def test_rekey_to_another_key_type(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = issue(kyso, ca).record
    new = issuance.rekey(kyso, ca, old.serial, key_type=KeyType.EC_P384)
    assert new.record.key_type == "ec-p384"


def test_rekey_to_a_key_type_the_profile_refuses(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = issue(kyso, ca).record
    with pytest.raises(KeyPolicyError):
        issuance.rekey(kyso, ca, old.serial, key_type=KeyType.ED25519)
    still, _ = issuance.get_record(kyso, old.serial)
    assert still.status is Status.VALID


def test_rekey_can_leave_the_old_certificate_valid(kyso: Kyso, ca: CertificateAuthority) -> None:
    old = issue(kyso, ca).record
    issuance.rekey(kyso, ca, old.serial, revoke_old=False)
    still, _ = issuance.get_record(kyso, old.serial)
    assert still.status is Status.VALID


def test_rekeyed_key_is_registered_so_it_cannot_be_certified_again(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    old = issue(kyso, ca).record
    new = issuance.rekey(kyso, ca, old.serial)
    with pytest.raises(DuplicateKeyError):
        issue(kyso, ca, "citizen", public_key=new.private_key.public_key())  # type: ignore[union-attr]
