"""Personal ID numbers, tax codes, budget-unit codes, provinces and e-mail domains."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kyso.errors import InvalidIdentifierError, InvalidSubjectError
from kyso.pki.identifiers import (
    PROVINCE_BY_SLUG,
    PROVINCES,
    PersonalId,
    Sex,
    ascii_fold,
    email_in_domain,
    mask_id,
    parse_budget_code,
    parse_email,
    parse_personal_id,
    parse_tax_code,
    province_name,
    province_slug,
    tax_code_check_digit,
)

STAFF_ID = "019099012345"  # Thái Nguyên, male, born 1999
CITIZEN_ID = "033301000123"  # Hưng Yên, female, born 2001
TODAY = dt.date(2026, 11, 23)


# --- personal ID: structure -------------------------------------------------------------------

def test_valid_personal_id_yields_province_sex_and_birth_year() -> None:
    pid = parse_personal_id(STAFF_ID)
    assert pid.number == STAFF_ID
    assert pid.province_code == "019"
    assert pid.province == "Thái Nguyên"
    assert pid.sex is Sex.MALE
    assert pid.birth_year == 1999


def test_female_born_in_the_2000s_is_decoded_from_digit_three() -> None:
    pid = parse_personal_id(CITIZEN_ID)
    assert pid.province == "Hưng Yên"
    assert pid.sex is Sex.FEMALE
    assert pid.birth_year == 2001


@pytest.mark.parametrize(
    ("digit", "sex", "year"),
    [
        ("0", Sex.MALE, 1985),
        ("1", Sex.FEMALE, 1985),
        ("2", Sex.MALE, 2085),
        ("3", Sex.FEMALE, 2085),
        ("4", Sex.MALE, 2185),
        ("5", Sex.FEMALE, 2185),
    ],
)
def test_century_and_sex_digit_follows_circular_07(digit: str, sex: Sex, year: int) -> None:
    pid = parse_personal_id(f"001{digit}85123456")
    assert pid.sex is sex
    assert pid.birth_year == year


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_personal_id(f"  {STAFF_ID}\n").number == STAFF_ID


@pytest.mark.parametrize("code", ["000", "003", "005", "099", "100", "999"])
def test_personal_id_with_unknown_province_code_is_refused(code: str) -> None:
    number = f"{code}099012345"
    with pytest.raises(InvalidIdentifierError, match="province code") as exc:
        parse_personal_id(number)
    assert number not in str(exc.value)


def test_all_63_pre_merger_province_codes_are_known() -> None:
    assert len(PROVINCES) == 63
    assert all(len(code) == 3 and code.isdigit() for code in PROVINCES)
    for code in ("001", "019", "033", "072", "079"):
        parse_personal_id(f"{code}099012345")


@pytest.mark.parametrize("value", ["01909901234", "0190990123456", "", "019"])
def test_personal_id_of_wrong_length_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        parse_personal_id(value)


def test_wrong_length_message_states_the_digit_count() -> None:
    with pytest.raises(InvalidIdentifierError, match="12 digits, got 13"):
        parse_personal_id("0190990123456")


@pytest.mark.parametrize(
    "value",
    [
        "01909901234\uff10",  # full-width zero
        "\uff10\uff11\uff19099012345",  # full-width province code
        "019099012\u0663\u0664\u0665",  # Arabic-Indic digits
        "019099012\u0b69\u0b6a\u0b6b",  # Oriya digits
        "01909901234\u00b2",  # superscript two (str.isdigit() is True)
        "019 099 012 345",
        "019-099-012-345",
        "01909901234a",
    ],
)
def test_personal_id_with_non_ascii_digits_or_separators_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="ASCII digits"):
        parse_personal_id(value)


def test_personal_id_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="must be text"):
        parse_personal_id(19099012345)  # type: ignore[arg-type]


def test_identifier_errors_are_subject_errors() -> None:
    assert issubclass(InvalidIdentifierError, InvalidSubjectError)


# --- personal ID: consistency with date of birth, sex and today ------------------------------

def test_personal_id_with_dob_in_the_same_year_is_accepted() -> None:
    pid = parse_personal_id(STAFF_ID, dob=dt.date(1999, 12, 31), today=TODAY)
    assert pid.birth_year == 1999


def test_personal_id_with_dob_in_another_year_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match=r"1999.*1998") as exc:
        parse_personal_id(STAFF_ID, dob=dt.date(1998, 4, 2))
    assert STAFF_ID not in str(exc.value)
    assert "019******345" in str(exc.value)


def test_personal_id_with_dob_in_another_century_is_refused() -> None:
    # Same two-digit year, but digit 0 means the 1900s.
    with pytest.raises(InvalidIdentifierError, match="birth year 1999"):
        parse_personal_id(STAFF_ID, dob=dt.date(2099, 4, 2))


def test_personal_id_with_other_sex_than_given_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="sex male") as exc:
        parse_personal_id(STAFF_ID, sex=Sex.FEMALE)
    assert STAFF_ID not in str(exc.value)
    assert parse_personal_id(STAFF_ID, sex=Sex.MALE).sex is Sex.MALE


def test_personal_id_with_birth_year_in_the_future_is_refused() -> None:
    number = "001227012345"  # male, born 2027
    assert parse_personal_id(number).birth_year == 2027
    with pytest.raises(InvalidIdentifierError, match="in the future") as exc:
        parse_personal_id(number, today=TODAY)
    assert number not in str(exc.value)


def test_personal_id_born_this_year_is_accepted() -> None:
    assert parse_personal_id("001226012345", today=TODAY).birth_year == 2026


def test_personal_id_of_the_22nd_century_is_refused_today() -> None:
    with pytest.raises(InvalidIdentifierError, match="in the future"):
        parse_personal_id("001400012345", today=TODAY)


def test_date_of_birth_later_this_year_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="date of birth is in the future"):
        parse_personal_id("001226012345", dob=dt.date(2026, 12, 1), today=TODAY)


# --- masking ----------------------------------------------------------------------------------

def test_mask_keeps_three_digits_each_side() -> None:
    assert mask_id(STAFF_ID) == "019******345"
    assert mask_id("123456789") == "123***789"


def test_mask_of_short_value_hides_everything() -> None:
    assert mask_id("123456") == "******"
    assert mask_id("") == ""


def test_personal_id_repr_and_str_never_show_the_raw_number() -> None:
    pid = parse_personal_id(STAFF_ID)
    for text in (repr(pid), str(pid), f"{pid}", repr([pid]), repr({"id": pid})):
        assert STAFF_ID not in text
        assert "019******345" in text
    assert pid.masked == "019******345"


def test_personal_id_is_a_frozen_value() -> None:
    pid = parse_personal_id(STAFF_ID)
    with pytest.raises(AttributeError):
        pid.number = "001099012345"  # type: ignore[misc]
    assert pid == PersonalId(STAFF_ID, "019", Sex.MALE, 1999)


# --- personal ID: properties ------------------------------------------------------------------

@st.composite
def valid_ids(draw: st.DrawFn) -> tuple[str, dt.date, Sex]:
    code = draw(st.sampled_from(sorted(PROVINCES)))
    digit = draw(st.integers(0, 5))
    yy = draw(st.integers(0, 99))
    rest = draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    year = 1900 + 100 * (digit // 2) + yy
    dob = draw(st.dates(dt.date(year, 1, 1), dt.date(year, 12, 31)))
    sex = Sex.MALE if digit % 2 == 0 else Sex.FEMALE
    return f"{code}{digit}{yy:02d}{rest}", dob, sex


@given(valid_ids())
def test_any_valid_generated_id_round_trips(case: tuple[str, dt.date, Sex]) -> None:
    number, dob, sex = case
    pid = parse_personal_id(number, dob=dob, sex=sex)
    assert pid.number == number
    assert pid.province_code == number[:3]
    assert pid.birth_year == dob.year
    assert pid.sex is sex
    assert number not in repr(pid)
    assert parse_personal_id(f" {number} ") == pid


@given(valid_ids(), st.integers(1, 150))
def test_errors_for_a_wrong_dob_never_contain_the_raw_number(
    case: tuple[str, dt.date, Sex], shift: int
) -> None:
    number, dob, sex = case
    wrong = dt.date(dob.year - shift, dob.month, 1)
    other_sex = Sex.FEMALE if sex is Sex.MALE else Sex.MALE
    for kwargs in ({"dob": wrong, "sex": sex}, {"dob": dob, "sex": other_sex}):
        with pytest.raises(InvalidIdentifierError) as exc:
            parse_personal_id(number, **kwargs)  # type: ignore[arg-type]
        assert number not in str(exc.value)
        assert number not in repr(exc.value)


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_errors_for_any_twelve_digits_never_contain_them(number: str) -> None:
    message = ""
    try:
        pid = parse_personal_id(number, today=TODAY)
    except InvalidIdentifierError as exc:
        message = str(exc)
    else:
        assert pid.birth_year <= TODAY.year
        assert pid.province_code in PROVINCES
    assert number not in message


@given(st.text(alphabet="0123456789", min_size=7, max_size=20))
def test_mask_never_contains_the_raw_value(number: str) -> None:
    masked = mask_id(number)
    assert len(masked) == len(number)
    assert masked != number
    assert masked[3:-3] == "*" * (len(number) - 6)


# --- tax code (mã số thuế) --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0100233488", "0314409058", "4600100155"])
def test_tax_code_with_correct_check_digit_is_accepted(value: str) -> None:
    assert parse_tax_code(value) == value


def test_tax_code_with_wrong_check_digit_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="check digit"):
        parse_tax_code("0100233480")


def test_tax_code_check_digit_matches_stdnum_vectors() -> None:
    assert tax_code_check_digit("010023348") == "8"
    assert tax_code_check_digit("031440905") == "8"


def test_branch_tax_code_is_normalised_with_a_dash() -> None:
    assert parse_tax_code("0100233488-001") == "0100233488-001"
    assert parse_tax_code("0100233488001") == "0100233488-001"
    assert parse_tax_code(" 0314409058-002 ") == "0314409058-002"


def test_branch_tax_code_of_invalid_parent_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="check digit"):
        parse_tax_code("0100233480-001")


@pytest.mark.parametrize("value", ["0100233488-000", "0100233488000"])
def test_branch_000_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="branch 000"):
        parse_tax_code(value)


def test_tax_code_with_sequence_zero_is_refused() -> None:
    # 01 + 0000000 + its correct check digit: the sequence itself is never issued.
    number = "010000000" + tax_code_check_digit("010000000")
    with pytest.raises(InvalidIdentifierError, match="0000000"):
        parse_tax_code(number)


@pytest.mark.parametrize(
    "value",
    ["", "010023348", "01002334888", "0100233488-01", "0100233488-0001", "010023348A",
     "0100233488/001", "01002334８8", "0100 233 488"],
)
def test_malformed_tax_code_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        parse_tax_code(value)


def test_personal_id_typed_as_a_tax_code_is_not_repeated_in_the_error() -> None:
    # errors.py: messages never carry raw ID numbers, even when one lands in the wrong field.
    with pytest.raises(InvalidIdentifierError) as exc:
        parse_tax_code(STAFF_ID)
    assert STAFF_ID not in str(exc.value)


def test_tax_code_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError, match="must be text"):
        parse_tax_code(100233488)  # type: ignore[arg-type]


def test_prefix_whose_check_value_is_ten_has_no_valid_tax_code() -> None:
    # 10 - total % 11 is "10" when total % 11 == 0: no single digit completes the code.
    prefix = next(
        p for p in (f"01{n:07d}" for n in range(1, 2000))
        if sum(w * int(d) for w, d in zip((31, 29, 23, 19, 17, 13, 7, 5, 3), p, strict=True))
        % 11 == 0
    )
    for last in "0123456789":
        with pytest.raises(InvalidIdentifierError):
            parse_tax_code(prefix + last)


@st.composite
def valid_tax_codes(draw: st.DrawFn) -> str:
    prefix = draw(st.text(alphabet="0123456789", min_size=9, max_size=9)
                  .filter(lambda p: p[2:9] != "0000000"))
    check = tax_code_check_digit(prefix)
    if len(check) != 1:
        prefix = prefix[:8] + str((int(prefix[8]) + 1) % 10)
        check = tax_code_check_digit(prefix)
    return prefix + check


@given(valid_tax_codes(), st.integers(0, 8), st.integers(1, 9))
def test_any_single_digit_typo_in_a_tax_code_is_detected(
    code: str, position: int, delta: int
) -> None:
    assume(code[2:9] != "0000000")
    assert parse_tax_code(code) == code
    typo = code[:position] + str((int(code[position]) + delta) % 10) + code[position + 1:]
    with pytest.raises(InvalidIdentifierError):
        parse_tax_code(typo)


# --- budget-unit code (mã đơn vị quan hệ ngân sách) ------------------------------------------

def test_budget_code_of_seven_digits_is_accepted() -> None:
    assert parse_budget_code("1234567") == "1234567"
    assert parse_budget_code(" 1234567 ") == "1234567"


@pytest.mark.parametrize(
    "value", ["", "123456", "12345678", "0000000", "12a4567", "123 4567", "123456\uff17"]
)
def test_malformed_budget_code_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="7 digits"):
        parse_budget_code(value)


def test_budget_code_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError):
        parse_budget_code(1234567)  # type: ignore[arg-type]


# --- provinces --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Thái Nguyên", "thai-nguyen"),
        ("Hưng Yên", "hung-yen"),
        ("Tây Ninh", "tay-ninh"),
        ("Đắk Lắk", "dak-lak"),
        ("Bà Rịa - Vũng Tàu", "ba-ria-vung-tau"),
        ("Thừa Thiên Huế", "thua-thien-hue"),
        ("Hồ Chí Minh", "ho-chi-minh"),
    ],
)
def test_province_slug_folds_diacritics_and_joins_with_dashes(name: str, slug: str) -> None:
    assert province_slug(name) == slug
    assert province_name(slug) == name


def test_every_province_name_round_trips_through_its_slug() -> None:
    slugs = {province_slug(n) for n in PROVINCES.values()}
    assert len(slugs) == len(PROVINCES)  # no two provinces share a slug
    for name in PROVINCES.values():
        assert province_name(province_slug(name)) == name
    assert all(s == s.lower() and " " not in s for s in PROVINCE_BY_SLUG)


def test_province_slug_lookup_ignores_case_and_whitespace() -> None:
    assert province_name(" Thai-Nguyen ") == "Thái Nguyên"


def test_ho_chi_minh_city_has_aliases() -> None:
    assert province_name("ho-chi-minh-city") == "Hồ Chí Minh"
    assert province_name("tp-ho-chi-minh") == "Hồ Chí Minh"


@pytest.mark.parametrize("slug", ["thai nguyen", "Thái Nguyên", "atlantis", ""])
def test_unknown_province_slug_is_refused(slug: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="unknown province"):
        province_name(slug)


def test_ascii_fold_handles_d_with_stroke() -> None:
    assert ascii_fold("Đặng Đình Đức") == "Dang Dinh Duc"


# --- e-mail -----------------------------------------------------------------------------------

def test_email_domain_is_lowercased_but_local_part_kept() -> None:
    assert parse_email(" An.NV@ThaiNguyen.GOV.vn ") == "An.NV@thainguyen.gov.vn"


@pytest.mark.parametrize(
    "value",
    ["an.nv", "an.nv@", "@thainguyen.gov.vn", "an nv@thainguyen.gov.vn", "an@localhost",
     "an@-bad.gov.vn", "an@thainguyên.gov.vn", "a" * 65 + "@thainguyen.gov.vn",
     "a@" + "b" * 250 + ".vn"],
)
def test_malformed_email_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="e-mail"):
        parse_email(value)


@pytest.mark.parametrize(
    "email",
    ["an@thainguyen.gov.vn", "an@xa-phudinh.thainguyen.gov.vn", "an@a.b.thainguyen.gov.vn",
     "an@THAINGUYEN.GOV.VN"],
)
def test_email_at_the_domain_or_a_subdomain_matches(email: str) -> None:
    assert email_in_domain(email, "thainguyen.gov.vn")
    assert email_in_domain(email, "ThaiNguyen.gov.vn")


@pytest.mark.parametrize(
    "email",
    ["an@evilthainguyen.gov.vn", "an@thainguyen.gov.vn.evil.com", "an@hungyen.gov.vn",
     "an@gov.vn", "thainguyen.gov.vn@evil.com"],
)
def test_email_outside_the_domain_does_not_match(email: str) -> None:
    assert not email_in_domain(email, "thainguyen.gov.vn")


def test_leading_dot_domain_matches_subdomains_only_as_in_rfc_5280() -> None:
    # RFC 5280 §4.2.1.10: ".example.com" is any host under example.com, not example.com itself.
    assert email_in_domain("an@xa.thainguyen.gov.vn", ".thainguyen.gov.vn")
    assert not email_in_domain("an@thainguyen.gov.vn", ".thainguyen.gov.vn")
    assert not email_in_domain("an@evilthainguyen.gov.vn", ".thainguyen.gov.vn")
