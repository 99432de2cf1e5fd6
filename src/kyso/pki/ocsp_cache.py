"""Reusing signed OCSP responses while a certificate's status stays the same: pure logic.

Every request still reads the certificate's status from the store, so a revocation made by any
process on the same database is answered by the next request; only the signing is saved. A
response is reused for a request with the same CertID (hash algorithm, issuer name and key
hashes, serial) while the status it was signed for is the one the store holds now, and while
it is fresh: within ``reuse_for`` (by default half the responder's validity) of its
thisUpdate, before its nextUpdate and before the responder certificate runs out. Requests
with extensions (a nonce above all: it is inside the signed data) are always signed afresh.

A reused "good" answer may predate a hold that has since been released: it says what was true
at its thisUpdate, which is all an OCSP response claims.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from cryptography.x509 import ocsp

from kyso.clock import vn_iso
from kyso.errors import PkiError
from kyso.pki.ocsp import OcspResponder, SerialStatus

DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedResponse:
    """A signed response, the status it was signed for, and until when it may be handed out."""

    der: bytes
    status: SerialStatus
    this_update: dt.datetime
    next_update: dt.datetime
    reuse_until: dt.datetime


class OcspCache:
    """A bounded map (least recently used entries leave first), safe to share between threads
    and between the responders of several CAs (the key names the CA and the responder)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise PkiError("an OCSP cache holds at least one response")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, CachedResponse] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, status: SerialStatus, now: dt.datetime) -> CachedResponse | None:
        """The response stored under ``key`` if it was signed for ``status`` and may still be
        handed out at ``now``; a stale or outdated entry is dropped."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.status == status and entry.this_update <= now < entry.reuse_until:
                self._entries.move_to_end(key)
                return entry
            del self._entries[key]
            return None

    def put(self, key: Hashable, entry: CachedResponse) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True)
class OcspAnswer:
    """The DER ``OCSPResponse`` for one request, and what a server needs to frame it:
    its status, whether it came from the cache, and (successful answers) its validity.
    ``reusable`` says that it answers a request without extensions, so an HTTP cache may
    keep it (RFC 5019 §6); answers to requests with a nonce are not."""

    der: bytes
    response_status: ocsp.OCSPResponseStatus
    from_cache: bool = False
    reusable: bool = False
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"response_status": self.response_status.name.lower(), "bytes": len(self.der),
                "from_cache": self.from_cache, "reusable": self.reusable,
                "this_update": vn_iso(self.this_update) if self.this_update else None,
                "next_update": vn_iso(self.next_update) if self.next_update else None}


class CachingResponder:
    """An :class:`OcspResponder` whose signed responses are kept in an :class:`OcspCache`.
    ``lookup`` reads a serial's status (:func:`kyso.pki.ocsp.serial_status`); it is called
    for every request that names a certificate."""

    def __init__(self, responder: OcspResponder, lookup: Callable[[int], SerialStatus],
                 cache: OcspCache, *, reuse_for: dt.timedelta | None = None) -> None:
        reuse = responder.validity / 2 if reuse_for is None else reuse_for
        if not dt.timedelta(0) < reuse <= responder.validity:
            raise PkiError("an OCSP response is reused for a positive time no longer than its "
                           "validity")
        self.responder = responder
        self.lookup = lookup
        self.cache = cache
        self.reuse_for = reuse
        certificate = responder.service.certificate
        self._responder_serial = certificate.serial_number
        self._responder_not_after = certificate.not_valid_after_utc

    def __repr__(self) -> str:
        return f"CachingResponder({self.responder!r})"

    def answer(self, request_der: bytes) -> OcspAnswer:
        """Like :meth:`OcspResponder.respond` (any bytes get a DER answer, nothing raises for
        bad input), reusing a stored response when the status it was signed for still holds."""
        found = self._key(request_der)
        if found is None:
            return _answer(self.responder.respond(request_der, self.lookup), reusable=False)
        key, serial = found
        try:
            status = self.lookup(serial)
        except Exception:  # respond() asks again and answers internalError if it fails again
            return _answer(self.responder.respond(request_der, self.lookup), reusable=False)
        now = self.responder.clock.now()
        hit = self.cache.get(key, status, now)
        if hit is not None:
            return OcspAnswer(hit.der, ocsp.OCSPResponseStatus.SUCCESSFUL, from_cache=True,
                              reusable=True, this_update=hit.this_update,
                              next_update=hit.next_update)
        # respond() still checks the CertID against this CA: an unauthorized request is never
        # stored, so a stored response only ever answers a CertID this responder accepted.
        answer = _answer(self.responder.respond(request_der, lambda _serial: status),
                         reusable=True)
        if answer.this_update is not None and answer.next_update is not None:
            until = min(answer.this_update + self.reuse_for, answer.next_update,
                        self._responder_not_after)
            self.cache.put(key, CachedResponse(answer.der, status, answer.this_update,
                                               answer.next_update, until))
        return answer

    def _key(self, request_der: bytes) -> tuple[Hashable, int] | None:
        """((CA, responder certificate, CertID…), serial) for a request without extensions
        that cryptography reads; None sends the request through the responder unchanged."""
        try:
            request = ocsp.load_der_ocsp_request(bytes(request_der))
            if len(request.extensions):
                return None
            serial = request.serial_number
            return (self.responder.ca_name, self._responder_serial, request.hash_algorithm.name,
                    request.issuer_name_hash, request.issuer_key_hash, serial), serial
        except Exception:  # the responder gives the proper answer to what does not parse
            return None


def _answer(der: bytes, *, reusable: bool) -> OcspAnswer:
    response = ocsp.load_der_ocsp_response(der)
    status = response.response_status
    if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspAnswer(der, status)
    return OcspAnswer(der, status, reusable=reusable, this_update=response.this_update_utc,
                      next_update=response.next_update_utc)
