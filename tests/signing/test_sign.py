"""Signing: PAdES levels, stamps, incremental updates, refusals."""

from __future__ import annotations

import hashlib

import pytest
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    citizen,
    dossier,
    seal,
    services,
    staff,
    verifier,
)

from kyso.errors import PdfInputError, SigningError
from kyso.signing.appearance import StampRequest, StampStyle
from kyso.signing.sign import Level, SignRequest
from kyso.signing.verdict import Indication
from kyso.signing.verify import PdfVerifier


@pytest.mark.parametrize("level", [Level.B_B, Level.B_T])
def test_signature_at_each_level_verifies_total_passed(staff: Holder, verifier: PdfVerifier,
                                                       dossier: bytes, level: Level) -> None:
    result = staff.signer.sign(dossier, SignRequest(level=level))
    report = verifier.verify(result.data, "x.pdf")
    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    (sig,) = report.signatures
    assert sig.pades_level == level.value
    assert sig.revocation == "good"


def test_signing_appends_an_incremental_update_and_keeps_the_input_bytes(
        staff: Holder, dossier: bytes) -> None:
    before = hashlib.sha256(dossier).hexdigest()
    out = staff.signer.sign(dossier, SignRequest()).data
    assert out.startswith(dossier)
    assert hashlib.sha256(dossier).hexdigest() == before


def test_signature_is_pades_with_sha256(staff: Holder, dossier: bytes) -> None:
    out = staff.signer.sign(dossier, SignRequest()).data
    assert b"/ETSI.CAdES.detached" in out


def test_second_signature_keeps_the_first_valid(staff: Holder, seal: Holder, verifier: PdfVerifier,
                                                dossier: bytes) -> None:
    first = staff.signer.sign(dossier, SignRequest(field_name="official")).data
    second = seal.signer.sign(first, SignRequest(field_name="seal")).data
    report = verifier.verify(second)
    assert [s.field for s in report.signatures] == ["official", "seal"]
    assert report.indication is Indication.TOTAL_PASSED, report.reasons


def test_signing_an_already_signed_field_is_refused(staff: Holder, dossier: bytes) -> None:
    first = staff.signer.sign(dossier, SignRequest(field_name="official")).data
    with pytest.raises(SigningError, match="already signed"):
        staff.signer.sign(first, SignRequest(field_name="official"))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"hello, not a pdf", "not a PDF"),
    (b"%PDF-1.7\n1 0 obj", "truncated"),
])
def test_garbage_input_is_refused_with_a_clear_error(staff: Holder, data: bytes,
                                                     message: str) -> None:
    with pytest.raises(PdfInputError, match=message):
        staff.signer.sign(data, SignRequest())


def test_truncated_pdf_is_refused(staff: Holder, dossier: bytes) -> None:
    with pytest.raises(PdfInputError):
        staff.signer.sign(dossier[: len(dossier) // 2], SignRequest())


def test_stamp_outside_the_page_is_refused(staff: Holder, dossier: bytes) -> None:
    stamp = StampRequest(box=(500, 800, 700, 900))
    with pytest.raises(SigningError, match="outside the page"):
        staff.signer.sign(dossier, SignRequest(stamp=stamp))


def test_stamp_on_a_missing_page_is_refused(staff: Holder, dossier: bytes) -> None:
    with pytest.raises(SigningError, match="has 2 page"):
        staff.signer.sign(dossier, SignRequest(stamp=StampRequest(page=3)))


def test_missing_image_is_refused(staff: Holder, dossier: bytes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stamp = StampRequest(image=tmp_path / "nope.png")
    with pytest.raises(SigningError, match="image not found"):
        staff.signer.sign(dossier, SignRequest(stamp=stamp))


@pytest.mark.parametrize("style", list(StampStyle))
def test_every_stamp_style_verifies(staff: Holder, verifier: PdfVerifier, dossier: bytes,
                                    style: StampStyle) -> None:
    out = staff.signer.sign(dossier, SignRequest(stamp=StampRequest(style=style))).data
    assert verifier.verify(out).indication is Indication.TOTAL_PASSED
