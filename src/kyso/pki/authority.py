"""The CA hierarchy of one home: creating it (``ca init``), loading it, unlocking its keys.

Layout: ``root`` signs ``staff`` (with name constraints), ``citizen`` and ``services``;
each issuing CA has a delegated OCSP responder; ``services`` signs the TSA and the audit signer.
Keys live in ``<home>/ca/`` as encrypted PKCS#8 files (0600) under the CA passphrase.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy.exc import IntegrityError

from kyso.audit import Layer, Outcome
from kyso.clock import vn_iso
from kyso.config import check_new_passphrase
from kyso.context import Kyso
from kyso.errors import (
    CAExistsError,
    CANotInitialisedError,
    ConfigError,
    PassphraseError,
    PkiError,
)
from kyso.files import atomic_write, ensure_private_dir
from kyso.pki.builder import Issuer, build_certificate, validity_window
from kyso.pki.identifiers import province_name as lookup_province
from kyso.pki.identifiers import province_slug
from kyso.pki.keys import (
    KeyType,
    PrivateKey,
    generate_key,
    key_type_of,
    load_private_key,
    save_private_key,
    spki_sha256,
)
from kyso.pki.profiles import Profile
from kyso.pki.records import certificate_row, subject_text
from kyso.pki.serials import new_serial, serial_hex
from kyso.pki.subjects import CaSettings, SubjectRequest, resolve
from kyso.store import schema

CA_NAMES = ("root", "staff", "citizen", "services")
CA_PROFILES = {"root": "root", "staff": "issuing-staff", "citizen": "issuing-citizen",
               "services": "issuing-services"}
CA_LABELS = {"root": "Root CA G1", "staff": "Staff CA G1", "citizen": "Citizen CA G1",
             "services": "Services CA G1"}
# (service name, profile, issuing CA, common-name label)
SERVICES = (
    ("ocsp-staff", "ocsp", "staff", "Staff CA OCSP Responder"),
    ("ocsp-citizen", "ocsp", "citizen", "Citizen CA OCSP Responder"),
    ("ocsp-services", "ocsp", "services", "Services CA OCSP Responder"),
    ("tsa", "tsa", "services", "Time Stamping Authority G1"),
    ("audit-signer", "audit-signer", "services", "Audit Log Signer G1"),
)


@dataclass(frozen=True)
class AuthorityInfo:
    name: str
    profile: str
    parent: str | None
    certificate: x509.Certificate
    key_file: Path

    def to_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "name": self.name,
            "profile": self.profile,
            "parent": self.parent,
            "subject": subject_text(cert.subject),
            "key": key_type_of(cert.public_key()).value,
            "serial": serial_hex(cert.serial_number),
            "not_before": vn_iso(cert.not_valid_before_utc),
            "not_after": vn_iso(cert.not_valid_after_utc),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        }


@dataclass(frozen=True)
class InitResult:
    settings: CaSettings
    authorities: tuple[AuthorityInfo, ...]
    services: tuple[AuthorityInfo, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "org": self.settings.org,
            "province": self.settings.province_name,
            "base_url": self.settings.base_url,
            "authorities": [a.to_dict() for a in self.authorities],
            "services": [s.to_dict() for s in self.services],
            "warnings": list(self.warnings),
        }


_BASE_URL = re.compile(
    r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?"
)


def check_base_url(url: str) -> tuple[str, list[str]]:
    """Validate the base URL written into CRL DP / AIA; return it and any warnings.

    It ends up in every certificate for its whole life, so it is held to plain ASCII
    http(s)://host[:port][/path] (an internationalised host must be given in its xn-- form).
    """
    if not isinstance(url, str) or not _BASE_URL.fullmatch(url.strip()):
        raise ConfigError(f"base URL {str(url)[:80]!r} must be http(s)://host[:port][/path] in "
                          "plain ASCII (no spaces, query or fragment)")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"base URL is not usable: {exc}") from None
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise ConfigError("base URL needs a host and a port between 1 and 65535")
    warnings = []
    host = parts.hostname
    internal = host == "localhost" or host.endswith((".local", ".internal", ".lan"))
    with contextlib.suppress(ValueError):
        internal = internal or not ipaddress.ip_address(host).is_global
    if internal:
        warnings.append(
            f"base URL host {host} is an internal name: fine for testing, but relying parties "
            "elsewhere cannot fetch CRLs/OCSP and ETSI linting reports it as an error"
        )
    if parts.scheme == "https":
        warnings.append("CRL and OCSP are usually served over plain http (RFC 5280 §4.2.1.13)")
    return url.strip().rstrip("/"), warnings


def default_email_domain(slug: str) -> str:
    return re.sub(r"[^a-z0-9]", "", slug) + ".gov.vn"


def _ca_common_name(settings: CaSettings, label: str) -> str:
    for base in (settings.org, settings.province_name):
        if len(f"{base} {label}") <= 64:
            return f"{base} {label}"
    return label


def ca_exists(kyso: Kyso) -> bool:
    with kyso.store.read() as conn:
        return conn.execute(sa.select(schema.ca_settings.c.id)).first() is not None


def load_settings(kyso: Kyso) -> CaSettings:
    with kyso.store.read() as conn:
        row = conn.execute(sa.select(schema.ca_settings)).mappings().first()
    if row is None:
        raise CANotInitialisedError(
            f"no CA in {kyso.settings.home}; create one with `kyso ca init` "
            "(or point --home / KYSO_HOME at the right directory)"
        )
    return CaSettings(
        org=row["org"], province_slug=row["province_slug"], province_name=row["province_name"],
        email_domain=row["email_domain"], base_url=row["base_url"],
    )


def list_authorities(kyso: Kyso) -> list[AuthorityInfo]:
    load_settings(kyso)
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(schema.authorities)).mappings().all()
    order = {n: i for i, n in enumerate(CA_NAMES)}
    infos = [
        AuthorityInfo(r["name"], r["profile"], r["parent"],
                      x509.load_der_x509_certificate(r["der"]),
                      _in_home(kyso, r["key_file"]))
        for r in rows
    ]
    return sorted(infos, key=lambda a: order.get(a.name, 99))


def _in_home(kyso: Kyso, stored: str) -> Path:
    """Key paths are stored relative to the home, so a restored or moved home uses its own."""
    path = Path(stored)
    return path if path.is_absolute() else kyso.settings.home / path


def list_services(kyso: Kyso) -> list[AuthorityInfo]:
    """The current certificate of each service key: the newest valid one (renewals included)."""
    c = schema.certificates
    with kyso.store.read() as conn:
        rows = conn.execute(
            sa.select(c.c.profile, c.c.issuer, c.c.der, c.c.key_file)
            .where(c.c.key_file.is_not(None), c.c.status == "valid").order_by(c.c.id)
        ).mappings().all()
    current: dict[str, AuthorityInfo] = {}
    for r in rows:  # later rows (renewals) replace earlier ones
        name = Path(r["key_file"]).name.removesuffix(".key.pem")
        current.pop(name, None)
        current[name] = AuthorityInfo(name, r["profile"], r["issuer"],
                                      x509.load_der_x509_certificate(r["der"]),
                                      _in_home(kyso, r["key_file"]))
    order = {s[0]: i for i, s in enumerate(SERVICES)}
    return sorted(current.values(), key=lambda a: order.get(a.name, 99))


def chain_pem(kyso: Kyso, ca_name: str) -> bytes:
    """PEM of ``ca_name`` and every CA above it, issuing CA first, root last."""
    by_name = {a.name: a for a in list_authorities(kyso)}
    if ca_name not in by_name:
        raise PkiError(f"unknown CA {ca_name!r}; CAs: {', '.join(by_name)}")
    out = b""
    current: str | None = ca_name
    while current is not None:
        info = by_name[current]
        out += info.certificate.public_bytes(serialization.Encoding.PEM)
        current = info.parent
    return out


class CertificateAuthority:
    """The unlocked CA: hands out :class:`Issuer` objects, unlocking each key once."""

    def __init__(self, kyso: Kyso, passphrase: str) -> None:
        self.kyso = kyso
        self._passphrase = passphrase
        self.settings = load_settings(kyso)
        self._authorities = {a.name: a for a in list_authorities(kyso)}
        self._issuers: dict[str, Issuer] = {}

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.kyso.settings.home})"

    def names(self) -> list[str]:
        return list(self._authorities)

    def certificate(self, name: str) -> x509.Certificate:
        return self._info(name).certificate

    def _info(self, name: str) -> AuthorityInfo:
        try:
            return self._authorities[name]
        except KeyError:
            raise PkiError(
                f"unknown CA {name!r}; CAs: {', '.join(self._authorities)}"
            ) from None

    def issuer(self, name: str) -> Issuer:
        if name not in self._issuers:
            info = self._info(name)
            try:
                key = load_private_key(info.key_file, self._passphrase)
            except PassphraseError:
                self.kyso.record(Layer.PKI, "CA_KEYACTIVATE", Outcome.FAILURE, object=name,
                                 reason="wrong passphrase")
                raise PassphraseError(f"wrong CA passphrase (cannot unlock the {name} CA key)") \
                    from None
            if spki_sha256(key.public_key()) != spki_sha256(info.certificate.public_key()):
                raise PkiError(f"key file {info.key_file} does not match the {name} CA certificate")
            self._issuers[name] = Issuer(name, info.certificate, key)
        return self._issuers[name]

    def chain(self, name: str) -> list[x509.Certificate]:
        out = []
        current: str | None = name
        while current is not None:
            info = self._info(current)
            out.append(info.certificate)
            current = info.parent
        return out


def plan_ca(
    *, org: str, province: str, base_url: str, email_domain: str | None
) -> tuple[CaSettings, list[str]]:
    """Validate what ``ca init`` was given (pure; nothing is created): the settings and any
    warnings about them."""
    if not isinstance(org, str):
        raise ConfigError("--org must be text")
    org = " ".join(org.split())
    if not org or len(org) > 64:
        raise ConfigError("--org must be 1–64 characters (it becomes O= in every certificate)")
    slug = province_slug(province)
    pname = lookup_province(slug)
    url, warnings = check_base_url(base_url)
    domain = (email_domain or default_email_domain(slug)).strip().lower()
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain):
        raise ConfigError(f"e-mail domain {domain!r} is not a domain name")
    return CaSettings(org=org, province_slug=slug, province_name=pname, email_domain=domain,
                      base_url=url), warnings


def init_ca(
    kyso: Kyso,
    *,
    passphrase: str,
    org: str,
    province: str,
    key_type: KeyType = KeyType.RSA_4096,
    base_url: str = "http://127.0.0.1:8080",
    email_domain: str | None = None,
) -> InitResult:
    """Create the whole hierarchy. Refuses if any CA state already exists in this home."""
    check_new_passphrase(passphrase, "CA passphrase")
    settings, warnings = plan_ca(org=org, province=province, base_url=base_url,
                                 email_domain=email_domain)
    ca_dir = kyso.settings.ca_dir
    if ca_exists(kyso) or (ca_dir.exists() and any(ca_dir.iterdir())):
        raise CAExistsError(f"a CA already exists in {kyso.settings.home}; it is never overwritten")

    now = kyso.now()
    profiles = {n: kyso.profiles.get(p) for n, p in CA_PROFILES.items()}
    for p in profiles.values():
        if key_type not in p.allowed_keys:
            raise PkiError(f"profile {p.name} does not allow {key_type.value}")

    keys: dict[str, PrivateKey] = {}
    issuers: dict[str, Issuer] = {}
    certs: dict[str, x509.Certificate] = {}
    parents = {"root": None, "staff": "root", "citizen": "root", "services": "root"}
    for name in CA_NAMES:
        profile = profiles[name]
        key = generate_key(key_type)
        parent = parents[name]
        parent_issuer = issuers[parent] if parent else None
        subject = resolve(profile, SubjectRequest.of(name=_ca_common_name(settings, CA_LABELS[name])),
                          settings, parent or name, now.date())
        nb, na = validity_window(profile, now, None, parent_issuer.certificate.not_valid_after_utc
                                 if parent_issuer else None)
        cert = build_certificate(
            profile=profile, subject=subject.name, public_key=key.public_key(),
            serial=new_serial(), not_before=nb, not_after=na, issuer=parent_issuer,
            self_key=key if parent is None else None,
            context=settings.context(parent or name),
        )
        keys[name], certs[name] = key, cert
        issuers[name] = Issuer(name, cert, key)

    service_rows = []
    for sname, pname_, ca_name, label in SERVICES:
        profile = kyso.profiles.get(pname_)
        key = generate_key(profile.default_key)
        subject = resolve(profile, SubjectRequest.of(name=_ca_common_name(settings, label)),
                          settings, ca_name, now.date())
        nb, na = validity_window(profile, now, None, certs[ca_name].not_valid_after_utc)
        cert = build_certificate(
            profile=profile, subject=subject.name, public_key=key.public_key(),
            serial=new_serial(), not_before=nb, not_after=na, issuer=issuers[ca_name],
            context=settings.context(ca_name),
        )
        service_rows.append((sname, profile, ca_name, key, cert))

    # Files first (exclusive create, 0600), then one transaction; undo the files on failure.
    ensure_private_dir(ca_dir)
    iterations = kyso.settings.key_kdf_iterations
    written: list[Path] = []
    try:
        for name in CA_NAMES:
            _write_key(ca_dir / f"{name}.key.pem", keys[name], passphrase, written, iterations)
            _write_public(ca_dir / f"{name}.crt.pem", certs[name], written)
        for sname, _p, _ca, key, cert in service_rows:
            _write_key(ca_dir / f"{sname}.key.pem", key, passphrase, written, iterations)
            _write_public(ca_dir / f"{sname}.crt.pem", cert, written)
        kyso.store.write(lambda conn: _insert_hierarchy(
            conn, settings, key_type, now, certs, parents, service_rows, ca_dir))
    except FileExistsError:
        _undo(written)
        raise CAExistsError(f"a CA already exists in {kyso.settings.home}") from None
    except IntegrityError:
        _undo(written)
        raise CAExistsError(f"a CA already exists in {kyso.settings.home}") from None
    except BaseException:
        _undo(written)
        raise

    for name in CA_NAMES:
        kyso.record(Layer.PKI, "CA_CREATION", Outcome.SUCCESS, object=name,
                    serial=serial_hex(certs[name].serial_number),
                    subject=subject_text(certs[name].subject), key_type=key_type.value)
    for sname, profile, ca_name, _key, cert in service_rows:
        kyso.record(Layer.PKI, "CERT_CREATION", Outcome.SUCCESS, object=serial_hex(
            cert.serial_number), profile=profile.name, issuer=ca_name, service=sname)
    return InitResult(
        settings=settings,
        authorities=tuple(list_authorities(kyso)),
        services=tuple(list_services(kyso)),
        warnings=tuple(warnings),
    )


def _write_key(path: Path, key: PrivateKey, passphrase: str, written: list[Path],
               iterations: int) -> None:
    save_private_key(path, key, passphrase, iterations)
    written.append(path)


def _write_public(path: Path, cert: x509.Certificate, written: list[Path]) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, exclusive=True)
    written.append(path)


def _undo(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _insert_hierarchy(
    conn: sa.Connection,
    settings: CaSettings,
    key_type: KeyType,
    now: dt.datetime,
    certs: dict[str, x509.Certificate],
    parents: dict[str, str | None],
    service_rows: list[tuple[str, Profile, str, PrivateKey, x509.Certificate]],
    ca_dir: Path,
) -> None:
    conn.execute(sa.insert(schema.ca_settings).values(
        id=1, org=settings.org, province_slug=settings.province_slug,
        province_name=settings.province_name, email_domain=settings.email_domain,
        base_url=settings.base_url, key_type=key_type.value, created_at=now,
    ))
    for name in CA_NAMES:
        cert = certs[name]
        conn.execute(sa.insert(schema.authorities).values(
            name=name, profile=CA_PROFILES[name], parent=parents[name],
            serial=serial_hex(cert.serial_number), subject=subject_text(cert.subject),
            der=cert.public_bytes(serialization.Encoding.DER),
            key_file=f"ca/{name}.key.pem", crl_number=0, created_at=now,
        ))
        conn.execute(sa.insert(schema.certified_keys).values(
            spki_sha256=spki_sha256(cert.public_key()), first_serial=serial_hex(cert.serial_number)
        ))
    for sname, profile, ca_name, _key, cert in service_rows:
        conn.execute(sa.insert(schema.certificates).values(
            **certificate_row(cert, profile=profile.name, issuer=ca_name, now=now,
                              holder_pseudonym=None, holder_hint=None, email=None),
            key_file=f"ca/{sname}.key.pem",
        ))
        conn.execute(sa.insert(schema.certified_keys).values(
            spki_sha256=spki_sha256(cert.public_key()), first_serial=serial_hex(cert.serial_number)
        ))
