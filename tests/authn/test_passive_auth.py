"""Passive authentication: a genuine chip passes every check; tampered data groups, a rogue
CSCA, a revoked or expired Document Signer, a missing or stale CRL and garbage SODs do not —
and never raise."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import PASSPHRASE
from kyso.authn.chip import (
    ChipData,
    ChipPersonalData,
    build_sod,
    encode_dg1,
    encode_dg2,
    encode_dg13,
    issue_chip,
)
from kyso.authn.csca import (
    DocumentSigner,
    DsReason,
    build_csca_certificate,
    build_csca_crl,
    build_ds_certificate,
    current_document_signer,
    load_csca_certificate,
    load_csca_crl,
    revoke_document_signer,
)
from kyso.authn.passive_auth import (
    Check,
    CheckStatus,
    Indication,
    PassiveAuthResult,
    check_passive_auth,
    verify_passive_auth,
)
from kyso.authn.registry import Person
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import IdentityError

AN = Person.of(id_number="019099012345", full_name="Nguyễn Văn An", birth_date="1999-04-02",
               sex="male")
BINH = Person.of(id_number="033301000123", full_name="Trần Thị Bình", birth_date="2001-03-09",
                 sex="female")


def personal(person: Person = AN) -> ChipPersonalData:
    return ChipPersonalData(person=person, document_number="123456789",
                            issue_date=dt.date(2026, 1, 5), expiry_date=dt.date(2036, 1, 5))


@pytest.fixture
def signer(kyso: Kyso) -> DocumentSigner:
    return current_document_signer(kyso, PASSPHRASE)


@pytest.fixture
def chip(kyso: Kyso, signer: DocumentSigner) -> ChipData:
    return issue_chip(personal(), b"\xff\xd8portrait\xff\xd9", signer, kyso.now())


def check(kyso: Kyso, chip: ChipData, **overrides: object) -> PassiveAuthResult:
    """Check against this home's CSCA and CRL unless the test gives its own."""
    args = dict(overrides)
    if "csca" not in args:
        args["csca"] = [load_csca_certificate(kyso)]
    if "crls" not in args:
        crl = load_csca_crl(kyso)
        args["crls"] = [crl] if crl is not None else []
    args.setdefault("now", kyso.now())
    return check_passive_auth(chip, **args)  # type: ignore[arg-type]


def status(result: PassiveAuthResult) -> dict[Check, CheckStatus]:
    return {c.check: c.status for c in result.checks}


def rogue_signer(now: dt.datetime, *, same_name: bool = True
                 ) -> tuple[DocumentSigner, x509.Certificate]:
    """A CSCA nobody trusts, with the real one's name, and a DS under it."""
    csca_key = ec.generate_private_key(ec.SECP384R1())
    name = {} if same_name else {"common_name": "CSCA Giả mạo"}
    csca = build_csca_certificate(csca_key, now, **name)
    ds_key = ec.generate_private_key(ec.SECP256R1())
    return DocumentSigner(build_ds_certificate(csca, csca_key, ds_key.public_key(), now),
                          ds_key), csca


# --- the genuine chip --------------------------------------------------------------------------

def test_genuine_chip_passes_every_check_and_reports_ds_serial_and_personal_data(
        kyso: Kyso, chip: ChipData, signer: DocumentSigner) -> None:
    result = check(kyso, chip)
    assert result.indication is Indication.TOTAL_PASSED
    assert result.passed
    assert set(status(result).values()) == {CheckStatus.PASSED}
    assert [c.check for c in result.checks] == list(Check)
    assert result.ds_serial == signer.serial
    assert result.document_number == "123456789"
    assert result.personal_data == personal()
    assert result.personal_data is not None
    assert result.personal_data.person == AN
    assert verify_passive_auth(chip, csca=[load_csca_certificate(kyso)],
                               crls=[load_csca_crl(kyso)],  # type: ignore[list-item]
                               now=kyso.now()).passed


def test_report_to_dict_masks_the_id_number(kyso: Kyso, chip: ChipData) -> None:
    data = check(kyso, chip).to_dict()
    assert data["indication"] == "TOTAL-PASSED"
    assert data["personal_data"]["id_number"] == "019******345"
    assert "019099012345" not in repr(data)


