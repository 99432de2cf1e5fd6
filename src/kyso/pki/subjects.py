"""From a holder's details to a validated subject DN and SAN, following a profile.

Pure: takes the request, the profile, the CA's settings and today's date; touches nothing else.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from kyso.errors import InvalidSubjectError
from kyso.pki.identifiers import (
    PersonalId,
    email_in_domain,
    parse_budget_code,
    parse_email,
    parse_personal_id,
    parse_tax_code,
    province_name,
)
from kyso.pki.profiles import (
    ATTRIBUTE_MAX_LENGTH,
    ATTRIBUTES,
    INPUTS,
    Profile,
    Requirement,
    render,
)


@dataclass(frozen=True)
class CaSettings:
    """What a CA contributes to every subject and URL it writes."""

    org: str
    province_slug: str
    province_name: str
    email_domain: str
    base_url: str

    def context(self, issuer: str) -> dict[str, str]:
        return {
            "org": self.org,
            "province_name": self.province_name,
            "email_domain": self.email_domain,
            "base_url": self.base_url.rstrip("/"),
            "issuer": issuer,
        }


@dataclass(frozen=True)
class SubjectRequest:
    """The holder's details as an admin typed them (all text; validated by :func:`resolve`)."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, **values: str | None) -> SubjectRequest:
        return cls({k: v for k, v in values.items() if v is not None and v != ""})

    def __repr__(self) -> str:  # raw ID numbers stay out of reprs and tracebacks
        return f"SubjectRequest(fields={sorted(self.values)})"


@dataclass(frozen=True)
class ResolvedSubject:
    name: x509.Name
    email: str | None
    personal_id: PersonalId | None
    tax_code: str | None
    common_name: str

    def __repr__(self) -> str:
        return f"ResolvedSubject(cn={self.common_name!r})"


def name_attribute(attr_type: str, value: str) -> x509.NameAttribute[str]:
    """An attribute whose length bound is checked in characters, as RFC 5280's ub-* bounds are.

    cryptography counts UTF-8 bytes for CN, which would refuse ordinary Vietnamese agency
    names of 40–64 characters; the caller has already checked the character bound.
    """
    oid = ATTRIBUTES[attr_type]
    if attr_type == "C":
        return x509.NameAttribute(oid, value)
    return unchecked_attribute(oid, value)


def unchecked_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    # Its one possible warning (byte length) is filtered in kyso.pki.__init__.
    return x509.NameAttribute(oid, value, _validate=False)


def _clean_text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidSubjectError(f"{key} must be text")
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text):
        raise InvalidSubjectError(f"{key} contains control or invisible characters")
    if not text:
        raise InvalidSubjectError(f"{key} is empty")
    return " ".join(text.split())


def split_vietnamese_name(full: str) -> tuple[str, str]:
    """``Nguyễn Văn An`` → (``Nguyễn``, ``Văn An``): family name first, given names after."""
    parts = full.split()
    if len(parts) < 2:
        raise InvalidSubjectError(
            f"name {full!r} needs a family name and a given name (or pass --surname/--given-name)"
        )
    return parts[0], " ".join(parts[1:])


def resolve(
    profile: Profile,
    request: SubjectRequest,
    ca: CaSettings,
    issuer: str,
    today: dt.date,
) -> ResolvedSubject:
    raw = dict(request.values)
    unknown = set(raw) - set(INPUTS)
    if unknown:
        raise InvalidSubjectError(f"unknown subject field(s): {', '.join(sorted(unknown))}")
    not_allowed = set(raw) - profile.allowed_inputs
    if not_allowed:
        raise InvalidSubjectError(
            f"profile {profile.name} does not take {', '.join(sorted(not_allowed))}"
        )
    missing = profile.required_inputs - set(raw)
    if missing:
        raise InvalidSubjectError(
            f"profile {profile.name} requires {', '.join(sorted(missing))}"
        )
    values = {k: _clean_text(k, v) for k, v in raw.items()}

    dob = None
    if "dob" in values:
        try:
            dob = dt.date.fromisoformat(values["dob"])
        except ValueError:
            raise InvalidSubjectError("date of birth must be YYYY-MM-DD") from None
    personal_id = None
    if "id" in values:
        personal_id = parse_personal_id(values["id"], dob=dob, today=today)
        values["id"] = personal_id.number
    tax_code = None
    if "tax_code" in values:
        tax_code = parse_tax_code(values["tax_code"])
        values["tax_code"] = tax_code
    if "budget_code" in values:
        values["budget_code"] = parse_budget_code(values["budget_code"])
    if "province" in values:
        values["province"] = province_name(values["province"])
    email = None
    if "email" in values:
        email = parse_email(values["email"])
        values["email"] = email
    if "name" in values and ({"surname", "given_name"} & profile.allowed_inputs):
        surname, given = (values.get("surname"), values.get("given_name"))
        full = values["name"]
        if surname is not None and given is None:
            rest = full[len(surname):].strip() if full.startswith(surname + " ") else ""
            if not rest:
                raise InvalidSubjectError("--surname must be the start of --name; "
                                          "give --given-name too")
            values["given_name"] = rest
        elif given is not None and surname is None:
            head = full[: -len(given)].strip() if full.endswith(" " + given) else ""
            if not head:
                raise InvalidSubjectError("--given-name must be the end of --name; "
                                          "give --surname too")
            values["surname"] = head
        elif surname is None and given is None:
            values["surname"], values["given_name"] = split_vietnamese_name(full)

    context = ca.context(issuer)
    if profile.san_email is Requirement.REQUIRED and email is None:
        raise InvalidSubjectError(f"profile {profile.name} requires an e-mail address")
    if profile.san_email is Requirement.FORBIDDEN and email is not None:
        raise InvalidSubjectError(f"profile {profile.name} does not allow an e-mail address")
    if email is not None and profile.san_email_domain:
        domain = render(profile.san_email_domain, context)
        if not email_in_domain(email, domain):
            raise InvalidSubjectError(
                f"e-mail {email} is outside the CA's domain {domain} "
                "(the issuing CA's name constraints would make it invalid)"
            )

    available = {**values, **context}
    attributes = []
    for rdn in profile.rdns:
        if not rdn.fields <= set(available):
            continue  # an optional input that was not given: the attribute is left out
        value = render(rdn.value, available)
        limit = ATTRIBUTE_MAX_LENGTH[rdn.type]
        if len(value) > limit:
            raise InvalidSubjectError(
                f"{rdn.type} is {len(value)} characters; at most {limit} are allowed"
            )
        attributes.append(name_attribute(rdn.type, value))
    name = x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else ""
    return ResolvedSubject(name, email, personal_id, tax_code, common_name)
