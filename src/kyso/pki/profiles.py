"""Certificate profiles are data: ``policies/profiles/*.toml``, one file per profile.

Loading is strict: unknown keys, wrong types and unknown names are errors naming the file and
the key. Site profiles in ``<home>/profiles/`` override shipped profiles of the same name.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from kyso.errors import ProfileError
from kyso.pki.keys import KeyType


class ProfileKind(Enum):
    ROOT = "root"
    CA = "ca"
    END_ENTITY = "end-entity"


ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "T": NameOID.TITLE,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "UID": NameOID.USER_ID,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
}
ATTRIBUTE_NAMES: dict[ObjectIdentifier, str] = {oid: name for name, oid in ATTRIBUTES.items()}
# Upper bounds of RFC 5280 Appendix A (ub-*) for the attributes we write.
ATTRIBUTE_MAX_LENGTH = {"C": 2, "ST": 128, "L": 128, "O": 64, "OU": 64, "CN": 64, "SN": 64,
                        "GN": 64, "T": 64, "serialNumber": 64, "UID": 64,
                        "organizationIdentifier": 64}

KEY_USAGES = ("digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
              "keyAgreement", "keyCertSign", "cRLSign")

EXTENDED_KEY_USAGES: dict[str, ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "documentSigning": ObjectIdentifier("1.3.6.1.5.5.7.3.36"),
}

INPUTS = ("name", "surname", "given_name", "id", "dob", "title", "unit", "email", "tax_code",
          "budget_code", "locality", "province")
CONTEXT_FIELDS = ("org", "province_name", "email_domain", "base_url", "issuer")
_TEMPLATE_FIELDS = set(INPUTS) | set(CONTEXT_FIELDS)


MAX_VALIDITY_DAYS = 36525  # 100 years: any more is a typo, and overflows date arithmetic


class Requirement(Enum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class Rdn:
    type: str
    value: str

    @property
    def fields(self) -> frozenset[str]:
        return template_fields(self.value)


@dataclass(frozen=True)
class NameConstraintsRule:
    email: tuple[str, ...] = ()
    directory: tuple[tuple[Rdn, ...], ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    kind: ProfileKind
    issuers: tuple[str, ...]
    allowed_keys: tuple[KeyType, ...]
    default_key: KeyType
    default_days: int
    max_days: int
    required_inputs: frozenset[str]
    optional_inputs: frozenset[str]
    rdns: tuple[Rdn, ...]
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...]
    extended_key_usage_critical: bool
    path_length: int | None
    policy_oids: tuple[str, ...]
    crl_distribution_point: str | None
    ocsp_url: str | None
    ca_issuers_url: str | None
    ocsp_nocheck: bool
    name_constraints: NameConstraintsRule | None
    san_email: Requirement
    san_email_domain: str | None
    source: str = field(default="", compare=False)

    @property
    def is_ca(self) -> bool:
        return self.kind is not ProfileKind.END_ENTITY

    @property
    def allowed_inputs(self) -> frozenset[str]:
        return self.required_inputs | self.optional_inputs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind.value,
            "issuers": list(self.issuers),
            "key": {"allowed": [k.value for k in self.allowed_keys],
                    "default": self.default_key.value},
            "validity": {"default_days": self.default_days, "max_days": self.max_days},
            "inputs": {"required": sorted(self.required_inputs),
                       "optional": sorted(self.optional_inputs)},
            "subject": [f"{r.type}={r.value}" for r in self.rdns],
            "key_usage": sorted(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "path_length": self.path_length,
            "policy_oids": list(self.policy_oids),
            "crl_distribution_point": self.crl_distribution_point,
            "ocsp_url": self.ocsp_url,
            "ca_issuers_url": self.ca_issuers_url,
            "ocsp_nocheck": self.ocsp_nocheck,
            "san_email": self.san_email.value,
            "source": self.source,
        }


def template_fields(template: str) -> frozenset[str]:
    names = set()
    for _literal, fname, _spec, _conv in string.Formatter().parse(template):
        if fname is not None:
            names.add(fname)
    return frozenset(names)


def render(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(dict(values))


# --- strict TOML reading -------------------------------------------------------------------

class _Reader:
    def __init__(self, source: str, data: Mapping[str, Any], path: str = "") -> None:
        self.source, self.data, self.path = source, data, path
        self.seen: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.source}: {self.path + '.' if self.path else ''}{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise ProfileError(f"{self._where(key)} is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, (int,)):
            raise ProfileError(f"{self._where(key)} must be an integer")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ProfileError(f"{self._where(key)} must be {names}, not {type(value).__name__}")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise ProfileError(f"{self._where(key)} must be a list of strings")
        return tuple(value)

    def table(self, key: str, required: bool = True) -> _Reader:
        value = self.get(key, dict, ... if required else {})
        return _Reader(self.source, value, f"{self.path + '.' if self.path else ''}{key}")

    def done(self) -> None:
        unknown = set(self.data) - self.seen
        if unknown:
            where = f"{self.source}: {'[' + self.path + '] ' if self.path else ''}"
            raise ProfileError(f"{where}unknown key(s) {', '.join(sorted(unknown))}")


def _check_context_template(source: str, template: str) -> str:
    """URL, name-constraint and e-mail-domain templates are filled from the CA, never from a
    holder's inputs."""
    _check_template(source, template)
    extra = template_fields(template) - set(CONTEXT_FIELDS)
    if extra:
        raise ProfileError(f"{source}: template {template!r} may only use "
                           f"{', '.join(CONTEXT_FIELDS)}, not {', '.join(sorted(extra))}")
    return template


