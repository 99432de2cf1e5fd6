"""Signing refuses what the existing signatures forbid (DocMDP, FieldMDP, the PDF 2.0 lock /P),
and accepts what they allow: a signature that breaks an earlier one's permissions could never
verify, so nothing is written."""

from __future__ import annotations

import io

import pytest
from pyhanko.sign.fields import SigFieldSpec, append_signature_field
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    dossier,
    seal,
    services,
    staff,
    verifier,
)

from kyso.errors import PdfInputError, SigningError
from kyso.signing.appearance import StampRequest
from kyso.signing.pdfio import open_for_update
from kyso.signing.sign import SignRequest
from kyso.signing.verdict import Indication
from kyso.signing.verify import PdfVerifier


def with_empty_field(pdf: bytes, name: str = "empty") -> bytes:
    """``pdf`` plus an unsigned signature field, as a form prepared for signers has."""
    writer = open_for_update(pdf, None)
    append_signature_field(writer, SigFieldSpec(sig_field_name=name))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def certified(seal: Holder, pdf: bytes, allow: str) -> bytes:
    """A certification (DocMDP, the first signature) by the agency."""
    return seal.signer.sign(with_empty_field(pdf), SignRequest(
        field_name="seal", certify=True, allow=allow)).data


def sealed_after(staff: Holder, seal: Holder, pdf: bytes, allow: str,
                 locks: tuple[str, ...]) -> bytes:
    """The official signs, then the agency's final seal locks (FieldMDP + /Lock /P)."""
    first = staff.signer.sign(with_empty_field(pdf), SignRequest(field_name="official")).data
    return seal.signer.sign(first, SignRequest(field_name="seal", certify=True, allow=allow,
                                               lock_fields=locks)).data


@pytest.mark.parametrize("target", ["late", "empty"], ids=["new-field", "existing-field"])
def test_a_certification_allowing_no_changes_refuses_a_further_signature(
        staff: Holder, seal: Holder, dossier: bytes, target: str) -> None:
    data = certified(seal, dossier, "none")
    with pytest.raises(SigningError, match=r"field 'seal'.*P=1") as exc:
        staff.signer.sign(data, SignRequest(field_name=target))
    assert not isinstance(exc.value, PdfInputError)  # a refusal, not a "damaged PDF"


@pytest.mark.parametrize("target", ["late", "empty"], ids=["new-field", "existing-field"])
def test_a_certification_allowing_forms_accepts_a_further_signature(
        staff: Holder, seal: Holder, verifier: PdfVerifier, dossier: bytes, target: str) -> None:
    data = certified(seal, dossier, "forms")
    out = staff.signer.sign(data, SignRequest(field_name=target)).data
    report = verifier.verify(out)
    assert report.indication is Indication.TOTAL_PASSED, report.reasons
    assert [s.field for s in report.signatures] == ["seal", target]


def test_a_certification_refuses_a_new_visible_field_but_not_an_existing_one(
        staff: Holder, seal: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    """A new widget after a certification is beyond form filling for pyHanko's difference
    analysis (stricter than Acrobat): such a signature would never verify."""
    data = certified(seal, dossier, "forms")
    with pytest.raises(SigningError, match=r"field 'seal' allows no new visible signature"):
        staff.signer.sign(data, SignRequest(field_name="late", stamp=StampRequest()))
    # the prepared field already has its place: filling it is form filling
    out = staff.signer.sign(data, SignRequest(field_name="empty")).data
    assert verifier.verify(out).indication is Indication.TOTAL_PASSED


@pytest.mark.parametrize("locks", [("*",), ()], ids=["lock-all", "default-lock"])
@pytest.mark.parametrize("target", ["late", "empty"], ids=["new-field", "existing-field"])
def test_the_final_seal_locking_everything_refuses_a_further_signature(
        staff: Holder, seal: Holder, dossier: bytes, locks: tuple[str, ...],
        target: str) -> None:
    """--certify on a signed PDF with --allow forms: FieldMDP All (+ /Lock /P 2)."""
    data = sealed_after(staff, seal, dossier, "forms", locks)
    with pytest.raises(SigningError, match=r"field 'seal' locks every field \(FieldMDP All\)"):
        staff.signer.sign(data, SignRequest(field_name=target))


def test_the_final_seal_allowing_no_changes_refuses_a_further_signature(
        staff: Holder, seal: Holder, dossier: bytes) -> None:
    """--certify --allow none on a signed PDF: the PDF 2.0 lock with /P 1."""
    data = sealed_after(staff, seal, dossier, "none", ("*",))
    with pytest.raises(SigningError, match=r"field 'seal' forbids any change.*P=1"):
        staff.signer.sign(data, SignRequest(field_name="late"))


def test_a_field_lock_refuses_only_the_fields_it_locks(
        staff: Holder, seal: Holder, verifier: PdfVerifier, dossier: bytes) -> None:
    first = staff.signer.sign(with_empty_field(with_empty_field(dossier), "open"),
                              SignRequest(field_name="official")).data
    data = seal.signer.sign(first, SignRequest(field_name="seal",
                                               lock_fields=("official", "empty"))).data
    with pytest.raises(SigningError, match=r"field 'seal' locks the field 'empty'"):
        staff.signer.sign(data, SignRequest(field_name="empty"))
    for target in ("open", "late"):  # an unlocked existing field, a new field
        out = staff.signer.sign(data, SignRequest(field_name=target)).data
        report = verifier.verify(out)
        assert report.indication is Indication.TOTAL_PASSED, (target, report.reasons)
