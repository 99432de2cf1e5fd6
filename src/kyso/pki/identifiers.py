"""Vietnamese identifiers: personal ID numbers, tax codes, budget-unit codes, provinces.

Pure validation; nothing here logs, and error messages never repeat a raw ID number.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

from kyso.errors import InvalidIdentifierError

# Province codes of the personal identification number (Circular 07/2016/TT-BCA as amended):
# the 63 pre-2025 codes, which stay valid after the 2025 merger.
PROVINCES: dict[str, str] = {
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn",
    "008": "Tuyên Quang", "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu",
    "014": "Sơn La", "015": "Yên Bái", "017": "Hòa Bình", "019": "Thái Nguyên",
    "020": "Lạng Sơn", "022": "Quảng Ninh", "024": "Bắc Giang", "025": "Phú Thọ",
    "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương", "031": "Hải Phòng",
    "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định",
    "037": "Ninh Bình", "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh",
    "044": "Quảng Bình", "045": "Quảng Trị", "046": "Thừa Thiên Huế", "048": "Đà Nẵng",
    "049": "Quảng Nam", "051": "Quảng Ngãi", "052": "Bình Định", "054": "Phú Yên",
    "056": "Khánh Hòa", "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum",
    "064": "Gia Lai", "066": "Đắk Lắk", "067": "Đắk Nông", "068": "Lâm Đồng",
    "070": "Bình Phước", "072": "Tây Ninh", "074": "Bình Dương", "075": "Đồng Nai",
    "077": "Bà Rịa - Vũng Tàu", "079": "Hồ Chí Minh", "080": "Long An", "082": "Tiền Giang",
    "083": "Bến Tre", "084": "Trà Vinh", "086": "Vĩnh Long", "087": "Đồng Tháp",
    "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ", "093": "Hậu Giang",
    "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
}


def ascii_fold(text: str) -> str:
    """Remove Vietnamese diacritics (đ → d) for slugs and comparisons."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def province_slug(name: str) -> str:
    """``Thái Nguyên`` → ``thai-nguyen``."""
    return re.sub(r"[^a-z0-9]+", "-", ascii_fold(name).lower()).strip("-")


PROVINCE_BY_SLUG: dict[str, str] = {province_slug(n): n for n in PROVINCES.values()}
PROVINCE_BY_SLUG["ho-chi-minh-city"] = "Hồ Chí Minh"
PROVINCE_BY_SLUG["tp-ho-chi-minh"] = "Hồ Chí Minh"


def province_name(slug: str) -> str:
    """The Vietnamese name of a province given as a slug (``thai-nguyen``)."""
    try:
        return PROVINCE_BY_SLUG[slug.strip().lower()]
    except KeyError:
        raise InvalidIdentifierError(
            f"unknown province {slug!r}: use a slug such as thai-nguyen, hung-yen, tay-ninh"
        ) from None


class Sex(Enum):
    MALE = "male"
    FEMALE = "female"


@dataclass(frozen=True)
class PersonalId:
    """A validated 12-digit personal identification number (số định danh cá nhân)."""

    number: str
    province_code: str
    sex: Sex
    birth_year: int

    @property
    def province(self) -> str:
        return PROVINCES[self.province_code]

    @property
    def masked(self) -> str:
        return mask_id(self.number)

    def __repr__(self) -> str:  # never show the raw number, even in debug output
        return f"PersonalId({self.masked})"

    __str__ = __repr__


