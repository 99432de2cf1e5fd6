"""The simulated chip: data groups, MRZ, DG13, the SOD's CMS structure and the chip file."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import serialization

from conftest import PASSPHRASE
from kyso.authn.chip import (
    LDS_SECURITY_OBJECT_OID,
    ChipData,
    ChipPersonalData,
    LDSSecurityObject,
    build_mrz,
    chip_from_json,
    chip_to_json,
    decode_dg13,
    encode_dg13,
    issue_chip,
    mrz_check_digit,
    read_tlv,
)
from kyso.authn.csca import DocumentSigner, current_document_signer, load_csca_certificate
from kyso.authn.registry import Person
from kyso.context import Kyso
from kyso.der import length
from kyso.errors import IdentityError

AN = Person.of(id_number="019099012345", full_name="Nguyễn Văn An", birth_date="1999-04-02",
               sex="male")


def personal(person: Person = AN, **changes: object) -> ChipPersonalData:
    values: dict[str, object] = {
        "person": person, "document_number": "123456789", "issue_date": dt.date(2026, 1, 5),
        "expiry_date": dt.date(2036, 1, 5), "place_of_origin": "Phú Bình, Thái Nguyên",
        "place_of_residence": "Phường Phan Đình Phùng, Thái Nguyên"}
    values.update(changes)
    return ChipPersonalData(**values)  # type: ignore[arg-type]


@pytest.fixture
def signer(kyso: Kyso) -> DocumentSigner:
    return current_document_signer(kyso, PASSPHRASE)


@pytest.fixture
def chip(kyso: Kyso, signer: DocumentSigner) -> ChipData:
    return issue_chip(personal(), b"\xff\xd8portrait\xff\xd9", signer, kyso.now())


# --- MRZ and DG13 ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "digit"), [
    ("L898902C3", "6"), ("740812", "2"), ("120415", "9"),  # ICAO 9303-3 worked example
    ("D23145890", "7"), ("<<<<<<", "0"),
])
def test_mrz_check_digit_follows_icao_7_3_1_weights(text: str, digit: str) -> None:
    assert mrz_check_digit(text) == digit


def test_mrz_is_td1_with_id_number_dates_sex_and_folded_name() -> None:
    mrz = build_mrz(personal())
    assert len(mrz) == 90
    line1, line2, line3 = mrz[:30], mrz[30:60], mrz[60:]
    assert line1.startswith("IDVNM123456789" + mrz_check_digit("123456789") + "019099012345")
    assert line2.startswith("990402" + mrz_check_digit("990402") + "M360105")
    assert line2[15:18] == "VNM"
    assert line2[29] == mrz_check_digit(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    assert line3 == "NGUYEN<<VAN<AN".ljust(30, "<")


def test_dg13_round_trips_vietnamese_personal_data_with_diacritics() -> None:
    data = personal()
    assert decode_dg13(encode_dg13(data)) == data
    assert "Nguyễn Văn An".encode() in encode_dg13(data)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("full_name"), "full_name is missing"),
    (lambda d: d.update(sex=1), "sex is missing or not text"),
    (lambda d: d.update(id_number="019199012345"), "DG13"),
    (lambda d: d.update(birth_date="02/04/1999"), "ISO date"),
    (lambda d: d.update(document_number="12345678901"), "document number"),
    (lambda d: d.update(v=2), "version-1"),
])
def test_dg13_with_bad_content_is_refused_with_a_named_field(mutate: object, message: str) -> None:
    body = json.loads(read_tlv(encode_dg13(personal()), b"\x6d", "DG13"))
    mutate(body)  # type: ignore[operator]
    raw = json.dumps(body).encode()
    with pytest.raises(IdentityError, match=message):
        decode_dg13(b"\x6d" + length(len(raw)) + raw)


@pytest.mark.parametrize("data", [b"", b"\x6d", b"\x6d\x05abc", b"\x61\x00", b"\x6d\x84\xff\xff\xff\xff"])
def test_dg13_with_broken_tlv_is_refused(data: bytes) -> None:
    with pytest.raises(IdentityError, match="DG13"):
        decode_dg13(data)


# --- the SOD -----------------------------------------------------------------------------------

def _signed_data(chip: ChipData) -> cms.SignedData:
    return cms.ContentInfo.load(read_tlv(chip.sod, b"\x77", "SOD"))["content"]


def test_sod_is_cms_signed_data_over_the_lds_security_object_with_every_dg_hash(
        chip: ChipData, signer: DocumentSigner) -> None:
    sd = _signed_data(chip)
    assert sd["version"].native == "v3"
    assert sd["encap_content_info"]["content_type"].dotted == LDS_SECURITY_OBJECT_OID
    lds = LDSSecurityObject.load(bytes(sd["encap_content_info"]["content"].contents))
    assert lds["hash_algorithm"]["algorithm"].native == "sha256"
    hashes = {h["data_group_number"].native: h["data_group_hash_value"].native
              for h in lds["data_group_hash_values"]}
    assert hashes == {n: hashlib.sha256(b).digest() for n, b in chip.data_groups.items()}
    assert set(hashes) == {1, 2, 13}
    signer_info = sd["signer_infos"][0]
    attrs = {a["type"].native for a in signer_info["signed_attrs"]}
    assert {"content_type", "message_digest"} <= attrs
    assert sd["certificates"][0].chosen.dump() == signer.certificate.public_bytes(
        serialization.Encoding.DER)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_sod_against_the_csca(kyso: Kyso, chip: ChipData,
                                                   tmp_path: Path) -> None:
    sod = tmp_path / "sod.der"
    sod.write_bytes(read_tlv(chip.sod, b"\x77", "SOD"))
    out = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(sod), "-purpose", "any",
         "-CAfile", str(kyso.settings.home / "csca" / "csca.crt.pem"), "-out", str(tmp_path / "lds")],
        capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "Verification successful" in out.stderr
    assert load_csca_certificate(kyso).subject.rfc4514_string().endswith("C=VN")


# --- the chip file -----------------------------------------------------------------------------

def test_chip_file_round_trips_and_its_repr_shows_no_personal_data(chip: ChipData) -> None:
    raw = chip_to_json(chip)
    doc = json.loads(raw)
    assert doc["format"] == "kyso-chip"
    assert doc["version"] == 1
    assert set(doc["data_groups"]) == {"DG1", "DG2", "DG13"}
    again = chip_from_json(raw)
    assert dict(again.data_groups) == dict(chip.data_groups)
    assert again.sod == chip.sod
    assert "019099012345" not in repr(again)
    assert "Nguy" not in repr(again)
    assert "019099012345" not in repr(personal())


def _doc(chip: ChipData) -> dict[str, object]:
    return json.loads(chip_to_json(chip))  # type: ignore[no-any-return]


@pytest.mark.parametrize(("make", "message"), [
    (lambda raw, d: b"\x00\xffgarbage", "not UTF-8"),
    (lambda raw, d: b"not json at all", "not valid JSON"),
    (lambda raw, d: raw[: len(raw) // 2], "truncated"),
    (lambda raw, d: b"[1, 2, 3]", "JSON object"),
    (lambda raw, d: json.dumps({**d, "format": "other"}).encode(), "format"),
    (lambda raw, d: json.dumps({**d, "version": "1"}).encode(), "version"),
    (lambda raw, d: json.dumps({**d, "version": True}).encode(), "version"),
    (lambda raw, d: json.dumps({**d, "data_groups": []}).encode(), "data_groups"),
    (lambda raw, d: json.dumps({**d, "data_groups": {**d["data_groups"], "DG2": 7}}).encode(),
     "DG2 must be a base64 string"),
    (lambda raw, d: json.dumps({**d, "data_groups": {**d["data_groups"], "DG1": "@@!!"}}).encode(),
     "DG1 is not valid base64"),
    (lambda raw, d: json.dumps({**d, "data_groups": {**d["data_groups"], "DG99": "AA=="}}).encode(),
     "unknown data group"),
    (lambda raw, d: json.dumps({**d, "data_groups": {k: v for k, v in d["data_groups"].items()
                                                     if k != "DG13"}}).encode(),
     "missing data group.*DG13"),
    (lambda raw, d: json.dumps({k: v for k, v in d.items() if k != "sod"}).encode(), "missing sod"),
    (lambda raw, d: json.dumps({**d, "sod": ""}).encode(), "sod is empty"),
    (lambda raw, d: json.dumps({**d, "sod": None}).encode(), "sod must be a base64 string"),
])
def test_malformed_chip_file_is_refused_with_a_clear_message(chip: ChipData, make: object,
                                                             message: str) -> None:
    raw = chip_to_json(chip)
    bad = make(raw, _doc(chip))  # type: ignore[operator]
    with pytest.raises(IdentityError, match=message):
        chip_from_json(bad)


def test_chip_file_data_groups_are_base64_of_the_raw_bytes(chip: ChipData) -> None:
    doc = _doc(chip)
    groups = doc["data_groups"]
    assert isinstance(groups, dict)
    assert base64.b64decode(groups["DG13"]) == chip.data_groups[13]
