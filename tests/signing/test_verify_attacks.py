"""The tamper suite: genuinely signed dossiers, then attacked (domain.md §2 attack classes).

Every attack must end in a verdict other than TOTAL-PASSED, with the EN 319 102-1 indication and
sub-indication the attack deserves, and never with an exception.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers import pdf_signer
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    dossier,
    publish_all_crls,
    seal,
    services,
    staff,
    verifier,
)

from conftest import T0
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.lifecycle import revoke
from kyso.pki.records import RevocationReason
from kyso.signing import sign as kyso_sign
from kyso.signing import verdict as v
from kyso.signing.pdfio import open_for_update
from kyso.signing.sample import sample_pdf
from kyso.signing.services import LocalServices
from kyso.signing.setup import build_verifier
from kyso.signing.sign import Level, PdfSigner, SignRequest
from kyso.signing.verdict import FileReport, Indication, SignatureReport
from kyso.signing.verify import PdfVerifier, VerifyOptions

CORPUS = Path("/work/shared/corpora/pdf-robustness")
HOUR = dt.timedelta(hours=1)


# --- helpers --------------------------------------------------------------------------------

def failed_checks(sig: SignatureReport) -> set[str]:
    return {c.name for c in sig.checks if c.ok is False}


def assert_verdict(report: FileReport, indication: Indication, sub: str | None) -> None:
    assert not report.passed
    assert (report.indication, report.sub_indication) == (indication, sub), report.reasons


def last_trailer(data: bytes) -> tuple[int, bytes, int]:
    """``(/Size, /Root reference, startxref)`` of the newest revision (classic xref files)."""
    size = int(re.findall(rb"/Size (\d+)", data)[-1])
    root = re.findall(rb"/Root (\d+ \d+ R)", data)[-1]
    startxref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    return size, root, startxref


def append_revision(data: bytes, objects: dict[int, bytes]) -> bytes:
    """An incremental update written by hand: the objects (number -> body), an xref section
    and a trailer whose /Prev points at the previous revision. Nothing else changes."""
    size, root, prev = last_trailer(data)
    out = bytearray(data if data.endswith(b"\n") else data + b"\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n"
    for num in sorted(objects):
        out += b"%d 1\n%010d 00000 n \n" % (num, offsets[num])
    new_size = max(size, max(objects) + 1)
    out += (b"trailer\n<< /Size %d /Root %s /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
            % (new_size, root, prev, xref))
    return bytes(out)


def current_object(data: bytes, num: int) -> generic.PdfObject:
    """The newest version of object ``num``, as pyHanko reads it."""
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    return reader.get_object(generic.Reference(num, 0, reader))


def serialize(obj: generic.PdfObject) -> bytes:
    buf = io.BytesIO()
    obj.write_to_stream(buf)
    return buf.getvalue()


def stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"


def page_ref(data: bytes, index: int) -> int:
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    ref, _ = reader.find_page_for_modification(index)
    return int(ref.idnum)


def content_ref(data: bytes, page: int) -> int:
    page_obj = current_object(data, page)
    assert isinstance(page_obj, generic.DictionaryObject)
    return int(page_obj.raw_get("/Contents").idnum)


EVIL_TEXT = b"BT /F1 16 Tf 72 770 Td (Tu choi cap ban sao) Tj ET\n"


def byte_range_span(data: bytes) -> tuple[int, int, list[int]]:
    """Where the last /ByteRange array sits (start, end of ``[ ... ]``) and its numbers."""
    match = list(re.finditer(rb"/ByteRange\s*(\[[^\]]*\])", data))[-1]
    values = [int(x) for x in match.group(1)[1:-1].split()]
    return match.start(1), match.end(1), values


def rewrite_byte_range(data: bytes, values: list[int]) -> bytes:
    """Replace the /ByteRange array in place, in the blanks pyHanko reserves after it, so
    every offset in the file stays put."""
    start, end, _ = byte_range_span(data)
    while data[end:end + 1] == b" ":
        end += 1
    new = b"[" + b" ".join(b"%d" % x for x in values) + b"]"
    assert len(new) <= end - start, "the new /ByteRange does not fit"
    return data[:start] + new.ljust(end - start) + data[end:]


def make_root(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that has nothing to do with the home's hierarchy."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(T0 - dt.timedelta(days=1))
            .not_valid_after(T0 + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def key_usage(**kw: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    flags.update(kw)
    return x509.KeyUsage(**flags)


# --- 1. a byte changed inside a signed range ------------------------------------------------

@pytest.mark.parametrize(("old", "new"), [
    (b"Don de nghi", b"Don de nghj"),  # page 1's content stream: the first signed range
    (b"pdf:Producer=", b"pdf:Pr0ducer="),  # the XMP metadata: the second signed range
], ids=["first-range-page-text", "second-range-metadata"])
def test_a_byte_changed_inside_a_signed_range_is_a_hash_failure(
        staff: Holder, verifier: PdfVerifier, dossier: bytes, old: bytes, new: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data
    _, _, (_, b, c, _) = byte_range_span(signed)
    at = signed.rindex(old) if old.startswith(b"pdf:") else signed.index(old)
    assert at < b or at >= c  # the changed byte is signed, not in the /Contents gap
    tampered = signed[:at] + new + signed[at + len(old):]
    assert len(tampered) == len(signed)

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    (sig,) = report.signatures
    assert "integrity" in failed_checks(sig)


# --- 2. incremental saving attack: new page content after an approval signature -------------

@pytest.mark.parametrize("level", [Level.B_B, Level.B_LT])
def test_page_content_replaced_by_an_incremental_update_fails(
        staff: Holder, verifier: PdfVerifier, dossier: bytes, level: Level) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=level)).data
    contents = content_ref(signed, page_ref(signed, 0))
    tampered = append_revision(signed, {contents: stream(EVIL_TEXT)})
    assert current_object(tampered, contents).data == EVIL_TEXT  # the attack took effect

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    (sig,) = report.signatures
    assert failed_checks(sig) == {"modifications"}
    assert sig.modification_level == "OTHER"


# --- 3. an appended page ----------------------------------------------------------------------

def test_a_page_appended_after_signing_fails(staff: Holder, verifier: PdfVerifier,
                                             dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data
    size, _, _ = last_trailer(signed)
    pages = current_object(signed, 2)
    assert isinstance(pages, generic.DictionaryObject)
    kids = b" ".join(b"%d 0 R" % int(k.idnum) for k in pages.raw_get("/Kids"))
    count = int(pages["/Count"])
    first_page = current_object(signed, page_ref(signed, 0))
    font = int(first_page["/Resources"].raw_get("/Font").raw_get("/F1").idnum)
    new_page, new_content = size, size + 1
    tampered = append_revision(signed, {
        2: b"<< /Type /Pages /Kids [%s %d 0 R] /Count %d >>" % (kids, new_page, count + 1),
        new_page: (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources "
                   b"<< /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font, new_content)),
        new_content: stream(EVIL_TEXT),
    })
    reader = PdfFileReader(io.BytesIO(tampered), strict=False)
    assert int(reader.root["/Pages"]["/Count"]) == count + 1

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    (sig,) = report.signatures
    assert failed_checks(sig) == {"modifications"}


# --- 4. certification attack: an annotation added to a certified document --------------------

@pytest.mark.parametrize(("subtype", "allow"), [(b"/Text", "none"), (b"/FreeText", "none"),
                                               (b"/FreeText", "forms")])
def test_an_annotation_added_to_a_certified_document_fails(
        seal: Holder, verifier: PdfVerifier, dossier: bytes, subtype: bytes, allow: str) -> None:
    certified = seal.signer.sign(dossier, SignRequest(certify=True, allow=allow)).data
    assert verifier.verify(certified).passed
    size, _, _ = last_trailer(certified)
    page = page_ref(certified, 0)
    page_obj = current_object(certified, page)
    assert isinstance(page_obj, generic.DictionaryObject)
    annots = generic.ArrayObject(page_obj.raw_get("/Annots") or [])
    annots.append(generic.IndirectObject(size, 0, None))
    page_obj[generic.NameObject("/Annots")] = annots
    extra = b" /DA (/Helv 12 Tf 1 0 0 rg)" if subtype == b"/FreeText" else b""
    tampered = append_revision(certified, {
        page: serialize(page_obj),
        size: (b"<< /Type /Annot /Subtype %s /Rect [72 600 400 700] /P %d 0 R "
               b"/Contents (Ho so nay da bi huy) /F 4%s >>" % (subtype, page, extra)),
    })
    new_page = current_object(tampered, page)
    assert isinstance(new_page, generic.DictionaryObject)
    assert new_page["/Annots"][-1]["/Subtype"] == subtype.decode()

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    (sig,) = report.signatures
    assert sig.certified
    assert sig.docmdp == {"none": "NO_CHANGES", "forms": "FILL_FORMS"}[allow]
    assert failed_checks(sig) == {"modifications"}


def test_a_sneaky_signature_on_a_document_certified_without_changes_fails(
        seal: Holder, staff: Holder, verifier: PdfVerifier, dossier: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Certification attack: a second signature on a document whose author allowed nothing.
    Both kyso's and pyHanko's signers refuse, so the attacker's signer skips that check."""
    certified = seal.signer.sign(dossier, SignRequest(certify=True, allow="none")).data
    monkeypatch.setattr(pdf_signer.PdfSigner, "_enforce_certification_constraints",
                        lambda self, reader: None)
    monkeypatch.setattr(kyso_sign, "signing_forbidden", lambda *args, **kwargs: None)
    sneaky = staff.signer.sign(certified, SignRequest(field_name="sneaky")).data

    report = verifier.verify(sneaky)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    author, second = report.signatures
    assert author.certified
    assert failed_checks(author) == {"modifications"}
    assert second.passed


