"""Citizens' signing credentials: enrolment, lookup, and whether one may sign now.

Enrolment (:func:`enrol`) needs a fresh level-2 login (:func:`~kyso.signing.gateway.policy.
require_step_up`). The service generates the key (the ``citizen`` profile's default, EC P-256),
the citizen issuing CA certifies it through :mod:`kyso.pki.issuance` (subject from the e-ID
registry: name, ID number, date of birth; ``CERT_CREATION``), and only the wrapped key is
stored (:mod:`~kyso.signing.gateway.keywrap`). A citizen has at most one enabled credential;
one whose certificate was revoked or expired is disabled by the next enrolment.

A credential is looked up **by its owner only**: another citizen's credential id answers as
an unknown one (:class:`~kyso.errors.UnknownCredentialError`), so ids cannot be probed.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kyso.audit import Layer, Outcome
from kyso.authn.registry import Identity, Level, Registry
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import (
    CredentialExistsError,
    CredentialSuspendedError,
    IdentityError,
    KysoError,
    StepUpRequiredError,
    UnknownCredentialError,
)
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority, list_authorities
from kyso.pki.keys import KeyType
from kyso.pki.lifecycle import revoke
from kyso.pki.records import RevocationReason, subject_text
from kyso.pki.subjects import SubjectRequest
from kyso.signing.gateway.algorithms import curve_oid, key_length, signature_algorithms
from kyso.signing.gateway.keywrap import MasterSecret, wrap_key
from kyso.signing.gateway.policy import MULTISIGN, Requester, require_step_up
from kyso.store import schema

__all__ = ["PROFILE", "CertStatus", "Credential", "CredentialStatus", "Enrolment",
           "check_account", "enrol", "get_credential", "list_credentials", "usable_credential"]

PROFILE = "citizen"
ISSUER = "citizen"
_SC, _C = schema.signing_credentials, schema.certificates


class CredentialStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"  # retired: its certificate was revoked or expired, a new one replaced it


class CertStatus(StrEnum):
    """The certificate's state as CSC ``credentials/info`` names it."""

    VALID = "valid"
    EXPIRED = "expired"  # outside its validity period
    REVOKED = "revoked"
    SUSPENDED = "suspended"  # on hold (certificateHold)


