"""Verification behaviour beyond the tamper suite: passwords, the end of the file, revocation
sources, document timestamps followed by later signatures."""

from __future__ import annotations

import io

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    citizen,
    dossier,
    services,
    staff,
    verifier,
)
from test_verify_attacks import EVIL_TEXT, append_revision, content_ref, page_ref, stream

from kyso.context import Kyso
from kyso.signing import verdict as v
from kyso.signing.setup import build_verifier
from kyso.signing.sign import Level, SignRequest
from kyso.signing.verdict import Indication
from kyso.signing.verify import PdfVerifier

USER_PASSWORD = "mat-khau-ho-so"
OWNER_PASSWORD = "mat-khau-chu"


def encrypted(data: bytes, *, mac: bool) -> bytes:
    """AES-256 encryption, with or without the ISO 32004 MAC (qpdf writes none)."""
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(data)))
    writer.encrypt(OWNER_PASSWORD.encode(), USER_PASSWORD.encode(), pdf_mac=mac)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def checks_of(report: v.FileReport, index: int = -1) -> dict[str, v.Check]:
    return {c.name: c for c in report.signatures[index].checks}


# --- password-protected dossiers ----------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["aes256", "aes256-mac"])
def locked_signed(request: pytest.FixtureRequest, staff: Holder, dossier: bytes) -> bytes:
    locked = encrypted(dossier, mac=request.param)
    return staff.signer.sign(locked, SignRequest(pdf_password=USER_PASSWORD)).data


@pytest.mark.parametrize("password", [USER_PASSWORD, OWNER_PASSWORD])
def test_an_encrypted_signed_pdf_verifies_with_its_user_or_owner_password(
        verifier: PdfVerifier, locked_signed: bytes, password: str) -> None:
    report = verifier.verify(locked_signed, "khoa.pdf", password=password)

    assert report.indication is Indication.TOTAL_PASSED, report.reasons


@pytest.mark.parametrize(("password", "needle"), [
    (None, "password-protected"), ("sai-mat-khau", "wrong PDF password")])
def test_an_encrypted_pdf_without_the_right_password_fails_with_the_reason(
        verifier: PdfVerifier, locked_signed: bytes, password: str | None, needle: str) -> None:
    report = verifier.verify(locked_signed, "khoa.pdf", password=password)

    assert report.indication is Indication.TOTAL_FAILED
    assert report.error is not None
    assert needle in report.error
    assert "sai-mat-khau" not in str(report.to_dict())


# --- the end of the file --------------------------------------------------------------------

