"""What the PKI routes of ``kyso serve`` hold between requests (see :mod:`kyso.server.pki_routes`):
the service keys unlocked at start-up and replaced when renewed, the CRL each CA serves, the CA
certificates; and :class:`Problem`, the HTTP error those routes answer in JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from fastapi.responses import JSONResponse

from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import CANotInitialisedError, KysoError, PassphraseError
from kyso.pki.authority import (
    CA_NAMES,
    AuthorityInfo,
    CertificateAuthority,
    list_authorities,
    list_services,
)
from kyso.pki.crl import PUBLICATION_INTERVAL, publish_crl
from kyso.pki.ocsp import StatusLookup, load_responder
from kyso.pki.ocsp_cache import CachingResponder, OcspCache
from kyso.pki.tsa import TimeStampAuthority, load_tsa

ISSUING_CAS = tuple(name for name in CA_NAMES if name != "root")
RELOAD_CHECK = dt.timedelta(minutes=5)  # how often a renewed service certificate is looked for
NO_STORE = {"Cache-Control": "no-store"}
_NO_CA = "no CA has been created on this server yet (kyso ca init)"
_KEYS_LOCKED = ("the server was started without the CA passphrase (--ca-passphrase-file or "
                "$KYSO_CA_PASSPHRASE), so the OCSP responders and the TSA are off")


class Problem(Exception):
    """An HTTP error answered as ``{"error": …, "error_description": …}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def response(self) -> JSONResponse:
        headers = {**NO_STORE, **({"Retry-After": "60"} if self.status == 503 else {})}
        return JSONResponse({"error": self.error, "error_description": self.description},
                            status_code=self.status, headers=headers)


T = TypeVar("T")


class HeldService(Generic[T]):
    """A service whose key this server holds (an OCSP responder, the TSA): unlocked at
    start-up, replaced when the store names a newer certificate for it (looked for every
    RELOAD_CHECK, and at once when the one in use runs out); ``problem`` says why there is
    none. The clock, not the wall time, paces the checks, so tests can move it."""

    def __init__(self, kyso: Kyso, service: str, load: Callable[[], T],
                 certificate: Callable[[T], x509.Certificate]) -> None:
        self.kyso, self.service, self._load, self._certificate = kyso, service, load, certificate
        self.value: T | None = None
        self.problem = ""
        self._checked: dt.datetime | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """The first unlock; a wrong passphrase is raised (the server must not start)."""
        self._checked = self.kyso.now()
        self._replace(raise_passphrase=True)

    def get(self) -> T | None:
        if self._due(self.kyso.now()):
            with self._lock:
                now = self.kyso.now()
                if self._due(now):
                    self._refresh(now)
        return self.value

    def _due(self, now: dt.datetime) -> bool:
        checked = self._checked
        if checked is None or not checked <= now < checked + RELOAD_CHECK:
            return True
        value = self.value
        return value is not None and checked <= self._certificate(value).not_valid_after_utc < now

    def _refresh(self, now: dt.datetime) -> None:
        self._checked = now
        value = self.value
        if value is not None:
            cert = self._certificate(value)
            try:
                current = next((s.certificate for s in list_services(self.kyso)
                                if s.name == self.service), None)
            except Exception:  # the store is down: keep what we have, look again later
                return
            if current is not None and current.serial_number == cert.serial_number \
                    and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return
        self._replace(raise_passphrase=False)

    def _replace(self, *, raise_passphrase: bool) -> None:
        try:
            self.value, self.problem = self._load(), ""
        except PassphraseError:
            if raise_passphrase:
                raise
            self.problem = "wrong CA passphrase"
        except CANotInitialisedError:
            self.problem = _NO_CA
        except KysoError as exc:
            self.problem = str(exc)
        if self.problem and self.value is not None:
            cert = self._certificate(self.value)
            if not cert.not_valid_before_utc <= self.kyso.now() <= cert.not_valid_after_utc:
                self.value = None


@dataclass(frozen=True)
class ServedCrl:
    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.der).hexdigest()}"'