@dataclass(frozen=True)
class Credential:
    """One signing credential as stored (never the wrapped key)."""

    credential_id: str
    subject: str = field(repr=False)
    serial: str
    issuer: str
    key_type: KeyType
    status: CredentialStatus
    suspended_at: dt.datetime | None
    created_at: dt.datetime
    cert_status: CertStatus
    certificate: x509.Certificate = field(repr=False)
    chain: tuple[x509.Certificate, ...] = field(repr=False)  # issuing CA(s), root excluded

    @property
    def key_enabled(self) -> bool:
        return self.status is CredentialStatus.ENABLED and self.suspended_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "serial": self.serial,
                "issuer": self.issuer, "key_type": self.key_type.value,
                "status": self.status.value, "key_status": "enabled" if self.key_enabled
                else "disabled", "certificate_status": self.cert_status.value,
                "suspended_at": vn_iso(self.suspended_at) if self.suspended_at else None,
                "created_at": vn_iso(self.created_at),
                "not_after": vn_iso(self.certificate.not_valid_after_utc)}

    def csc_info(self, *, certificates: str = "single", cert_info: bool = False,
                 auth_info: bool = False) -> dict[str, Any]:
        """The body of CSC ``credentials/info`` (and of ``credentialInfos`` entries)."""
        cert = self.certificate
        key: dict[str, Any] = {"status": "enabled" if self.key_enabled else "disabled",
                               "algo": signature_algorithms(self.key_type),
                               "len": key_length(self.key_type)}
        curve = curve_oid(self.key_type)
        if curve is not None:
            key["curve"] = curve
        cert_part: dict[str, Any] = {"status": self.cert_status.value}
        if certificates != "none":
            chain = [cert] if certificates == "single" else [cert, *self.chain]
            cert_part["certificates"] = [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
                for c in chain]
        if cert_info:
            cert_part.update({
                "issuerDN": subject_text(cert.issuer),
                "serialNumber": self.serial,
                "subjectDN": subject_text(cert.subject),
                "validFrom": cert.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ"),
                "validTo": cert.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ")})
        body: dict[str, Any] = {
            "description": f"Chứng thư số cá nhân công dân (citizen signing certificate) "
                           f"{self.serial}",
            "key": key, "cert": cert_part, "authMode": "explicit", "SCAL": "2",
            "multisign": MULTISIGN, "lang": "vi-VN"}
        if auth_info:
            body["auth"] = {"mode": "explicit", "description": "a fresh level-2 VNeID login "
                            "(step-up: prompt=login max_age=0) approves each authorization"}
        return body


@dataclass(frozen=True)
class Enrolment:
    """A new credential; ``chain`` runs from the issuing CA to the root."""

    credential: Credential
    chain: tuple[x509.Certificate, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        pem = serialization.Encoding.PEM
        return {"credentialID": self.credential.credential_id,
                "certificate": self.credential.certificate.public_bytes(pem).decode("ascii"),
                "serialNumber": self.credential.serial,
                "chain": [c.public_bytes(pem).decode("ascii") for c in self.chain]}


def new_credential_id() -> str:
    """Opaque and URL-safe: 192 random bits, never derived from the serial or the person."""
    return "csc-" + secrets.token_urlsafe(24)


# --- reading ----------------------------------------------------------------------------------


def _cert_status(status: str, cert: x509.Certificate, now: dt.datetime) -> CertStatus:
    if status == "revoked":
        return CertStatus.REVOKED
    if status == "on_hold":
        return CertStatus.SUSPENDED
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return CertStatus.EXPIRED
    return CertStatus.VALID


def _chains(kyso: Kyso) -> dict[str, tuple[x509.Certificate, ...]]:
    """For each CA: it and the CAs above it, without the self-signed root."""
    infos = {a.name: a for a in list_authorities(kyso)}
    out = {}
    for name in infos:
        chain, current = [], infos.get(name)
        while current is not None and current.parent is not None:
            chain.append(current.certificate)
            current = infos.get(current.parent)
        out[name] = tuple(chain)
    return out


def _select(kyso: Kyso, *where: Any) -> list[Credential]:
    query = (sa.select(_SC.c.credential_id, _SC.c.subject, _SC.c.serial, _SC.c.issuer,
                       _SC.c.key_type, _SC.c.status, _SC.c.suspended_at, _SC.c.created_at,
                       _C.c.status.label("cert_status"), _C.c.der)
             .join(_C, _C.c.serial == _SC.c.serial).where(*where)
             .order_by(_SC.c.created_at, _SC.c.credential_id))
    with kyso.store.read() as conn:
        rows = conn.execute(query).mappings().all()
    if not rows:
        return []
    now, chains = kyso.now(), _chains(kyso)
    out = []
    for row in rows:
        cert = x509.load_der_x509_certificate(row["der"])
        out.append(Credential(
            credential_id=row["credential_id"], subject=row["subject"], serial=row["serial"],
            issuer=row["issuer"], key_type=KeyType(row["key_type"]),
            status=CredentialStatus(row["status"]), suspended_at=row["suspended_at"],
            created_at=row["created_at"], cert_status=_cert_status(row["cert_status"], cert, now),
            certificate=cert, chain=chains.get(row["issuer"], ())))
    return out


def list_credentials(kyso: Kyso, subject: str) -> list[Credential]:
    """The citizen's enabled credentials (suspended ones included), oldest first."""
    return _select(kyso, _SC.c.subject == subject, _SC.c.status == CredentialStatus.ENABLED.value)


def get_credential(kyso: Kyso, subject: str, credential_id: str) -> Credential:
    """The citizen's own credential; :class:`UnknownCredentialError` for an unknown id and,
    with the same words, for another citizen's."""
    if not isinstance(credential_id, str) or not credential_id or len(credential_id) > 64:
        raise UnknownCredentialError("credentialID: unknown credential")
    found = _select(kyso, _SC.c.credential_id == credential_id, _SC.c.subject == subject)
    if not found:
        raise UnknownCredentialError("credentialID: unknown credential")
    return found[0]


def check_account(kyso: Kyso, subject: str) -> Identity:
    """The citizen's e-ID account, which must exist, be level 2 and not locked."""
    try:
        identity = Registry(kyso.store, kyso.clock).by_subject(subject)
    except IdentityError:
        raise CredentialSuspendedError("the e-ID account no longer exists") from None
    if identity.locked:
        raise CredentialSuspendedError("the e-ID account is locked, so its signing credential "
                                       "is suspended")
    if identity.level < Level.TWO:
        raise StepUpRequiredError("the e-ID account is not level 2")
    return identity


def usable_credential(kyso: Kyso, subject: str, credential_id: str,
                      now: dt.datetime) -> Credential:
    """The citizen's credential if it may sign now: account active, credential enabled and not
    suspended, certificate valid (not on hold, revoked or expired)."""
    credential = get_credential(kyso, subject, credential_id)
    check_account(kyso, subject)
    if credential.status is not CredentialStatus.ENABLED:
        raise CredentialSuspendedError("credentialID: the credential is disabled (replaced by a "
                                       "newer one)")
    if credential.suspended_at is not None:
        raise CredentialSuspendedError("credentialID: the credential is suspended while the "
                                       "e-ID account is locked")
    if credential.cert_status is not CertStatus.VALID:
        what = {CertStatus.SUSPENDED: "on hold", CertStatus.REVOKED: "revoked",
                CertStatus.EXPIRED: "outside its validity period"}[credential.cert_status]
        raise CredentialSuspendedError(f"credentialID: the credential's certificate "
                                       f"{credential.serial} is {what}")
    return credential


# --- enrolment --------------------------------------------------------------------------------


def enrol(kyso: Kyso, ca: CertificateAuthority, master: MasterSecret,
          requester: Requester) -> Enrolment:
    """A new credential for the requester (see the module docstring). Every outcome is one
    ``CSC_CREDENTIAL_ENROL`` event (layer signing) with her pseudonym and the token id."""
    try:
        enrolment = _enrol(kyso, ca, master, requester)
    except KysoError as exc:
        kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_ENROL", Outcome.FAILURE,
                    object=getattr(exc, "credential_id", ""), reason=str(exc),
                    **requester.details, **requester.where)
        raise
    credential = enrolment.credential
    kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_ENROL", Outcome.SUCCESS,
                object=credential.credential_id, serial=credential.serial,
                issuer=credential.issuer, key_type=credential.key_type.value,
                not_after=credential.certificate.not_valid_after_utc,
                **requester.details, **requester.where)
    return enrolment


def _enrol(kyso: Kyso, ca: CertificateAuthority, master: MasterSecret,
           requester: Requester) -> Enrolment:
    now = kyso.now()
    require_step_up(requester, now)
    identity = check_account(kyso, requester.subject)
    _retire_or_refuse(kyso, requester, now)
    person = identity.person
    prepared = issuance.prepare(kyso, ca, PROFILE, SubjectRequest.of(
        name=person.full_name, id=person.id_number, dob=person.birth_date.isoformat()),
        issuer=ISSUER)
    assert prepared.private_key is not None  # generated by the service
    credential_id = new_credential_id()
    wrapped = wrap_key(master, prepared.private_key, credential_id=credential_id,
                       subject=requester.subject)
    issued = issuance.commit(kyso, ca, [prepared])[0]
    record = issued.record
    row = {"credential_id": credential_id, "subject": requester.subject, "serial": record.serial,
           "issuer": record.issuer, "key_type": record.key_type, "key_wrapped": wrapped,
           "status": CredentialStatus.ENABLED.value, "suspended_at": None, "hold_placed": False,
           "created_at": now, "disabled_at": None}
    try:
        kyso.store.write(lambda conn: conn.execute(sa.insert(_SC).values(**row)))
    except sa.exc.IntegrityError:
        # A concurrent enrolment of the same citizen stored its credential first: this
        # certificate's key exists nowhere else, so the certificate goes.
        revoke(kyso, record.serial, reason=RevocationReason.CESSATION_OF_OPERATION)
        existing = list_credentials(kyso, requester.subject)
        other = existing[0].credential_id if existing else ""
        raise CredentialExistsError(f"the citizen already has an enabled signing credential "
                                    f"{other}", other) from None
    return Enrolment(get_credential(kyso, requester.subject, credential_id), tuple(issued.chain))


def _retire_or_refuse(kyso: Kyso, requester: Requester, now: dt.datetime) -> None:
    """Refuse when an enabled credential can still sign (or is only suspended); disable the
    ones whose certificate was revoked or expired (``CSC_CREDENTIAL_DISABLE``)."""
    for credential in list_credentials(kyso, requester.subject):
        if credential.cert_status in (CertStatus.VALID, CertStatus.SUSPENDED):
            raise CredentialExistsError(
                f"the citizen already has an enabled signing credential "
                f"{credential.credential_id}", credential.credential_id)

        def work(conn: sa.Connection, cid: str = credential.credential_id) -> int:
            return int(conn.execute(
                sa.update(_SC).where(_SC.c.credential_id == cid,
                                     _SC.c.status == CredentialStatus.ENABLED.value)
                .values(status=CredentialStatus.DISABLED.value, disabled_at=now)).rowcount)

        if kyso.store.write(work):
            kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_DISABLE", Outcome.SUCCESS,
                        object=credential.credential_id, serial=credential.serial,
                        reason=f"certificate {credential.cert_status.value}; replaced by a new "
                               "enrolment", **requester.details, **requester.where)
