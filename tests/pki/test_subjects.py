"""From a holder's details to the subject DN, following the staff, seal and citizen profiles."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from conftest import CITIZEN, SEAL, STAFF
from kyso.errors import InvalidIdentifierError, InvalidSubjectError
from kyso.pki.profiles import load_catalogue
from kyso.pki.subjects import (
    CaSettings,
    ResolvedSubject,
    SubjectRequest,
    resolve,
    split_vietnamese_name,
)

CA = CaSettings(org="UBND tỉnh Thái Nguyên", province_slug="thai-nguyen",
                province_name="Thái Nguyên", email_domain="thainguyen.gov.vn",
                base_url="http://pki.thainguyen.gov.vn/")
TODAY = dt.date(2026, 11, 23)
CATALOGUE = load_catalogue()

OID_LABELS = {
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.TITLE: "T", NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN", NameOID.COMMON_NAME: "CN", NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.USER_ID: "UID", NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
}


def run(profile: str, **values: str) -> ResolvedSubject:
    issuer = CATALOGUE.get(profile).issuers[0]
    return resolve(CATALOGUE.get(profile), SubjectRequest.of(**values), CA, issuer, TODAY)


def pairs(name: x509.Name) -> list[tuple[str, str]]:
    out = []
    for rdn in name.rdns:
        assert len(rdn) == 1  # one attribute per RDN, never multi-valued
        attr = next(iter(rdn))
        out.append((OID_LABELS[attr.oid], str(attr.value)))
    return out


# --- exact DNs --------------------------------------------------------------------------------

def test_staff_subject_has_profile_order_and_exact_vietnamese_values() -> None:
    resolved = run("staff", **STAFF)
    assert pairs(resolved.name) == [
        ("C", "VN"),
        ("ST", "Thái Nguyên"),
        ("O", "UBND tỉnh Thái Nguyên"),
        ("OU", "Văn phòng UBND xã Phú Đình"),
        ("T", "Chuyên viên"),
        ("SN", "Nguyễn"),
        ("GN", "Văn An"),
        ("CN", "Nguyễn Văn An"),
        ("serialNumber", "IDCVN-019099012345"),
        ("UID", "CCCD:019099012345"),
    ]
    assert resolved.common_name == "Nguyễn Văn An"
    assert resolved.email == "an.nv@thainguyen.gov.vn"
    assert resolved.personal_id is not None
    assert resolved.personal_id.birth_year == 1999
    assert resolved.tax_code is None


def test_staff_subject_with_locality_puts_l_after_ou() -> None:
    resolved = run("staff", **STAFF, locality="Huyện Võ Nhai")
    labels = [label for label, _ in pairs(resolved.name)]
    assert labels[3:6] == ["OU", "L", "T"]
    assert ("L", "Huyện Võ Nhai") in pairs(resolved.name)


def test_vietnamese_values_are_utf8_strings_in_the_der() -> None:
    name = run("staff", **STAFF).name
    der = name.public_bytes()
    for text in ("Nguyễn Văn An", "Thái Nguyên", "Văn phòng UBND xã Phú Đình", "Chuyên viên"):
        assert unicodedata.normalize("NFC", text).encode("utf-8") in der
    for attr in name:
        if attr.oid == NameOID.COUNTRY_NAME:
            assert attr._type is _ASN1Type.PrintableString
        elif attr.oid == NameOID.COMMON_NAME:
            assert attr._type is _ASN1Type.UTF8String
    assert x509.Name.from_rfc4514_string(name.rfc4514_string()) == name


def test_seal_subject_carries_tax_and_budget_codes() -> None:
    resolved = run("seal", **SEAL)
    assert pairs(resolved.name) == [
        ("C", "VN"),
        ("ST", "Thái Nguyên"),
        ("O", "UBND tỉnh Thái Nguyên"),
        ("CN", "UBND xã Phú Đình"),
        ("organizationIdentifier", "NTRVN-4600100155"),
        ("UID", "MST:4600100155"),
        ("UID", "MNS:1234567"),
    ]
    assert resolved.tax_code == "4600100155"
    assert resolved.personal_id is None
    assert resolved.email is None


def test_seal_without_budget_code_has_one_uid() -> None:
    resolved = run("seal", name=SEAL["name"], tax_code=SEAL["tax_code"])
    uids = resolved.name.get_attributes_for_oid(NameOID.USER_ID)
    assert [u.value for u in uids] == ["MST:4600100155"]


def test_seal_branch_tax_code_is_normalised_in_the_subject() -> None:
    resolved = run("seal", name=SEAL["name"], tax_code="0100233488001")
    assert ("UID", "MST:0100233488-001") in pairs(resolved.name)
    assert ("organizationIdentifier", "NTRVN-0100233488-001") in pairs(resolved.name)


def test_citizen_subject_has_no_organisation_unit_or_title() -> None:
    resolved = run("citizen", **CITIZEN)
    assert pairs(resolved.name) == [
        ("C", "VN"),
        ("SN", "Trần"),
        ("GN", "Thị Bình"),
        ("CN", "Trần Thị Bình"),
        ("serialNumber", "IDCVN-033301000123"),
        ("UID", "CCCD:033301000123"),
    ]


def test_citizen_province_slug_becomes_st_in_vietnamese() -> None:
    resolved = run("citizen", **CITIZEN, province="hung-yen")
    assert ("ST", "Hưng Yên") in pairs(resolved.name)


def test_citizen_with_unknown_province_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="unknown province"):
        run("citizen", **CITIZEN, province="atlantis")


def test_citizen_email_may_be_in_any_domain() -> None:
    assert run("citizen", **CITIZEN, email="binh@gmail.com").email == "binh@gmail.com"


# --- normalisation ----------------------------------------------------------------------------

def test_decomposed_input_is_stored_composed() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn An")
    assert nfd != "Nguyễn Văn An"
    resolved = run("staff", **{**STAFF, "name": nfd})
    assert resolved.common_name == unicodedata.normalize("NFC", "Nguyễn Văn An")
    assert ("SN", "Nguyễn") in pairs(resolved.name)


def test_runs_of_whitespace_are_collapsed() -> None:
    resolved = run("staff", **{**STAFF, "name": "  Nguyễn   Văn  An "})
    assert resolved.common_name == "Nguyễn Văn An"


def test_email_domain_is_lowercased() -> None:
    resolved = run("staff", **{**STAFF, "email": "An.NV@ThaiNguyen.GOV.VN"})
    assert resolved.email == "An.NV@thainguyen.gov.vn"


# --- surname / given name ---------------------------------------------------------------------

def test_split_vietnamese_name_puts_family_name_first() -> None:
    assert split_vietnamese_name("Nguyễn Văn An") == ("Nguyễn", "Văn An")
    assert split_vietnamese_name("Lê Bình") == ("Lê", "Bình")


def test_single_word_name_cannot_be_split() -> None:
    with pytest.raises(InvalidSubjectError, match="family name and a given name"):
        split_vietnamese_name("An")
    with pytest.raises(InvalidSubjectError, match="family name"):
        run("citizen", name="An", id=CITIZEN["id"])


def test_explicit_surname_and_given_name_are_used() -> None:
    resolved = run("citizen", name="Tôn Nữ Thị Hà", surname="Tôn Nữ", given_name="Thị Hà",
                   id=CITIZEN["id"])
    assert ("SN", "Tôn Nữ") in pairs(resolved.name)
    assert ("GN", "Thị Hà") in pairs(resolved.name)


def test_single_word_name_is_fine_with_explicit_surname_and_given_name() -> None:
    resolved = run("citizen", name="Hà", surname="Tôn Nữ", given_name="Hà", id=CITIZEN["id"])
    assert resolved.common_name == "Hà"


def test_compound_surname_alone_leaves_the_rest_as_given_name() -> None:
    resolved = run("citizen", name="Tôn Nữ Thị Hà", surname="Tôn Nữ", id=CITIZEN["id"])
    assert ("SN", "Tôn Nữ") in pairs(resolved.name)
    assert ("GN", "Thị Hà") in pairs(resolved.name)


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["name", "id", "title", "unit", "email"])
def test_staff_missing_a_required_input_is_refused(missing: str) -> None:
    values = {k: v for k, v in STAFF.items() if k != missing}
    with pytest.raises(InvalidSubjectError, match=f"requires .*{missing}"):
        run("staff", **values)


def test_seal_without_tax_code_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="requires tax_code"):
        run("seal", name=SEAL["name"])


@pytest.mark.parametrize(
    ("profile", "values", "field"),
    [
        ("citizen", {**CITIZEN, "title": "Chuyên viên"}, "title"),
        ("citizen", {**CITIZEN, "unit": "UBND"}, "unit"),
        ("seal", {**SEAL, "id": STAFF["id"]}, "id"),
        ("staff", {**STAFF, "tax_code": SEAL["tax_code"]}, "tax_code"),
    ],
)
def test_input_not_allowed_by_the_profile_is_refused(
    profile: str, values: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidSubjectError, match=f"does not take {field}"):
        run(profile, **values)


def test_unknown_input_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match=r"unknown subject field.*nickname"):
        resolve(CATALOGUE.get("citizen"), SubjectRequest({**CITIZEN, "nickname": "Bi"}), CA,
                "citizen", TODAY)


@pytest.mark.parametrize(
    "email", ["an.nv@hungyen.gov.vn", "an.nv@gmail.com", "an.nv@evilthainguyen.gov.vn"]
)
def test_staff_email_outside_the_ca_domain_is_refused(email: str) -> None:
    with pytest.raises(InvalidSubjectError, match=r"outside the CA's domain thainguyen\.gov\.vn"):
        run("staff", **{**STAFF, "email": email})


def test_staff_email_in_a_subdomain_is_accepted() -> None:
    resolved = run("staff", **{**STAFF, "email": "an.nv@phudinh.thainguyen.gov.vn"})
    assert resolved.email == "an.nv@phudinh.thainguyen.gov.vn"


def test_seal_email_outside_the_ca_domain_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="outside the CA's domain"):
        run("seal", **SEAL, email="vanthu@gmail.com")


def test_malformed_email_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="e-mail"):
        run("staff", **{**STAFF, "email": "an.nv at thainguyen.gov.vn"})


def test_vietnamese_agency_name_under_64_characters_is_accepted() -> None:
    # 56 characters but 71 UTF-8 bytes: RFC 5280's ub-common-name counts characters.
    name = "Ủy ban nhân dân phường Đồng Quang, thành phố Thái Nguyên"
    assert len(name) < 64 < len(name.encode("utf-8"))
    assert run("seal", name=name, tax_code=SEAL["tax_code"]).common_name == name


def test_common_name_of_64_characters_is_accepted() -> None:
    name = "Nguyễn " + "Đ" * 57
    assert len(name) == 64
    assert run("citizen", **{**CITIZEN, "name": name}).common_name == name


def test_over_long_common_name_is_refused() -> None:
    name = "Nguyễn " + "Đ" * 58
    with pytest.raises(InvalidSubjectError, match="CN is 65 characters; at most 64"):
        run("citizen", **{**CITIZEN, "name": name})


def test_over_long_unit_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="OU is 65 characters"):
        run("staff", **{**STAFF, "unit": "U" * 65})


@pytest.mark.parametrize(
    "bad",
    ["Nguyễn\x00Văn An", "Nguyễn\tVăn An", "Nguyễn\nVăn An", "\x1b[31mNguyễn Văn An",
     "Nguyễn\u200bVăn An", "Nguyễn Văn An\u202e", "Nguyễn\x7fVăn An", "Nguyễn\ufeffVăn An"],
)
def test_control_or_invisible_characters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSubjectError, match="control or invisible characters"):
        run("staff", **{**STAFF, "name": bad})


def test_control_characters_in_other_fields_are_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="title contains control"):
        run("staff", **{**STAFF, "title": "Chuyên\x07viên"})


def test_whitespace_only_value_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="title is empty"):
        resolve(CATALOGUE.get("staff"), SubjectRequest({**STAFF, "title": "   "}), CA, "staff",
                TODAY)


def test_non_text_value_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="unit must be text"):
        resolve(CATALOGUE.get("staff"), SubjectRequest({**STAFF, "unit": 7}), CA,  # type: ignore[dict-item]
                "staff", TODAY)


def test_dob_that_is_not_iso_is_refused() -> None:
    with pytest.raises(InvalidSubjectError, match="YYYY-MM-DD"):
        run("staff", **{**STAFF, "dob": "02/04/1999"})


def test_dob_in_another_year_than_the_id_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="birth year 1999") as exc:
        run("staff", **{**STAFF, "dob": "1998-04-02"})
    assert STAFF["id"] not in str(exc.value)


def test_id_with_birth_year_after_today_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="in the future"):
        run("citizen", **{**CITIZEN, "id": "033327000123"})


def test_invalid_tax_code_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="check digit"):
        run("seal", **{**SEAL, "tax_code": "4600100150"})


# --- no raw ID numbers in reprs ---------------------------------------------------------------

def test_request_and_result_reprs_hide_the_id_number() -> None:
    request = SubjectRequest.of(**STAFF)
    resolved = run("staff", **STAFF)
    for text in (repr(request), repr(resolved), str(resolved)):
        assert STAFF["id"] not in text


def test_subject_request_of_drops_empty_and_none_values() -> None:
    request = SubjectRequest.of(name="Trần Thị Bình", email="", locality=None)
    assert dict(request.values) == {"name": "Trần Thị Bình"}