class CrlSource:
    """The CRL each CA serves: the published file (``settings.crl_dir``) while it is current
    (before its nextUpdate and younger than the 24-hour publication interval), else a new
    one published here with the CA passphrase. :func:`publish_crl` numbers CRLs in a
    transaction and locks the folder, so concurrent publishers never share a number; a lock
    per CA keeps this process's threads from publishing twice for one expiry."""

    def __init__(self, kyso: Kyso, passphrase: str | None) -> None:
        self.kyso, self._passphrase = kyso, passphrase
        self._seen: dict[str, tuple[tuple[int, int, int], ServedCrl | None]] = {}
        self._locks = {name: threading.Lock() for name in CA_NAMES}
        self._failed: dict[str, tuple[dt.datetime, str]] = {}
        self._ca: CertificateAuthority | None = None

    def current(self, info: AuthorityInfo) -> ServedCrl:
        now = self.kyso.now()
        crl = self._published(info)
        if crl is not None and _current(crl, now):
            return crl
        if self._passphrase is None:
            return _still_valid(crl, now, info.name, "the server has no CA passphrase to publish "
                                "a new one")
        with self._locks[info.name]:
            crl = self._published(info)  # another thread may have published meanwhile
            if crl is not None and _current(crl, now):
                return crl
            failed = self._failed.get(info.name)
            if failed is not None and failed[0] <= now < failed[0] + RELOAD_CHECK:
                return _still_valid(crl, now, info.name, failed[1])
            try:
                if self._ca is None:
                    self._ca = CertificateAuthority(self.kyso, self._passphrase)
                result = publish_crl(self.kyso, self._ca, info.name)
            except KysoError as exc:
                reason = "wrong CA passphrase" if isinstance(exc, PassphraseError) else str(exc)
                self._failed[info.name] = (now, f"publishing a new one failed: {reason}")
                return _still_valid(crl, now, info.name, self._failed[info.name][1])
            self._failed.pop(info.name, None)
            return ServedCrl(result.der, result.this_update, result.next_update)

    def _published(self, info: AuthorityInfo) -> ServedCrl | None:
        """The CRL in ``<crl_dir>/<ca>.crl`` if it is one the CA signed (re-read only when the
        file changes: publications replace it by a rename)."""
        path = self.kyso.settings.crl_dir / f"{info.name}.crl"
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        seen = self._seen.get(info.name)
        if seen is not None and seen[0] == key:
            return seen[1]
        crl = _read_crl(path, info.certificate)
        self._seen[info.name] = (key, crl)
        return crl


def _read_crl(path: Path, issuer: x509.Certificate) -> ServedCrl | None:
    try:
        data = path.read_bytes()
        crl = x509.load_der_x509_crl(data)
        next_update = crl.next_update_utc
        if crl.issuer != issuer.subject or next_update is None or not crl.is_signature_valid(
                cast(CertificateIssuerPublicKeyTypes, issuer.public_key())):
            return None
        return ServedCrl(data, crl.last_update_utc, next_update)
    except (OSError, ValueError, TypeError):
        return None


def _current(crl: ServedCrl, now: dt.datetime) -> bool:
    return now < crl.next_update and now - crl.this_update < PUBLICATION_INTERVAL


def _still_valid(crl: ServedCrl | None, now: dt.datetime, ca: str, why_not_new: str) -> ServedCrl:
    """A CRL past its publication interval but before its nextUpdate is still valid to serve;
    one past its nextUpdate is useless to relying parties: 503 naming the problem."""
    if crl is not None and now < crl.next_update:
        return crl
    what = (f"the CRL of the {ca} CA expired at {vn_iso(crl.next_update)}" if crl is not None
            else f"no valid CRL of the {ca} CA has been published")
    raise Problem(503, "crl_unavailable", f"{what}, and {why_not_new}; publish one with "
                  f"`kyso crl publish --ca {ca}`")


class PkiState:
    """What the PKI routes share, kept on ``app.state.pki``."""

    def __init__(self, kyso: Kyso, passphrase: str | None) -> None:
        self.kyso = kyso
        self.cache = OcspCache()
        self.crls = CrlSource(kyso, passphrase)
        self._authorities: dict[str, AuthorityInfo] = {}
        self.responders: dict[str, HeldService[CachingResponder]] = {}
        self.tsa: HeldService[TimeStampAuthority] | None = None
        if passphrase is None:
            return
        # one status reader (one database connection) per CA, kept across responder renewals
        self._lookups = {name: StatusLookup(kyso, name) for name in ISSUING_CAS}
        for name in ISSUING_CAS:
            self.responders[name] = HeldService(kyso, f"ocsp-{name}",
                                                partial(self._responder, passphrase, name),
                                                lambda r: r.responder.service.certificate)
        self.tsa = HeldService(kyso, "tsa", partial(load_tsa, kyso, passphrase),
                               lambda t: t.service.certificate)

    def _responder(self, passphrase: str, name: str) -> CachingResponder:
        return CachingResponder(load_responder(self.kyso, passphrase, name),
                                self._lookups[name], self.cache)

    def start(self) -> None:
        for responder in self.responders.values():
            responder.start()
        if self.tsa is not None:
            self.tsa.start()

    def authority(self, name: str) -> AuthorityInfo:
        """A CA of this home by name (CA certificates never change once created)."""
        if name not in CA_NAMES:
            raise Problem(404, "unknown_ca", f"unknown CA {name[:64]!r}; CAs: "
                          f"{', '.join(CA_NAMES)}")
        if not self._authorities:
            try:
                self._authorities = {a.name: a for a in list_authorities(self.kyso)}
            except CANotInitialisedError:
                raise Problem(404, "unknown_ca", _NO_CA) from None
        if name not in self._authorities:
            raise Problem(404, "unknown_ca", f"there is no {name} CA on this server")
        return self._authorities[name]

    def responder(self, name: str) -> CachingResponder:
        held = self.responders.get(name)
        if held is None:
            raise Problem(503, "ocsp_unavailable", _KEYS_LOCKED)
        found = held.get()
        if found is None:
            raise Problem(503, "ocsp_unavailable", f"the OCSP responder of the {name} CA is "
                          f"off: {held.problem}")
        return found

    def time_stamp_authority(self) -> TimeStampAuthority:
        found = self.tsa.get() if self.tsa is not None else None
        if found is None:
            raise Problem(503, "tsa_unavailable", f"the TSA is off: {self.tsa.problem}"
                          if self.tsa is not None else _KEYS_LOCKED)
        return found