# --- tampering ---------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [1, 2, 13])
def test_tampered_data_group_fails_the_hash_check(kyso: Kyso, chip: ChipData, group: int) -> None:
    forged_data = {1: encode_dg1(personal(BINH)), 2: encode_dg2(b"\xff\xd8other face\xff\xd9"),
                   13: encode_dg13(personal(BINH))}[group]
    tampered = dataclasses.replace(chip, data_groups={**chip.data_groups, group: forged_data})
    result = check(kyso, tampered)
    assert result.indication is Indication.TOTAL_FAILED
    assert status(result)[Check.DATA_GROUP_HASHES] is CheckStatus.FAILED
    assert f"DG{group}" in next(c.reason for c in result.checks
                                if c.check is Check.DATA_GROUP_HASHES)
    assert status(result)[Check.SOD_SIGNATURE] is CheckStatus.PASSED
    with pytest.raises(IdentityError, match="data-group-hashes FAILED"):
        verify_passive_auth(tampered, csca=[load_csca_certificate(kyso)],
                            crls=[load_csca_crl(kyso)],  # type: ignore[list-item]
                            now=kyso.now())


def test_one_flipped_bit_in_the_portrait_fails(kyso: Kyso, chip: ChipData) -> None:
    dg2 = bytearray(chip.data_groups[2])
    dg2[-2] ^= 0x01
    result = check(kyso, dataclasses.replace(chip, data_groups={**chip.data_groups, 2: bytes(dg2)}))
    assert status(result)[Check.DATA_GROUP_HASHES] is CheckStatus.FAILED


def test_data_group_not_covered_by_the_sod_fails(kyso: Kyso, chip: ChipData) -> None:
    extra = dataclasses.replace(chip, data_groups={**chip.data_groups, 14: b"\x6e\x01\x00"})
    result = check(kyso, extra)
    assert status(result)[Check.DATA_GROUP_HASHES] is CheckStatus.FAILED
    assert "DG14 not covered" in result.failures[0].reason


def test_altered_sod_signature_fails(kyso: Kyso, chip: ChipData) -> None:
    sod = bytearray(chip.sod)
    sod[-3] ^= 0x40  # inside the signature value, the last field of the SignerInfo
    result = check(kyso, dataclasses.replace(chip, sod=bytes(sod)))
    assert result.indication is Indication.TOTAL_FAILED
    assert status(result)[Check.SOD_SIGNATURE] is CheckStatus.FAILED


def test_dg1_and_dg13_of_different_people_fail_the_personal_data_check(
        kyso: Kyso, signer: DocumentSigner) -> None:
    groups = {1: encode_dg1(personal(BINH)), 2: encode_dg2(b"face"), 13: encode_dg13(personal())}
    chip = ChipData(groups, build_sod(groups, signer, kyso.now()))  # hashes and signature fine
    result = check(kyso, chip)
    assert status(result)[Check.DATA_GROUP_HASHES] is CheckStatus.PASSED
    assert status(result)[Check.PERSONAL_DATA] is CheckStatus.FAILED
    assert not result.passed


# --- chain and revocation ----------------------------------------------------------------------

def test_chip_signed_under_a_rogue_csca_with_the_same_name_fails_the_chain(kyso: Kyso) -> None:
    current_document_signer(kyso, PASSPHRASE)
    rogue, _rogue_csca = rogue_signer(kyso.now())
    chip = issue_chip(personal(), b"face", rogue, kyso.now())
    result = check(kyso, chip)
    assert status(result)[Check.SOD_SIGNATURE] is CheckStatus.PASSED  # self-consistent forgery
    assert status(result)[Check.DS_CHAIN] is CheckStatus.FAILED
    assert "rogue CSCA" in result.failures[0].reason
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.INDETERMINATE
    assert result.indication is Indication.TOTAL_FAILED


def test_chip_under_an_unknown_csca_name_fails_the_chain(kyso: Kyso) -> None:
    current_document_signer(kyso, PASSPHRASE)
    rogue, _ = rogue_signer(kyso.now(), same_name=False)
    result = check(kyso, issue_chip(personal(), b"face", rogue, kyso.now()))
    assert status(result)[Check.DS_CHAIN] is CheckStatus.FAILED
    assert "is not a trusted CSCA" in result.failures[0].reason


def test_rogue_chip_passes_only_against_its_own_rogue_csca(kyso: Kyso) -> None:
    rogue, rogue_csca = rogue_signer(kyso.now())
    result = check(kyso, issue_chip(personal(), b"face", rogue, kyso.now()), csca=[rogue_csca],
                   crls=[])
    assert status(result)[Check.DS_CHAIN] is CheckStatus.PASSED  # the trust anchor decides
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.INDETERMINATE


