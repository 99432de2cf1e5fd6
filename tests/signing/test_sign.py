"""Signing: PAdES levels, stamps, incremental updates, refusals."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    citizen,
    dossier,
    seal,
    services,
    staff,
    verifier,
)

from conftest import CITIZEN, SEAL, STAFF
from kyso.errors import PdfInputError, SigningError
from kyso.signing import appearance
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


# --- stamps: who is named, what a bad image or box says --------------------------------------

def test_the_stamp_holder_of_each_profile(staff: Holder, seal: Holder, citizen: Holder) -> None:
    """The agency is the official's unit, and for a seal its own CN (its O is the province)."""
    assert appearance.Holder.of(staff.certificate) == appearance.Holder(
        name=STAFF["name"], title=STAFF["title"], agency=STAFF["unit"])
    assert appearance.Holder.of(seal.certificate) == appearance.Holder(
        name=SEAL["name"], title=None, agency=SEAL["name"])
    assert appearance.Holder.of(citizen.certificate) == appearance.Holder(
        name=CITIZEN["name"], title=None, agency=None)
    assert appearance.is_legal_person(seal.certificate)
    assert not appearance.is_legal_person(staff.certificate)
    assert not appearance.is_legal_person(citizen.certificate)


def test_the_drawn_seal_shows_the_agency(seal: Holder, dossier: bytes,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    original = appearance.drawn_seal

    def spy(agency: str, size: int = 330) -> Image.Image:
        drawn.append(agency)
        return original(agency, size)

    monkeypatch.setattr(appearance, "drawn_seal", spy)
    seal.signer.sign(dossier, SignRequest(stamp=StampRequest(style=StampStyle.SEAL)))
    assert drawn == [SEAL["name"]]


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n but not really", b"%PDF-1.7\n"])
def test_an_image_that_is_not_an_image_is_named_in_the_error(
        staff: Holder, dossier: bytes, tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "chu-ky.png"
    fake.write_bytes(content)
    with pytest.raises(SigningError) as exc:
        staff.signer.sign(dossier, SignRequest(stamp=StampRequest(image=fake)))
    message = str(exc.value)
    assert str(fake) in message
    assert "not a readable PNG/JPEG image" in message
    assert "BytesIO" not in message
    assert "object at 0x" not in message


@pytest.mark.parametrize(("text", "needle"), [
    ("1,2,x", "four numbers"), ("1,2,3", "four numbers"), ("1,2,3,4,5", "four numbers"),
    ("", "four numbers"), ("5,5,1,1", "x1 < x2"), ("0,0,nan,1", "finite"),
    ("0,0,inf,1", "finite"),
])
def test_a_malformed_box_is_refused(text: str, needle: str) -> None:
    with pytest.raises(SigningError, match=needle):
        appearance.parse_box(text)


def test_a_box_is_four_numbers() -> None:
    assert appearance.parse_box("36, 36.5,200,100") == (36.0, 36.5, 200.0, 100.0)


# --- password-protected dossiers ------------------------------------------------------------

@pytest.mark.parametrize("mac", [False, True], ids=["aes256", "aes256-iso32004-mac"])
def test_a_signed_password_protected_pdf_takes_the_next_signatures(
        staff: Holder, seal: Holder, verifier: PdfVerifier, dossier: bytes, mac: bool) -> None:
    """Existing fields of an encrypted PDF are read decrypted (their /Rect places the seal), and
    a PDF encrypted with an ISO/TS 32004 MAC gets the pdfMacData attribute in each signature."""
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(dossier)))
    writer.encrypt(b"mat-khau-chu", b"mat-khau", pdf_mac=mac)
    out = io.BytesIO()
    writer.write(out)
    data = staff.signer.sign(out.getvalue(), SignRequest(
        field_name="official", stamp=StampRequest(), pdf_password="mat-khau")).data
    data = seal.signer.sign(data, SignRequest(
        field_name="seal", stamp=StampRequest(style=StampStyle.SEAL, position="over:official"),
        certify=True, lock_fields=("*",), pdf_password="mat-khau")).data
    report = verifier.verify(data, "khoa.pdf", password="mat-khau")
    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    assert [s.field for s in report.signatures] == ["official", "seal"]
