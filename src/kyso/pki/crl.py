"""Certificate revocation lists: X.509 v2 with cRLNumber, AKI, reason codes, invalidityDate.

Published every 24 hours by policy and valid for 7 days (nextUpdate); held certificates are
listed with reason certificateHold and leave the next CRL when released.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kyso.audit import Layer, Outcome
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import PkiError
from kyso.files import atomic_write, exclusive_lock
from kyso.pki.authority import CertificateAuthority
from kyso.pki.builder import Issuer
from kyso.pki.keys import signature_hash
from kyso.pki.records import RevocationReason, Status
from kyso.store import schema

CRL_VALIDITY = dt.timedelta(days=7)
PUBLICATION_INTERVAL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class RevokedEntry:
    serial: str
    revoked_at: dt.datetime
    reason: RevocationReason
    invalidity_date: dt.datetime | None


@dataclass(frozen=True)
class CrlResult:
    ca: str
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    der_path: Path
    pem_path: Path
    der: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "ca": self.ca, "crl_number": self.number, "this_update": vn_iso(self.this_update),
            "next_update": vn_iso(self.next_update), "entries": self.entries,
            "der": str(self.der_path), "pem": str(self.pem_path),
        }


def build_crl(
    issuer: Issuer, entries: list[RevokedEntry], number: int, now: dt.datetime
) -> x509.CertificateRevocationList:
    """Pure: sign a CRL for ``entries``."""
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
            critical=False,
        )
    )
    for e in entries:
        rb = (x509.RevokedCertificateBuilder()
              .serial_number(int(e.serial, 16)).revocation_date(e.revoked_at))
        if e.reason is not RevocationReason.UNSPECIFIED:  # RFC 5280 §5.3.1: omit unspecified
            rb = rb.add_extension(x509.CRLReason(e.reason.flag), critical=False)
        if e.invalidity_date is not None:
            rb = rb.add_extension(x509.InvalidityDate(
                e.invalidity_date.astimezone(dt.UTC).replace(tzinfo=None)), critical=False)
        builder = builder.add_revoked_certificate(rb.build())
    return builder.sign(issuer.key, signature_hash(issuer.key))


@contextmanager
def _publish_lock(folder: Path, ca_name: str) -> Iterator[None]:
    with exclusive_lock(folder / f".{ca_name}.crl.lock",
                        lambda why: PkiError(f"cannot write CRLs into {folder}: {why}")):
        yield


def publish_crl(
    kyso: Kyso, ca: CertificateAuthority, ca_name: str, out_dir: Path | None = None
) -> CrlResult:
    """Take the next cRLNumber and the current revocations in one transaction, sign, and write
    ``<ca>.crl`` (DER) and ``<ca>.crl.pem`` atomically."""
    if ca_name not in ca.names():
        raise PkiError(f"unknown CA {ca_name!r}; CAs: {', '.join(ca.names())}")
    issuer = ca.issuer(ca_name)  # unlock first: a wrong passphrase must not burn a CRL number
    now = kyso.now()
    a, c = schema.authorities, schema.certificates

    def work(conn: sa.Connection) -> tuple[int, list[RevokedEntry]]:
        number = conn.execute(
            sa.select(a.c.crl_number).where(a.c.name == ca_name).with_for_update()
        ).scalar_one() + 1
        conn.execute(sa.update(a).where(a.c.name == ca_name).values(crl_number=number))
        rows = conn.execute(
            sa.select(c.c.serial, c.c.revoked_at, c.c.revocation_reason, c.c.invalidity_date)
            .where(c.c.issuer == ca_name,
                   c.c.status.in_([Status.REVOKED.value, Status.ON_HOLD.value]),
                   c.c.not_after >= now)
            .order_by(c.c.revoked_at, c.c.serial)
        ).mappings().all()
        entries = [RevokedEntry(r["serial"], r["revoked_at"],
                                RevocationReason(r["revocation_reason"]), r["invalidity_date"])
                   for r in rows]
        return number, entries

    folder = out_dir or kyso.settings.crl_dir
    if folder.exists() and not folder.is_dir():
        raise PkiError(f"{folder} exists and is not a directory")
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
            folder.chmod(0o755)  # CRLs are public: a web server may serve this folder as it is
        except OSError as exc:
            raise PkiError(f"cannot create {folder}: {exc.strerror}") from None
    der_path, pem_path = folder / f"{ca_name}.crl", folder / f"{ca_name}.crl.pem"
    # One publisher at a time per CA and folder, from taking the number to the rename, so an
    # older CRL can never replace a newer one.
    with _publish_lock(folder, ca_name):
        number, entries = kyso.store.write(work)
        crl = build_crl(issuer, entries, number, now)
        der = crl.public_bytes(serialization.Encoding.DER)
        atomic_write(der_path, der)
        atomic_write(pem_path, crl.public_bytes(serialization.Encoding.PEM))
    kyso.record(Layer.PKI, "CRL_CREATION", Outcome.SUCCESS, object=ca_name, crl_number=number,
                entries=len(entries), next_update=now + CRL_VALIDITY)
    return CrlResult(ca_name, number, now, now + CRL_VALIDITY, len(entries), der_path,
                     pem_path, der)