def mask_id(number: str) -> str:
    """``019099012345`` → ``019******345``: the hint that may appear in logs and events."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 6) + number[-3:]


_ASCII_DIGITS = re.compile(r"[0-9]+")


def _ascii_digits(value: str, what: str) -> str:
    value = value.strip()
    if not _ASCII_DIGITS.fullmatch(value):
        raise InvalidIdentifierError(f"{what} must contain ASCII digits only")
    return value


def parse_personal_id(
    value: str,
    *,
    dob: dt.date | None = None,
    sex: Sex | None = None,
    today: dt.date | None = None,
) -> PersonalId:
    """Validate a personal ID: province code, sex/century digit, birth year.

    With ``dob`` the century and year must match it; with ``today`` the birth year must not be
    in the future. Messages show only the masked number.
    """
    if not isinstance(value, str):
        raise InvalidIdentifierError("personal ID number must be text")
    digits = _ascii_digits(value, "personal ID number")
    if len(digits) != 12:
        raise InvalidIdentifierError(
            f"personal ID number must have 12 digits, got {len(digits)}"
        )
    code = digits[:3]
    if code not in PROVINCES:
        raise InvalidIdentifierError(
            f"personal ID number {mask_id(digits)}: {code} is not a province code"
        )
    century_digit = int(digits[3])
    century = 1900 + 100 * (century_digit // 2)
    person_sex = Sex.MALE if century_digit % 2 == 0 else Sex.FEMALE
    year = century + int(digits[4:6])
    if dob is not None and dob.year != year:
        raise InvalidIdentifierError(
            f"personal ID number {mask_id(digits)} encodes birth year {year}, "
            f"but the date of birth is in {dob.year}"
        )
    if sex is not None and sex is not person_sex:
        raise InvalidIdentifierError(
            f"personal ID number {mask_id(digits)} encodes sex {person_sex.value}, "
            f"but {sex.value} was given"
        )
    if today is not None and year > today.year:
        raise InvalidIdentifierError(
            f"personal ID number {mask_id(digits)} encodes birth year {year}, in the future"
        )
    if dob is not None and today is not None and dob > today:
        raise InvalidIdentifierError("date of birth is in the future")
    return PersonalId(number=digits, province_code=code, sex=person_sex, birth_year=year)


_TAX_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


def tax_code_check_digit(first_nine: str) -> str:
    total = sum(w * int(d) for w, d in zip(_TAX_WEIGHTS, first_nine, strict=True))
    return str(10 - total % 11)


def parse_tax_code(value: str) -> str:
    """Validate a tax code (mã số thuế): 10 digits, or 10-3 for a branch. Returns it normalised."""
    if not isinstance(value, str):
        raise InvalidIdentifierError("tax code must be text")
    text = value.strip()
    match = re.fullmatch(r"([0-9]{10})(?:-?([0-9]{3}))?", text)
    if not match:
        raise InvalidIdentifierError(  # the value is not repeated: it may be a personal ID
            f"tax code must be 10 digits, or 10 digits, '-' and 3 for a branch "
            f"(got {len(text)} characters)"
        )
    main, branch = match.group(1), match.group(2)
    if main[2:9] == "0000000":
        raise InvalidIdentifierError(f"tax code {main}: sequence number 0000000 is not issued")
    if tax_code_check_digit(main[:9]) != main[9]:
        raise InvalidIdentifierError(f"tax code {main}: check digit is wrong")
    if branch is not None:
        if branch == "000":
            raise InvalidIdentifierError(f"tax code {main}-{branch}: branch 000 is not issued")
        return f"{main}-{branch}"
    return main


def parse_budget_code(value: str) -> str:
    """Validate a budget-unit code (mã đơn vị quan hệ ngân sách): 7 digits."""
    if not isinstance(value, str):
        raise InvalidIdentifierError("budget-unit code must be text")
    text = value.strip()
    if not re.fullmatch(r"[0-9]{7}", text) or text == "0000000":
        raise InvalidIdentifierError(
            f"budget-unit code must be 7 digits (mã đơn vị quan hệ ngân sách), got {len(text)} "
            "characters"
        )
    return text


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+")


def parse_email(value: str) -> str:
    text = value.strip()
    if len(text) > 254 or not _EMAIL.fullmatch(text):
        raise InvalidIdentifierError("e-mail address is not valid")  # value not echoed: may be an ID
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def email_in_domain(email: str, domain: str) -> bool:
    """Does the address fall under ``domain``?

    ``.example.vn`` means any subdomain only (RFC 5280 §4.2.1.10); ``example.vn`` means that
    host or any subdomain — the union of the two permitted subtrees the staff CA carries.
    """
    host = email.rsplit("@", 1)[1].lower()
    domain = domain.lower()
    if domain.startswith("."):
        return host.endswith(domain)
    return host == domain or host.endswith("." + domain)