def test_revoked_document_signer_fails_revocation(kyso: Kyso, chip: ChipData,
                                                  signer: DocumentSigner) -> None:
    revoke_document_signer(kyso, PASSPHRASE, signer.serial, DsReason.KEY_COMPROMISE)
    result = check(kyso, chip)
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.FAILED
    assert "revoked" in result.failures[0].reason
    assert "keyCompromise" in result.failures[0].reason
    assert result.indication is Indication.TOTAL_FAILED
    with pytest.raises(IdentityError, match="ds-revocation FAILED"):
        verify_passive_auth(chip, csca=[load_csca_certificate(kyso)],
                            crls=[load_csca_crl(kyso)],  # type: ignore[list-item]
                            now=kyso.now())


def test_after_revocation_the_next_chip_gets_a_new_document_signer(
        kyso: Kyso, signer: DocumentSigner) -> None:
    revoke_document_signer(kyso, PASSPHRASE, signer.serial)
    fresh = current_document_signer(kyso, PASSPHRASE)
    assert fresh.serial != signer.serial
    assert check(kyso, issue_chip(personal(), b"face", fresh, kyso.now())).passed


def test_without_a_crl_revocation_is_indeterminate_and_does_not_pass(kyso: Kyso,
                                                                     chip: ChipData) -> None:
    result = check(kyso, chip, crls=[])
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.INDETERMINATE
    assert result.indication is Indication.INDETERMINATE
    assert not result.passed


def test_stale_crl_is_indeterminate(kyso: Kyso, chip: ChipData, clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(days=91))
    result = check(kyso, chip)
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.INDETERMINATE
    assert "not current" in result.failures[0].reason


def test_crl_signed_by_a_rogue_csca_is_ignored(kyso: Kyso, chip: ChipData,
                                              signer: DocumentSigner) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    forged = build_csca_crl(build_csca_certificate(key, kyso.now()), key, [], 99, kyso.now())
    result = check(kyso, chip, crls=[forged])
    assert status(result)[Check.DS_REVOCATION] is CheckStatus.INDETERMINATE


def test_expired_document_signer_fails_the_chain(kyso: Kyso, chip: ChipData,
                                                 signer: DocumentSigner) -> None:
    later = signer.certificate.not_valid_after_utc + dt.timedelta(days=1)
    result = check(kyso, chip, now=later)
    assert status(result)[Check.DS_CHAIN] is CheckStatus.FAILED
    assert "expired" in result.failures[0].reason


def test_no_trusted_csca_fails_closed(kyso: Kyso, chip: ChipData) -> None:
    result = check(kyso, chip, csca=[])
    assert status(result)[Check.DS_CHAIN] is CheckStatus.FAILED


# --- garbage -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sod", [
    b"", b"\x77", b"\x77\x00", b"\x30\x03\x02\x01\x00", b"\x77\x05\x30\x03\x02\x01\x00",
    b"\x77\x82\xff\xff" + b"\x00" * 10, bytes(range(256)) * 4,
])
def test_garbage_sod_fails_format_without_raising(kyso: Kyso, chip: ChipData, sod: bytes) -> None:
    result = check(kyso, dataclasses.replace(chip, sod=sod))
    assert status(result)[Check.SOD_FORMAT] is CheckStatus.FAILED
    assert status(result)[Check.SOD_SIGNATURE] is CheckStatus.INDETERMINATE
    assert result.indication is Indication.TOTAL_FAILED
    assert result.ds_serial is None


@pytest.mark.parametrize("cut", [1, 10, 100, 400])
def test_truncated_sod_fails_without_raising(kyso: Kyso, chip: ChipData, cut: int) -> None:
    result = check(kyso, dataclasses.replace(chip, sod=chip.sod[:-cut]))
    assert not result.passed
    assert status(result)[Check.SOD_FORMAT] is CheckStatus.FAILED


def test_sod_with_garbage_inside_a_valid_wrapper_fails(kyso: Kyso, chip: ChipData) -> None:
    body = base64.b64decode(base64.b64encode(b"\x30\x80" + b"\xff" * 50))
    result = check(kyso, dataclasses.replace(chip, sod=b"\x77" + bytes([len(body)]) + body))
    assert status(result)[Check.SOD_FORMAT] is CheckStatus.FAILED