@pytest.mark.parametrize("padding", [b"\n", b"\r\n\r\n", b"\x00" * 64, b" \t\x0c"])
def test_whitespace_after_the_last_eof_is_accepted(staff: Holder, verifier: PdfVerifier,
                                                   dossier: bytes, padding: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data

    report = verifier.verify(signed + padding)

    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    assert checks_of(report)["file-end"].ok is True


@pytest.mark.parametrize("tail", [
    b"junk", b"%comment only\n", b"12 0 obj\n(x)\nendobj\n"])
def test_bytes_after_the_newest_revision_fail_the_file(staff: Holder, verifier: PdfVerifier,
                                                       dossier: bytes, tail: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest()).data

    report = verifier.verify(signed + tail)

    v_ind = (report.indication, report.sub_indication)
    assert v_ind == (Indication.TOTAL_FAILED, v.FORMAT_FAILURE), report.reasons
    assert checks_of(report)["file-end"].ok is False


def test_the_end_of_file_check_belongs_to_the_newest_signature_only(
        staff: Holder, citizen: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    first = citizen.signer.sign(dossier, SignRequest(field_name="citizen")).data
    both = staff.signer.sign(first, SignRequest(field_name="official")).data

    report = verifier.verify(both)

    assert report.passed, report.reasons
    assert "file-end" not in checks_of(report, 0)
    assert checks_of(report, 1)["file-end"].ok is True


# --- revocation sources ---------------------------------------------------------------------

@pytest.mark.parametrize("level", [Level.B_B, Level.B_T])
def test_without_any_revocation_source_the_verdict_is_try_later_with_a_hint(
        kyso: Kyso, staff: Holder, dossier: bytes, level: Level) -> None:
    """A fresh home has published no CRL: kyso never assumes "not revoked"."""
    signed = staff.signer.sign(dossier, SignRequest(level=level)).data
    fresh = build_verifier(kyso.clock, kyso=kyso)  # no CRL published in this home

    report = fresh.verify(signed)

    assert (report.indication, report.sub_indication) == (Indication.INDETERMINATE,
                                                           v.TRY_LATER), report.reasons
    assert report.signatures[0].revocation == "unknown"
    assert any("kyso crl publish" in r and "B-LT" in r for r in report.reasons), report.reasons


def test_a_b_lt_signature_needs_no_published_crl(kyso: Kyso, staff: Holder,
                                                 dossier: bytes) -> None:
    signed = staff.signer.sign(dossier, SignRequest(level=Level.B_LT)).data

    report = build_verifier(kyso.clock, kyso=kyso).verify(signed)

    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    assert report.signatures[0].revocation_source.startswith("dss")


# --- document timestamps followed by signatures ------------------------------------------

def test_a_document_timestamp_followed_by_a_signature_still_passes(
        staff: Holder, citizen: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    lta = citizen.signer.sign(dossier, SignRequest(field_name="citizen", level=Level.B_LTA)).data
    both = staff.signer.sign(lta, SignRequest(field_name="official")).data

    report = verifier.verify(both)

    assert report.passed, report.reasons
    kinds = [(s.field, s.kind) for s in report.signatures]
    assert kinds[0] == ("citizen", "signature")
    assert kinds[-1] == ("official", "signature")
    stamp = next(s for s in report.signatures if s.kind == "document-timestamp")
    assert stamp.modification_level == "FORM_FILLING"


def test_content_changed_after_a_document_timestamp_fails_it(
        citizen: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    lta = citizen.signer.sign(dossier, SignRequest(field_name="citizen", level=Level.B_LTA)).data
    contents = content_ref(lta, page_ref(lta, 0))

    report = verifier.verify(append_revision(lta, {contents: stream(EVIL_TEXT)}))

    assert report.indication is Indication.TOTAL_FAILED, report.reasons
    stamp = next(s for s in report.signatures if s.kind == "document-timestamp")
    assert stamp.indication is Indication.TOTAL_FAILED


def test_an_object_before_a_repeated_startxref_fails_the_file(
        staff: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """The attacker repeats the newest startxref after the hidden object, so the file still
    ends in a %%EOF that points at the signed revision."""
    signed = staff.signer.sign(dossier, SignRequest()).data
    startxref = signed[signed.rindex(b"startxref"):]

    report = verifier.verify(signed + b"12 0 obj\n(x)\nendobj\n" + startxref)

    assert report.indication is Indication.TOTAL_FAILED, report.reasons
    assert checks_of(report)["file-end"].ok is False


# --- one verifier, many documents -----------------------------------------------------------

def test_one_verifier_judges_each_document_on_its_own(
        staff: Holder, citizen: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """State shared between documents (handlers, caches) never carries a verdict over."""
    good = staff.signer.sign(dossier, SignRequest()).data
    tampered = bytearray(good)
    tampered[good.index(b"Tf") + 4] ^= 1  # a byte inside the signed page content
    other = citizen.signer.sign(dossier, SignRequest(level=Level.B_T)).data

    verdicts = [verifier.verify(d).indication for d in (good, bytes(tampered), other, good)]

    assert verdicts == [Indication.TOTAL_PASSED, Indication.TOTAL_FAILED,
                        Indication.TOTAL_PASSED, Indication.TOTAL_PASSED]


def test_one_verifier_can_serve_several_threads(staff: Holder, kyso: Kyso,
                                                verifier: PdfVerifier, dossier: bytes) -> None:
    """Fresh verifiers shared by threads that switch very often: the trust anchors and CRLs
    they share are never seen half-parsed (asn1crypto parses lazily, not atomically)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    files = [staff.signer.sign(dossier, SignRequest()).data for _ in range(6)]
    broken = bytearray(files[0])
    broken[files[0].index(b"Tf") + 4] ^= 1
    files.append(bytes(broken))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        verdicts = []
        for _ in range(8):
            fresh = build_verifier(kyso.clock, kyso=kyso)
            with ThreadPoolExecutor(max_workers=4) as pool:
                verdicts += [r.indication for r in pool.map(fresh.verify, files)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            verdicts += list(pool.map(lambda d: verifier.verify(d).indication, files * 3))
    finally:
        sys.setswitchinterval(interval)

    assert verdicts == ([Indication.TOTAL_PASSED] * 6 + [Indication.TOTAL_FAILED]) * 11