def _check_template(source: str, template: str) -> str:
    try:
        names = template_fields(template)
    except ValueError as exc:
        raise ProfileError(f"{source}: bad template {template!r}: {exc}") from None
    unknown = names - _TEMPLATE_FIELDS
    if unknown:
        raise ProfileError(f"{source}: template {template!r} uses unknown field(s) "
                           f"{', '.join(sorted(unknown))}")
    return template


def _rdns(source: str, items: Iterable[Any], where: str) -> tuple[Rdn, ...]:
    rdns = []
    for item in items:
        if not isinstance(item, dict):
            raise ProfileError(f"{source}: {where} entries must be tables {{ type, value }}")
        r = _Reader(source, item, where)
        rtype = r.get("type", str)
        if rtype not in ATTRIBUTES:
            raise ProfileError(f"{source}: {where}: unknown attribute type {rtype!r}")
        value = _check_template(source, r.get("value", str))
        r.done()
        rdns.append(Rdn(rtype, value))
    return tuple(rdns)


def parse_profile(text: str, source: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML ({exc})") from None
    top = _Reader(source, data)
    name = top.get("name", str)
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", name):
        raise ProfileError(f"{source}: name {name!r} must be lowercase letters, digits and '-'")
    description = top.get("description", str)
    try:
        kind = ProfileKind(top.get("kind", str))
    except ValueError:
        raise ProfileError(f"{source}: kind must be root, ca or end-entity") from None
    issuers = top.strings("issuers")
    if kind is ProfileKind.ROOT and issuers:
        raise ProfileError(f"{source}: a root profile has no issuers")
    if kind is not ProfileKind.ROOT and not issuers:
        raise ProfileError(f"{source}: issuers must name at least one CA")

    key = top.table("key")
    try:
        allowed = tuple(KeyType(v) for v in key.strings("allowed"))
        default_key = KeyType(key.get("default", str))
    except ValueError as exc:
        raise ProfileError(f"{source}: [key] {exc}") from None
    if default_key not in allowed:
        raise ProfileError(f"{source}: [key] default {default_key.value} is not in allowed")
    key.done()

    validity = top.table("validity")
    default_days = validity.get("default_days", int)
    max_days = validity.get("max_days", int)
    if not 0 < default_days <= max_days <= MAX_VALIDITY_DAYS:
        raise ProfileError(f"{source}: [validity] needs 0 < default_days <= max_days <= "
                           f"{MAX_VALIDITY_DAYS}")
    validity.done()

    inputs = top.table("inputs")
    required_inputs = frozenset(inputs.strings("required"))
    optional_inputs = frozenset(inputs.strings("optional", []))
    for n in required_inputs | optional_inputs:
        if n not in INPUTS:
            raise ProfileError(f"{source}: [inputs] unknown input {n!r}")
    inputs.done()

    subject = top.table("subject")
    rdns = _rdns(source, subject.get("rdns", list), "subject.rdns")
    subject.done()
    for rdn in rdns:
        missing = rdn.fields - required_inputs - optional_inputs - set(CONTEXT_FIELDS)
        if missing:
            raise ProfileError(f"{source}: subject {rdn.type} uses {', '.join(sorted(missing))}, "
                               "which is not an input of this profile")

    ext = top.table("extensions")
    key_usage = frozenset(ext.strings("key_usage"))
    for ku in key_usage:
        if ku not in KEY_USAGES:
            raise ProfileError(f"{source}: [extensions] unknown key usage {ku!r}")
    eku = ext.strings("extended_key_usage", [])
    for e in eku:
        if e not in EXTENDED_KEY_USAGES:
            raise ProfileError(f"{source}: [extensions] unknown extended key usage {e!r}")
    eku_critical = ext.get("extended_key_usage_critical", bool, False)
    path_length = ext.get("path_length", int, None) if kind is not ProfileKind.END_ENTITY else None
    if path_length is not None and path_length < 0:
        raise ProfileError(f"{source}: [extensions] path_length must be 0 or more")
    if kind is ProfileKind.END_ENTITY and "path_length" in ext.data:
        raise ProfileError(f"{source}: [extensions] path_length is only for CA profiles")
    policy_oids = ext.strings("policy_oids", [])
    for oid in policy_oids:
        _check_oid(source, oid)
    crl_dp = ext.get("crl_distribution_point", str, None)
    ocsp_url = ext.get("ocsp_url", str, None)
    ca_issuers = ext.get("ca_issuers_url", str, None)
    for t in (crl_dp, ocsp_url, ca_issuers):
        if t is not None:
            _check_context_template(source, t)
    nocheck = ext.get("ocsp_nocheck", bool, False)
    nc_rule = None
    if "name_constraints" in ext.data:
        nc = ext.table("name_constraints")
        emails = tuple(_check_context_template(source, e) for e in nc.strings("email", []))
        directory = nc.get("directory", list, [])
        if not all(isinstance(d, list) for d in directory):
            raise ProfileError(f"{source}: name_constraints.directory must be a list of lists of "
                               "{ type, value } tables")
        dirs = tuple(_rdns(source, d, "name_constraints.directory") for d in directory)
        for d in dirs:
            for r in d:
                _check_context_template(source, r.value)
        nc.done()
        nc_rule = NameConstraintsRule(emails, dirs)
    ext.done()
    _check_usage_fits_kind(source, kind, key_usage, nocheck, eku)

    san = top.table("san", required=False)
    try:
        san_email = Requirement(san.get("email", str, "forbidden"))
    except ValueError:
        raise ProfileError(f"{source}: [san] email must be required, optional or forbidden") \
            from None
    san_domain = san.get("email_domain", str, None)
    if san_domain is not None:
        _check_context_template(source, san_domain)
    san.done()
    if san_email is not Requirement.FORBIDDEN and "email" not in required_inputs | optional_inputs:
        raise ProfileError(f"{source}: [san] email needs 'email' among the inputs")
    top.done()

    return Profile(
        name=name, description=description, kind=kind, issuers=issuers,
        allowed_keys=allowed, default_key=default_key, default_days=default_days,
        max_days=max_days, required_inputs=required_inputs, optional_inputs=optional_inputs,
        rdns=rdns, key_usage=key_usage, extended_key_usage=eku,
        extended_key_usage_critical=eku_critical, path_length=path_length,
        policy_oids=policy_oids, crl_distribution_point=crl_dp, ocsp_url=ocsp_url,
        ca_issuers_url=ca_issuers, ocsp_nocheck=nocheck, name_constraints=nc_rule,
        san_email=san_email, san_email_domain=san_domain, source=source,
    )


def _check_oid(source: str, oid: str) -> None:
    if not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", oid):
        raise ProfileError(f"{source}: {oid!r} is not an object identifier")
    if any(int(arc) >= 2**28 for arc in oid.split(".")):
        # RFC 5280 §4.2.1.4 readers need only handle arcs below 2^28; pkilint and Botan
        # reject larger ones, so 2.25.<uuid> policy OIDs do not interoperate.
        raise ProfileError(f"{source}: policy OID {oid} has an arc of 2^28 or more, which many "
                           "verifiers cannot read")
    try:
        x509.ObjectIdentifier(oid)
    except ValueError:
        raise ProfileError(f"{source}: {oid!r} is not an object identifier") from None


def _check_usage_fits_kind(source: str, kind: ProfileKind, ku: frozenset[str], nocheck: bool,
                           eku: tuple[str, ...]) -> None:
    ca_bits = {"keyCertSign", "cRLSign"}
    if kind is ProfileKind.END_ENTITY and ku & ca_bits:
        raise ProfileError(f"{source}: an end-entity profile cannot have keyCertSign or cRLSign")
    if kind is not ProfileKind.END_ENTITY and "keyCertSign" not in ku:
        raise ProfileError(f"{source}: a CA profile needs keyCertSign")
    if nocheck and "OCSPSigning" not in eku:
        raise ProfileError(f"{source}: ocsp_nocheck only makes sense with OCSPSigning")


# --- the catalogue -------------------------------------------------------------------------

def shipped_profile_texts() -> dict[str, tuple[str, str]]:
    """``{file stem: (text, source label)}`` for every shipped profile file."""
    folder = resources.files("kyso.policies").joinpath("profiles")
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = (entry.read_text(encoding="utf-8"), f"profiles/{entry.name}")
    return out


@dataclass(frozen=True)
class ProfileCatalogue:
    profiles: Mapping[str, Profile]

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise ProfileError(f"unknown profile {name!r}; known profiles: {known}") from None

    def names(self) -> list[str]:
        return sorted(self.profiles)


def load_catalogue(site_dir: Path | None = None) -> ProfileCatalogue:
    texts = shipped_profile_texts()
    if site_dir is not None and site_dir.is_dir():
        for path in sorted(site_dir.glob("*.toml")):
            try:
                texts[path.stem] = (path.read_text(encoding="utf-8"), str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise ProfileError(f"cannot read profile {path}: {exc}") from None
    profiles: dict[str, Profile] = {}
    for stem, (text, source) in texts.items():
        profile = parse_profile(text, source)
        if profile.name != stem:
            raise ProfileError(f"{source}: name {profile.name!r} differs from the file name")
        profiles[profile.name] = profile
    return ProfileCatalogue(profiles)