# --- 5. revoked signer -----------------------------------------------------------------------

def revoke_and_rebuild(kyso: Kyso, ca: CertificateAuthority, holder: Holder) -> PdfVerifier:
    revoke(kyso, holder.issued.record.serial, reason=RevocationReason.KEY_COMPROMISE)
    publish_all_crls(kyso, ca)
    return build_verifier(kyso.clock, kyso=kyso)


def test_b_b_signature_of_a_signer_revoked_later_is_revoked_no_poe(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        verifier: PdfVerifier, dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=Level.B_B)).data
    assert verifier.verify(signed).passed
    clock.advance(HOUR)
    after = revoke_and_rebuild(kyso, ca, staff)
    clock.advance(HOUR)

    report = after.verify(signed)

    # EN 319 102-1 §5.2.6: revoked, and nothing proves the signature existed before
    assert_verdict(report, Indication.INDETERMINATE, v.REVOKED_NO_POE)
    (sig,) = report.signatures
    assert sig.revocation == "revoked"


@pytest.mark.parametrize("level", [Level.B_T, Level.B_LT, Level.B_LTA])
def test_timestamped_signature_made_before_the_revocation_still_passes(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        verifier: PdfVerifier, dossier: bytes, level: Level) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=level)).data
    clock.advance(HOUR)
    after = revoke_and_rebuild(kyso, ca, staff)
    clock.advance(HOUR)

    report = after.verify(signed)

    # the signature timestamp at T0 proves the signature predates the revocation at T0+1h
    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    sig = report.signatures[0]
    assert sig.pades_level == level.value
    assert sig.timestamp is not None
    assert sig.timestamp.time == T0


