"""Unlocking a service key of the CA (TSA, OCSP responders) for use in this process."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import PassphraseError, PkiError
from kyso.pki.authority import SERVICES, list_authorities, list_services
from kyso.pki.keys import PrivateKey, load_private_key, spki_sha256

SERVICE_NAMES = tuple(s[0] for s in SERVICES)


@dataclass(frozen=True)
class ServiceKey:
    """A service's current certificate, its unlocked key and the CA chain above it."""

    name: str
    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]  # issuing CA first, root last


def unlock_service(kyso: Kyso, passphrase: str, name: str) -> ServiceKey:
    """The current certificate of service ``name`` with its key, checked to be valid now and
    to match; a wrong passphrase raises :class:`PassphraseError` naming the service."""
    if name not in SERVICE_NAMES:
        raise PkiError(f"unknown service {name!r}; services: {', '.join(SERVICE_NAMES)}")
    info = next((s for s in list_services(kyso) if s.name == name), None)
    if info is None:
        raise PkiError(f"no valid {name} certificate in this CA (renew it with `kyso cert renew`)")
    cert = info.certificate
    now = kyso.now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PkiError(f"the {name} certificate is not valid now "
                       f"({cert.not_valid_before_utc:%Y-%m-%d} – {cert.not_valid_after_utc:%Y-%m-%d})")
    try:
        key = load_private_key(info.key_file, passphrase)
    except PassphraseError:
        kyso.record(Layer.PKI, "CA_KEYACTIVATE", Outcome.FAILURE, object=name,
                    reason="wrong passphrase")
        raise PassphraseError(f"wrong CA passphrase (cannot unlock the {name} service key)") \
            from None
    if spki_sha256(key.public_key()) != spki_sha256(cert.public_key()):
        raise PkiError(f"key file {info.key_file} does not match the {name} certificate")
    return ServiceKey(name, cert, key, _chain(kyso, info.parent))


def _chain(kyso: Kyso, issuer: str | None) -> tuple[x509.Certificate, ...]:
    by_name = {a.name: a for a in list_authorities(kyso)}
    out: list[x509.Certificate] = []
    current = issuer
    while current is not None:
        if current not in by_name or len(out) > len(by_name):
            raise PkiError(f"the CA chain above {issuer} is broken at {current!r}")
        out.append(by_name[current].certificate)
        current = by_name[current].parent
    return tuple(out)
