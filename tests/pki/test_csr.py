"""Certificate signing requests: parsing, proof of possession, what a CSR may ask for."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import CITIZEN, STAFF
from kyso.context import Kyso
from kyso.errors import CSRError, DuplicateKeyError, KeyPolicyError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.csr import MAX_CSR_BYTES, examine_csr, load_csr
from kyso.pki.keys import KeyType, spki_sha256
from kyso.pki.profiles import load_catalogue
from kyso.pki.subjects import SubjectRequest

CATALOGUE = load_catalogue()
STAFF_EXTRA = {"title": STAFF["title"], "unit": STAFF["unit"]}


def staff_subject(**overrides: str) -> list[x509.NameAttribute]:
    values = {"cn": STAFF["name"], "uid": f"CCCD:{STAFF['id']}", "email": STAFF["email"],
              **overrides}
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, values["cn"]),
             x509.NameAttribute(NameOID.USER_ID, values["uid"])]
    if values["email"]:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, values["email"]))
    return attrs


def make_csr(
    key: object | None = None,
    subject: Sequence[x509.NameAttribute] | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(list(subject if subject is not None else staff_subject())))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def issue_staff(kyso: Kyso, ca: CertificateAuthority, csr: x509.CertificateSigningRequest,
                **values: str) -> issuance.IssuedCertificate:
    request = SubjectRequest.of(**{**STAFF_EXTRA, **values})
    return issuance.issue(kyso, ca, "staff", request, csr=csr)


def key_usage(**bits: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: bits.get(n, False) for n in names})


# --- load_csr ---------------------------------------------------------------------------------

def test_pem_and_der_csr_load_to_the_same_request() -> None:
    csr = make_csr()
    assert load_csr(pem(csr)) == csr
    assert load_csr(der(csr)) == csr


def test_empty_csr_is_refused() -> None:
    with pytest.raises(CSRError, match="empty"):
        load_csr(b"")


@pytest.mark.parametrize(
    "data",
    [
        b"hello, I am not a CSR",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all!\n"
        b"-----END CERTIFICATE REQUEST-----\n",
        b"\x00" * 100,
    ],
)
def test_garbage_csr_is_refused(data: bytes) -> None:
    with pytest.raises(CSRError, match="not a valid PEM or DER"):
        load_csr(data)


def test_truncated_der_csr_is_refused() -> None:
    data = der(make_csr())
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(CSRError):
            load_csr(data[:cut])


def test_truncated_pem_csr_is_refused() -> None:
    lines = pem(make_csr()).splitlines(keepends=True)
    with pytest.raises(CSRError):
        load_csr(b"".join(lines[:2] + lines[-1:]))
    with pytest.raises(CSRError):
        load_csr(b"".join(lines[:-1]))


def test_certificate_is_not_accepted_as_a_csr(ca: CertificateAuthority) -> None:
    cert_pem = ca.certificate("staff").public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRError):
        load_csr(cert_pem)


def test_oversized_csr_is_refused() -> None:
    with pytest.raises(CSRError, match="larger than 64 KiB"):
        load_csr(pem(make_csr()) + b" " * MAX_CSR_BYTES)


# --- examine_csr: proof of possession and keys ------------------------------------------------

def test_csr_with_tampered_signature_is_refused() -> None:
    data = bytearray(der(make_csr()))
    data[-1] ^= 0x01  # last byte of the ECDSA signature's s value
    csr = load_csr(bytes(data))
    with pytest.raises(CSRError, match="signature does not verify"):
        examine_csr(csr, CATALOGUE.get("staff"))


def test_csr_with_tampered_subject_is_refused() -> None:
    data = der(make_csr())
    forged = data.replace("Nguyễn".encode(), "Nguyễm".encode())
    assert forged != data
    with pytest.raises(CSRError, match="signature does not verify"):
        examine_csr(load_csr(forged), CATALOGUE.get("staff"))


def test_tampered_csr_is_refused_by_issue_and_nothing_is_stored(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    data = bytearray(der(make_csr()))
    data[-1] ^= 0x01
    with pytest.raises(CSRError):
        issue_staff(kyso, ca, load_csr(bytes(data)))
    from kyso.pki.inventory import Query, search

    assert search(kyso, Query(profile="staff")) == []


def test_csr_with_rsa_1024_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyPolicyError, match="1024"):
        examine_csr(make_csr(key), CATALOGUE.get("staff"))


def test_csr_with_p521_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(KeyPolicyError, match="secp521r1"):
        examine_csr(make_csr(key), CATALOGUE.get("staff"))


def test_csr_with_key_type_the_profile_does_not_allow_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP384R1())  # citizen allows P-256, RSA-2048/3072
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, CITIZEN["name"])]
    with pytest.raises(CSRError, match="does not allow ec-p384"):
        examine_csr(make_csr(key, subject), CATALOGUE.get("citizen"))


def test_csr_key_type_differing_from_the_requested_one_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(CSRError, match="holds a ec-p256 key, not ec-p384"):
        issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF_EXTRA), csr=make_csr(),
                       key_type=KeyType.EC_P384)


def test_csr_and_a_key_together_are_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CSRError, match="either a CSR or a key"):
        issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF_EXTRA), csr=make_csr(),
                       public_key=key.public_key())


# --- examine_csr: extensions ------------------------------------------------------------------

def test_csr_asking_for_ca_true_is_refused() -> None:
    csr = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(CSRError, match="CA:TRUE"):
        examine_csr(csr, CATALOGUE.get("staff"))


def test_csr_with_ca_false_is_accepted_and_not_reported() -> None:
    csr = make_csr(extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)])
    assert examine_csr(csr, CATALOGUE.get("staff")).dropped_extensions == ()


def test_csr_with_dns_san_is_refused() -> None:
    san = x509.SubjectAlternativeName([x509.DNSName("evil.example.com")])
    with pytest.raises(CSRError, match="DNSName"):
        examine_csr(make_csr(extensions=[(san, False)]), CATALOGUE.get("staff"))


def test_csr_with_email_and_dns_san_is_refused() -> None:
    san = x509.SubjectAlternativeName([x509.RFC822Name(STAFF["email"]),
                                       x509.DNSName("thainguyen.gov.vn")])
    with pytest.raises(CSRError, match="e-mail only"):
        examine_csr(make_csr(extensions=[(san, False)]), CATALOGUE.get("staff"))


def test_csr_email_san_supplies_the_email() -> None:
    san = x509.SubjectAlternativeName([x509.RFC822Name(STAFF["email"])])
    csr = make_csr(subject=staff_subject(email=""), extensions=[(san, False)])
    assert examine_csr(csr, CATALOGUE.get("staff")).inputs["email"] == STAFF["email"]


def test_csr_email_san_differing_from_subject_email_is_refused() -> None:
    san = x509.SubjectAlternativeName([x509.RFC822Name("other@thainguyen.gov.vn")])
    with pytest.raises(CSRError, match="two different values for email"):
        examine_csr(make_csr(extensions=[(san, False)]), CATALOGUE.get("staff"))


def test_csr_with_extra_key_usage_is_refused() -> None:
    ku = key_usage(digital_signature=True, key_encipherment=True)
    with pytest.raises(CSRError, match="key usage keyEncipherment"):
        examine_csr(make_csr(extensions=[(ku, True)]), CATALOGUE.get("staff"))


def test_csr_asking_for_key_cert_sign_is_refused() -> None:
    ku = key_usage(key_cert_sign=True)
    with pytest.raises(CSRError, match="keyCertSign"):
        examine_csr(make_csr(extensions=[(ku, True)]), CATALOGUE.get("staff"))


def test_csr_with_a_subset_of_the_profile_key_usage_is_accepted() -> None:
    ku = key_usage(digital_signature=True)
    assert examine_csr(make_csr(extensions=[(ku, True)]), CATALOGUE.get("staff"))


def test_csr_with_extra_extended_key_usage_is_refused() -> None:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                 ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(CSRError, match=r"extended key usage 1\.3\.6\.1\.5\.5\.7\.3\.1"):
        examine_csr(make_csr(extensions=[(eku, False)]), CATALOGUE.get("staff"))


def test_unknown_csr_extensions_are_dropped_and_reported() -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.32473.99.1"),
                                         b"\x05\x00")
    tls = x509.TLSFeature([x509.TLSFeatureType.status_request])
    csr = make_csr(extensions=[(unknown, False), (tls, False)])
    examined = examine_csr(csr, CATALOGUE.get("staff"))
    assert set(examined.dropped_extensions) == {"1.3.6.1.4.1.32473.99.1", "TLSFeature"}


def test_dropped_extensions_become_issuance_warnings_and_stay_out_of_the_certificate(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    unknown_oid = x509.ObjectIdentifier("1.3.6.1.4.1.32473.99.1")
    csr = make_csr(extensions=[(x509.UnrecognizedExtension(unknown_oid, b"\x05\x00"), False)])
    prepared = issuance.prepare(kyso, ca, "staff", SubjectRequest.of(**STAFF_EXTRA), csr=csr)
    assert prepared.warnings == (
        "dropped CSR extension 1.3.6.1.4.1.32473.99.1 (not in profile staff)",
    )
    oids = {ext.oid for ext in prepared.certificate.extensions}
    assert unknown_oid not in oids
    issued = issuance.commit(kyso, ca, [prepared])[0]
    assert issued.warnings == prepared.warnings


def test_csr_subject_key_identifier_is_dropped_and_replaced_by_the_cas() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier(b"\x01" * 20)
    examined = examine_csr(make_csr(key, extensions=[(ski, False)]), CATALOGUE.get("staff"))
    assert examined.dropped_extensions == ("subjectKeyIdentifier",)


# --- examine_csr: subject ---------------------------------------------------------------------

def test_csr_subject_supplies_name_id_and_email() -> None:
    examined = examine_csr(make_csr(), CATALOGUE.get("staff"))
    assert examined.inputs == {"name": STAFF["name"], "id": STAFF["id"],
                               "email": STAFF["email"]}
    assert STAFF["id"] not in repr(examined)


def test_csr_country_state_and_organisation_are_ignored() -> None:
    subject = [*staff_subject(), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
               x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]
    examined = examine_csr(make_csr(subject=subject), CATALOGUE.get("staff"))
    assert "Evil Corp" not in examined.inputs.values()


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        (x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "gov"), "not allowed by profile staff"),
        (x509.NameAttribute(NameOID.USER_ID, "HC:B1234567"), "must start with one of CCCD"),
        (x509.NameAttribute(NameOID.USER_ID, "CCCD:"), "must start with one of CCCD"),
        (x509.NameAttribute(NameOID.SERIAL_NUMBER, "019099012345"), "IDCVN-"),
        (x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, "VATVN-4600100155"), "NTRVN-"),
    ],
)
def test_csr_subject_attribute_the_profile_cannot_use_is_refused(
    attribute: x509.NameAttribute, message: str
) -> None:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, STAFF["name"]), attribute]
    with pytest.raises(CSRError, match=message):
        examine_csr(make_csr(subject=subject), CATALOGUE.get("staff"))


def test_csr_subject_carrying_an_input_the_profile_does_not_take_is_refused() -> None:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, CITIZEN["name"]),
               x509.NameAttribute(NameOID.TITLE, "Chuyên viên")]
    with pytest.raises(CSRError, match="carries title"):
        examine_csr(make_csr(subject=subject), CATALOGUE.get("citizen"))


def test_csr_with_two_different_id_numbers_is_refused() -> None:
    subject = [*staff_subject(),
               x509.NameAttribute(NameOID.SERIAL_NUMBER, "IDCVN-001099012345")]
    with pytest.raises(CSRError, match="two different values for id") as exc:
        examine_csr(make_csr(subject=subject), CATALOGUE.get("staff"))
    assert STAFF["id"] not in str(exc.value)


def test_csr_whose_cn_conflicts_with_the_given_name_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(CSRError, match="the CSR's name differs"):
        issue_staff(kyso, ca, make_csr(), name="Nguyễn Văn Bình")


def test_csr_cn_in_decomposed_form_matches_the_same_given_name(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    csr = make_csr(subject=staff_subject(cn=unicodedata.normalize("NFD", STAFF["name"])))
    issued = issue_staff(kyso, ca, csr, name=STAFF["name"])
    assert issued.record.common_name == unicodedata.normalize("NFC", STAFF["name"])


def test_csr_id_conflicting_with_the_given_id_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(CSRError, match="the CSR's id differs"):
        issue_staff(kyso, ca, make_csr(), id="019099054321")


# --- issuing from a CSR -----------------------------------------------------------------------

def test_valid_csr_is_issued_with_its_key_and_the_profiles_content(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = issue_staff(kyso, ca, make_csr(key))
    cert = issued.record.certificate
    assert spki_sha256(cert.public_key()) == spki_sha256(key.public_key())  # type: ignore[arg-type]
    assert issued.private_key is None
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == STAFF["name"]
    assert cert.subject.get_attributes_for_oid(NameOID.TITLE)[0].value == STAFF["title"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "UBND tỉnh Thái Nguyên")
    assert not cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [STAFF["email"]]
    cert.verify_directly_issued_by(ca.certificate("staff"))
    assert issued.record.key_type == "ec-p256"


def test_csr_with_organisation_gets_the_cas_organisation(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    subject = [*staff_subject(), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp")]
    cert = issue_staff(kyso, ca, make_csr(subject=subject)).record.certificate
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["UBND tỉnh Thái Nguyên"]


def test_public_key_certified_twice_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = issue_staff(kyso, ca, make_csr(key))
    with pytest.raises(DuplicateKeyError, match="already been certified"):
        issue_staff(kyso, ca, make_csr(key))
    from kyso.pki.inventory import Query, search

    assert [r.serial for r in search(kyso, Query(profile="staff"))] == [first.record.serial]


def test_public_key_of_a_ca_cannot_be_certified(kyso: Kyso, ca: CertificateAuthority) -> None:
    ca_public = ca.certificate("staff").public_key()
    with pytest.raises(DuplicateKeyError):
        issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF), public_key=ca_public)


def test_renewing_a_csr_certificate_reuses_its_key(kyso: Kyso, ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = issue_staff(kyso, ca, make_csr(key))
    renewed = issuance.renew(kyso, ca, first.record.serial)
    assert renewed.record.serial != first.record.serial
    assert renewed.record.replaces == first.record.serial
    assert spki_sha256(renewed.record.certificate.public_key()) == spki_sha256(  # type: ignore[arg-type]
        key.public_key())
    # The renewal does not free the key for another subscriber.
    with pytest.raises(DuplicateKeyError):
        issue_staff(kyso, ca, make_csr(key))


def test_rekey_from_a_csr_takes_the_new_key(kyso: Kyso, ca: CertificateAuthority) -> None:
    first = issue_staff(kyso, ca, make_csr())
    new_key = ec.generate_private_key(ec.SECP256R1())
    rekeyed = issuance.rekey(kyso, ca, first.record.serial, csr=make_csr(new_key))
    assert spki_sha256(rekeyed.record.certificate.public_key()) == spki_sha256(  # type: ignore[arg-type]
        new_key.public_key())
    assert rekeyed.record.certificate.subject == first.record.certificate.subject


def test_rekey_with_a_forged_csr_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    first = issue_staff(kyso, ca, make_csr())
    data = bytearray(der(make_csr()))
    data[-1] ^= 0x01
    with pytest.raises(CSRError):
        issuance.rekey(kyso, ca, first.record.serial, csr=load_csr(bytes(data)))
    record, _ = issuance.get_record(kyso, first.record.serial)
    assert record.status.value == "valid"