def test_signature_made_after_the_revocation_is_revoked(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        services: LocalServices, dossier: bytes) -> None:
    clock.advance(HOUR)
    after = revoke_and_rebuild(kyso, ca, staff)
    clock.advance(HOUR)
    # the library signer does not ask the store (only the CLI does): sign anyway, with a
    # signature timestamp that proves the signature was made after the revocation
    signer = PdfSigner.from_key(staff.issued.private_key, staff.certificate,  # type: ignore[arg-type]
                                tuple(staff.issued.chain), clock, services=services)
    signed = signer.sign(dossier, SignRequest(level=Level.B_T)).data

    report = after.verify(signed)

    # EN 319 102-1 Table 5: TOTAL-FAILED/REVOKED when there is proof that the signature was
    # created after the revocation time
    assert_verdict(report, Indication.TOTAL_FAILED, v.REVOKED)
    (sig,) = report.signatures
    assert sig.revocation == "revoked"
    assert sig.timestamp is not None
    assert sig.timestamp.time == T0 + 2 * HOUR


# --- 6. expired signer -----------------------------------------------------------------------

EXPIRED = dt.timedelta(days=1095 + 1)  # staff certificates last 1095 days


def test_b_b_signature_verified_after_the_certificate_expired_is_out_of_bounds(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=Level.B_B)).data
    clock.set(T0 + EXPIRED)
    assert clock.now() > staff.certificate.not_valid_after_utc
    publish_all_crls(kyso, ca)  # fresh CRLs: the only problem left is the expiry

    report = build_verifier(clock, kyso=kyso).verify(signed)

    assert_verdict(report, Indication.INDETERMINATE, v.OUT_OF_BOUNDS_NO_POE)


