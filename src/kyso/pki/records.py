"""Certificate records as the inventory shows them (frozen; ``to_dict`` for JSON)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import RowMapping

from kyso.clock import vn_iso
from kyso.pki.identifiers import mask_id
from kyso.pki.keys import key_type_of, spki_sha256
from kyso.pki.serials import serial_hex


class Status(Enum):
    VALID = "valid"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"


class RevocationReason(Enum):
    """RFC 5280 §5.3.1 reason codes (names as OpenSSL and EJBCA spell them)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"

    @property
    def flag(self) -> x509.ReasonFlags:
        return {
            "unspecified": x509.ReasonFlags.unspecified,
            "keyCompromise": x509.ReasonFlags.key_compromise,
            "cACompromise": x509.ReasonFlags.ca_compromise,
            "affiliationChanged": x509.ReasonFlags.affiliation_changed,
            "superseded": x509.ReasonFlags.superseded,
            "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
            "certificateHold": x509.ReasonFlags.certificate_hold,
            "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
        }[self.value]


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    issuer: str
    profile: str
    subject: str
    common_name: str
    holder_hint: str | None
    email: str | None
    key_type: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status
    revoked_at: dt.datetime | None
    revocation_reason: RevocationReason | None
    invalidity_date: dt.datetime | None
    replaces: str | None
    der: bytes = field(repr=False)  # holds the raw ID number in the subject

    @classmethod
    def from_row(cls, row: RowMapping) -> CertificateRecord:
        reason = row["revocation_reason"]
        return cls(
            serial=row["serial"], issuer=row["issuer"], profile=row["profile"],
            subject=row["subject"], common_name=row["common_name"],
            holder_hint=row["holder_hint"], email=row["email"], key_type=row["key_type"],
            not_before=row["not_before"], not_after=row["not_after"],
            status=Status(row["status"]), revoked_at=row["revoked_at"],
            revocation_reason=RevocationReason(reason) if reason else None,
            invalidity_date=row["invalidity_date"], replaces=row["replaces"], der=row["der"],
        )

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def sha256_fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def is_expired(self, now: dt.datetime) -> bool:
        return now > self.not_after

    def display_status(self, now: dt.datetime) -> str:
        if self.status is Status.VALID and self.is_expired(now):
            return "expired"
        return self.status.value

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "issuer": self.issuer,
            "profile": self.profile,
            "subject": self.subject,
            "common_name": self.common_name,
            "holder": self.holder_hint,
            "email": self.email,
            "key_type": self.key_type,
            "not_before": vn_iso(self.not_before),
            "not_after": vn_iso(self.not_after),
            "status": self.display_status(now) if now else self.status.value,
            "revoked_at": vn_iso(self.revoked_at) if self.revoked_at else None,
            "revocation_reason": (
                self.revocation_reason.value if self.revocation_reason else None
            ),
            "invalidity_date": vn_iso(self.invalidity_date) if self.invalidity_date else None,
            "replaces": self.replaces,
            "sha256": self.sha256_fingerprint,
        }


# RFC 4514 names for the attributes our profiles use (OpenSSL and pkilint spell them so).
ATTRIBUTE_LABELS = {
    NameOID.SERIAL_NUMBER: "serialNumber", NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN",
    NameOID.TITLE: "T", NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.USER_ID: "UID",
}


def subject_text(name: x509.Name) -> str:
    """RFC 4514 text with readable attribute names instead of dotted OIDs."""
    return name.rfc4514_string(ATTRIBUTE_LABELS)


_ID_IN_TEXT = re.compile(r"(IDCVN-|CCCD:|CMND:)([0-9]{6,})")


def masked_subject(name: x509.Name) -> str:
    """RFC 4514 subject with personal ID numbers masked, for the inventory and events."""
    return _ID_IN_TEXT.sub(lambda m: m.group(1) + mask_id(m.group(2)), subject_text(name))


def common_name_of(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def certificate_row(
    cert: x509.Certificate,
    *,
    profile: str,
    issuer: str,
    now: dt.datetime,
    holder_pseudonym: str | None,
    holder_hint: str | None,
    email: str | None,
    replaces: str | None = None,
) -> dict[str, Any]:
    public_key = cert.public_key()
    return {
        "serial": serial_hex(cert.serial_number),
        "issuer": issuer,
        "profile": profile,
        "subject": masked_subject(cert.subject),
        "common_name": common_name_of(cert),
        "holder_pseudonym": holder_pseudonym,
        "holder_hint": holder_hint,
        "email": email,
        "key_type": key_type_of(public_key).value,
        "spki_sha256": spki_sha256(public_key),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "status": Status.VALID.value,
        "der": cert.public_bytes(serialization.Encoding.DER),
        "created_at": now,
        "replaces": replaces,
    }