@pytest.mark.parametrize("level", [Level.B_LT, Level.B_LTA])
def test_long_term_signature_verified_after_the_certificate_expired_passes(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        dossier: bytes, level: Level) -> None:
    """Observed and accepted (EN 319 102-1 §5.5/§5.6): the signature timestamp at T0 (TSA
    valid until T0+6y) and the DSS's OCSP responses of T0 prove the signature inside the
    certificate's validity, before any revocation."""
    signed = staff.signer.sign(dossier, SignRequest(level=level)).data
    clock.set(T0 + EXPIRED)
    assert clock.now() > staff.certificate.not_valid_after_utc
    publish_all_crls(kyso, ca)

    report = build_verifier(clock, kyso=kyso).verify(signed)

    assert report.indication is Indication.TOTAL_PASSED, report.reasons


# --- 7. untrusted root ---------------------------------------------------------------------

@pytest.mark.parametrize("level", [Level.B_B, Level.B_T, Level.B_LTA])
def test_a_verifier_trusting_another_root_finds_no_chain(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        verifier: PdfVerifier, dossier: bytes, level: Level) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=level)).data
    assert verifier.verify(signed).passed
    other_root, _ = make_root("Some Other Root CA")
    stranger = PdfVerifier(VerifyOptions(trust_roots=(other_root,),
                                         crls=verifier.options.crls), clock)

    report = stranger.verify(signed)

    assert_verdict(report, Indication.INDETERMINATE, v.NO_CERTIFICATE_CHAIN_FOUND)


# --- 8. a certificate without a signing key usage ---------------------------------------------

def sign_with_foreign_usage(kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock,
                            staff: Holder, services: LocalServices, dossier: bytes,
                            usage: x509.KeyUsage,
                            eku: x509.ExtendedKeyUsage | None = None) -> FileReport:
    """Sign with a certificate the profiles would never issue: the staff CA signs it directly,
    with the staff certificate's subject (inside the root's name constraints), CRL and AIA."""
    issuer = ca.issuer("staff")
    template = staff.certificate
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(template.subject)
               .issuer_name(issuer.certificate.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(T0).not_valid_after(T0 + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(usage, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.certificate.public_key()), critical=False))  # type: ignore[arg-type]
    if eku is not None:
        builder = builder.add_extension(eku, critical=False)
    for ext_type in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        ext = template.extensions.get_extension_for_class(ext_type)
        builder = builder.add_extension(ext.value, critical=ext.critical)
    cert = builder.sign(issuer.key, hashes.SHA384())  # type: ignore[arg-type]
    signer = PdfSigner.from_key(key, cert, tuple(ca.chain("staff")), clock, services=services)
    signed = signer.sign(dossier, SignRequest(level=Level.B_T)).data
    publish_all_crls(kyso, ca)
    return build_verifier(clock, kyso=kyso).verify(signed)


FOREIGN_USAGES = {
    "keyEncipherment-only": (key_usage(key_encipherment=True), None),
    "serverAuth-eku": (key_usage(digital_signature=True, content_commitment=True),
                       x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])),
}


@pytest.mark.parametrize("usage", list(FOREIGN_USAGES))
def test_a_certificate_without_signing_key_usage_is_not_passed(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        services: LocalServices, dossier: bytes, usage: str) -> None:
    report = sign_with_foreign_usage(kyso, ca, clock, staff, services, dossier,
                                     *FOREIGN_USAGES[usage])

    assert report.indication is Indication.INDETERMINATE, report.reasons
    (sig,) = report.signatures
    assert failed_checks(sig) == {"key-usage"}  # pyHanko's AdES verdict alone passes it


@pytest.mark.parametrize("usage", list(FOREIGN_USAGES))
def test_a_certificate_without_signing_key_usage_is_a_chain_constraints_failure(
        kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, staff: Holder,
        services: LocalServices, dossier: bytes, usage: str) -> None:
    report = sign_with_foreign_usage(kyso, ca, clock, staff, services, dossier,
                                     *FOREIGN_USAGES[usage])

    assert_verdict(report, Indication.INDETERMINATE, v.CHAIN_CONSTRAINTS_FAILURE)


# --- 9. Universal Signature Forgery, Signature Wrapping, shadow "hide" ----------------------

# /ByteRange [a b c d] -> the forged array (a pyHanko signature has a = 0)
BYTE_RANGES = {
    "six-numbers": lambda a, b, c, d: [a, b, c, d, 0, 0],
    "first-range-not-at-0": lambda a, b, c, d: [a + 9, b - 9, c, d],
    # the gap takes 10 bytes of the dictionary before /Contents
    "gap-wider-than-contents": lambda a, b, c, d: [a, b - 10, c, d],
    # "<3" of the hex string is signed instead of skipped
    "gap-narrower-than-contents": lambda a, b, c, d: [a, b + 2, c, d],
    "beyond-eof": lambda a, b, c, d: [a, b, c, d + 100],
}


@pytest.mark.parametrize("attack", list(BYTE_RANGES))
def test_a_malformed_byte_range_is_a_format_failure(staff: Holder, verifier: PdfVerifier,
                                                    dossier: bytes, attack: str) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data
    _, _, values = byte_range_span(signed)
    tampered = rewrite_byte_range(signed, BYTE_RANGES[attack](*values))
    assert len(tampered) == len(signed)

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.FORMAT_FAILURE)
    (sig,) = report.signatures
    assert "byte-range" in failed_checks(sig)


def test_a_payload_in_the_signature_gap_is_a_format_failure(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """Signature wrapping: the gap is not hashed, so bytes hidden there keep the digest. Here
    the hex string is closed right after the CMS and the rest of the gap is a PDF comment
    carrying the payload: the file parses and the digest matches; the gap is wrong."""
    signed = staff.signer.sign(dossier, SignRequest()).data
    _, _, (_, b, c, _) = byte_range_span(signed)
    cms = bytes.fromhex(signed[b + 1:c - 1].decode("ascii"))
    assert cms[:2] == b"\x30\x82"
    cms_hex = signed[b + 1:b + 1 + 2 * (4 + int.from_bytes(cms[2:4], "big"))]
    gap = b"<" + cms_hex + b">%" + b" 99 0 obj (Tu choi cap ban sao) endobj "
    assert signed[c:c + 1] == b"\n"  # ends the comment
    tampered = signed[:b] + gap.ljust(c - b) + signed[c:]
    assert len(tampered) == len(signed)

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.FORMAT_FAILURE)
    (sig,) = report.signatures
    assert {"byte-range", "coverage"} <= failed_checks(sig)
    assert not {"integrity", "signature"} & failed_checks(sig)  # the digest still matches


def test_a_broken_contents_string_is_a_format_failure(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """The same with the payload in the middle of the hex string: the file no longer parses,
    which fails closed."""
    signed = staff.signer.sign(dossier, SignRequest()).data
    _, _, (_, _, c, _) = byte_range_span(signed)
    payload = b"> 99 0 obj (Tu choi cap ban sao) endobj <"
    end = c - 1  # the ">" closing the hex string
    start = end - 2 * ((len(payload) + 1) // 2) - 2
    assert set(signed[start:end]) == {ord("0")}  # only zero padding is overwritten
    tampered = signed[:start] + payload.ljust(end - start, b"0") + signed[end:]
    assert len(tampered) == len(signed)

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.FORMAT_FAILURE)
    assert report.error is not None
    assert "cannot read the PDF" in report.error


def test_a_signature_without_contents_is_not_passed(staff: Holder, verifier: PdfVerifier,
                                                    dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data
    _, _, (_, b, c, _) = byte_range_span(signed)
    key = signed.rindex(b"/Contents", 0, b)
    tampered = signed[:key] + b" " * (c - key) + signed[c:]  # /Contents and its value blanked
    assert len(tampered) == len(signed)

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.FORMAT_FAILURE)
    assert report.error is not None
    assert "/Contents" in report.error


def hide_and_show(visible: bytes, hidden: bytes) -> bytes:
    """A one-page dossier prepared for a shadow "hide" attack: the page draws ``hidden``, then
    an overlay stream paints a white box over it and draws ``visible`` on top."""
    base = sample_pdf(pages=1)
    size, _, _ = last_trailer(base)
    page, contents = page_ref(base, 0), content_ref(base, page_ref(base, 0))
    page_obj = current_object(base, page)
    assert isinstance(page_obj, generic.DictionaryObject)
    overlay = size
    page_obj[generic.NameObject("/Contents")] = generic.ArrayObject(
        [generic.IndirectObject(contents, 0, None), generic.IndirectObject(overlay, 0, None)])
    return append_revision(base, {
        contents: stream(b"BT /F1 16 Tf 72 770 Td (" + hidden + b") Tj ET\n"),
        overlay: stream(b"1 1 1 rg 60 750 480 50 re f 0 0 0 rg "
                        b"BT /F1 16 Tf 72 770 Td (" + visible + b") Tj ET\n"),
        page: serialize(page_obj),
    })


def test_shadow_hide_an_overlay_removed_after_signing_fails(
        staff: Holder, verifier: PdfVerifier) -> None:
    prepared = hide_and_show(b"Dong y cap ban sao", b"Tu choi cap ban sao")
    signed = staff.signer.sign(prepared, SignRequest()).data
    assert verifier.verify(signed).passed
    overlay = last_trailer(prepared)[0] - 1
    # the harmless-looking update: one existing object, emptied
    tampered = append_revision(signed, {overlay: stream(b"")})

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    (sig,) = report.signatures
    assert failed_checks(sig) == {"modifications"}


def test_unsigned_bytes_after_the_last_signature_are_not_passed(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """An object redefinition appended without an xref section: a reader that rebuilds the
    xref (qpdf does when startxref is lost) shows the new page content."""
    signed = staff.signer.sign(dossier, SignRequest()).data
    contents = content_ref(signed, page_ref(signed, 0))
    tampered = signed + b"%d 0 obj\n" % contents + stream(EVIL_TEXT) + b"\nendobj\n"

    report = verifier.verify(tampered)

    assert not report.passed, report.to_dict()
    assert report.indication is Indication.TOTAL_FAILED


# --- 10. the robustness corpus ---------------------------------------------------------------

CORPUS_FILES = sorted(p.name for p in CORPUS.iterdir() if p.name != "LICENSE") \
    if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS_FILES, reason=f"{CORPUS} is not available")
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_no_robustness_sample_passes_or_raises(verifier: PdfVerifier, name: str) -> None:
    data = (CORPUS / name).read_bytes()

    report = verifier.verify(data, name)

    assert not report.passed, report.to_dict()
    assert report.indication in (Indication.TOTAL_FAILED, Indication.INDETERMINATE)
    assert report.error is not None or report.reasons
    report.to_dict()  # the report itself is well-formed


# --- 11. document timestamps -----------------------------------------------------------------

def foreign_tsa() -> DummyTimeStamper:
    """An RFC 3161 TSA under a root nobody here trusts."""
    root, root_key = make_root("Some Other Root CA")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's dummy TSA
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other TSA")]))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(T0 - dt.timedelta(days=1))
            .not_valid_after(T0 + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(digital_signature=True, content_commitment=True),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .sign(root_key, hashes.SHA256()))

    def load(c: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return DummyTimeStamper(tsa_cert=load(cert), tsa_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
                            certs_to_embed=SimpleCertificateStore.from_certs([load(root)]),
                            fixed_dt=T0)


def test_a_document_timestamp_from_an_untrusted_tsa_is_not_passed(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data
    stamper = PdfTimeStamper(foreign_tsa(), field_name="DocTimeStamp")
    out = stamper.timestamp_pdf(open_for_update(signed, None), "sha256", output=io.BytesIO())
    stamped = out.getvalue()

    report = verifier.verify(stamped)

    assert_verdict(report, Indication.INDETERMINATE, v.NO_CERTIFICATE_CHAIN_FOUND)
    sig, ts = report.signatures
    assert sig.passed
    assert ts.kind == "document-timestamp"
    assert failed_checks(ts) == {"trust"}
    assert ts.timestamp is not None
    assert ts.timestamp.valid
    assert not ts.timestamp.trusted


def test_content_changed_after_a_document_timestamp_fails(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """domain.md's verdict trap: pyHanko's AdES verdict alone passes this B-LTA file."""
    signed = staff.signer.sign(dossier, SignRequest(level=Level.B_LTA)).data
    assert verifier.verify(signed).passed
    contents = content_ref(signed, page_ref(signed, 0))
    tampered = append_revision(signed, {contents: stream(EVIL_TEXT)})

    report = verifier.verify(tampered)

    assert_verdict(report, Indication.TOTAL_FAILED, v.HASH_FAILURE)
    sig, ts = report.signatures
    assert (sig.kind, ts.kind) == ("signature", "document-timestamp")
    assert failed_checks(sig) == {"modifications"}
    assert failed_checks(ts) == {"modifications"}
    assert ts.indication is Indication.TOTAL_FAILED


# --- never an exception ----------------------------------------------------------------------

PDF_TOKENS = [b"1 0 obj", b"2 0 obj", b"endobj", b"<<", b">>", b"[", b"]", b"/Type /Catalog",
              b"/Pages 2 0 R", b"/Root 1 0 R", b"/Type /Sig", b"/FT /Sig", b"/V 3 0 R",
              b"/ByteRange [0 10 20 30]", b"/Contents <3082>", b"/AcroForm << /Fields [3 0 R] >>",
              b"stream\n", b"\nendstream", b"xref\n0 2\n0000000000 65535 f \n", b"trailer",
              b"startxref\n9\n", b"/Size 4", b"/Prev 0", b"/Length 99", b"(text)", b"-1",
              b"99999999999999999999", b"/Filter /FlateDecode", b"/Encrypt 5 0 R", b"\n", b" "]

garbage = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.sampled_from(PDF_TOKENS), max_size=200).map(b" ".join),
)


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=garbage)
def test_verify_never_raises_on_garbage(verifier: PdfVerifier, body: bytes) -> None:
    report = verifier.verify(b"%PDF-1.7\n" + body + b"%%EOF\n")

    assert not report.passed
    assert report.indication in (Indication.TOTAL_FAILED, Indication.INDETERMINATE)
    report.to_dict()


@pytest.fixture
def signed_b_lta(staff: Holder, dossier: bytes) -> bytes:
    return staff.signer.sign(dossier, SignRequest(level=Level.B_LTA)).data


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
       suffix=st.sampled_from([b"", b"\n%%EOF\n"]))
def test_verify_never_raises_on_a_truncated_signed_file(
        verifier: PdfVerifier, signed_b_lta: bytes, fraction: float, suffix: bytes) -> None:
    cut = int(len(signed_b_lta) * fraction)
    first = re.search(rb"/ByteRange \[0 (\d+) (\d+) (\d+)\]", signed_b_lta)
    assert first is not None
    signed_revision_end = int(first.group(2)) + int(first.group(3))

    report = verifier.verify(signed_b_lta[:cut] + suffix)

    report.to_dict()
    if report.passed:  # only a prefix that still holds the whole signed revision may pass
        assert cut >= signed_revision_end, report.to_dict()
    else:
        assert report.indication in (Indication.TOTAL_FAILED, Indication.INDETERMINATE)
