"""Issuing, renewing and rekeying end-entity certificates.

Two steps: :func:`prepare` validates everything and signs (no database), :func:`commit` stores
one or many prepared certificates in a single transaction, where the store enforces unique
serials and refuses a public key that was already certified. Audit events follow the commit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.exc import IntegrityError

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import (
    CertificateNotFoundError,
    CSRError,
    DuplicateKeyError,
    KeyPolicyError,
    KysoError,
    PkiError,
    StoreError,
)
from kyso.pki.authority import CertificateAuthority
from kyso.pki.builder import Issuer, build_certificate, validity_window
from kyso.pki.csr import examine_csr
from kyso.pki.keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    as_public_key,
    generate_key,
    key_type_of,
    spki_sha256,
)
from kyso.pki.lifecycle import revoke
from kyso.pki.profiles import Profile
from kyso.pki.records import CertificateRecord, Status, certificate_row
from kyso.pki.serials import new_serial, serial_hex
from kyso.pki.subjects import SubjectRequest, resolve
from kyso.store import schema


@dataclass(frozen=True)
class Prepared:
    """A signed certificate not yet in the store."""

    profile: Profile
    issuer: Issuer
    certificate: x509.Certificate
    private_key: PrivateKey | None
    email: str | None
    holder_pseudonym: str | None
    holder_hint: str | None
    replaces: str | None
    new_key: bool
    rebuild: Callable[[int], x509.Certificate] = field(repr=False, compare=False)
    key_file: str | None = None  # service certificates (OCSP, TSA, audit) whose key kyso holds
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Prepared(serial={serial_hex(self.certificate.serial_number)})"


@dataclass(frozen=True)
class IssuedCertificate:
    record: CertificateRecord
    private_key: PrivateKey | None
    chain: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"IssuedCertificate(serial={self.record.serial}, key=<hidden>)"


def _nfc(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).split())


def _pick_issuer(profile: Profile, issuer: str | None) -> str:
    if profile.is_ca:
        raise PkiError(f"profile {profile.name} is a CA profile; CAs are created by `kyso ca init`")
    name = issuer or profile.issuers[0]
    if name not in profile.issuers:
        raise PkiError(f"profile {profile.name} is issued by {', '.join(profile.issuers)}, "
                       f"not {name}")
    return name


def _check_key(profile: Profile, key_type: KeyType) -> None:
    if key_type not in profile.allowed_keys:
        allowed = ", ".join(k.value for k in profile.allowed_keys)
        raise KeyPolicyError(f"profile {profile.name} does not allow {key_type.value} keys "
                             f"(allowed: {allowed})")


def prepare(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile_name: str,
    request: SubjectRequest,
    **options: Any,
) -> Prepared:
    """Validate a request against its profile, obtain a key, and sign the certificate.

    Options: ``csr``, ``public_key``, ``private_key``, ``key_type``, ``days``, ``issuer``.
    A refusal is recorded as a failed CERT_CREATION event and re-raised.
    """
    try:
        return _prepare(kyso, ca, profile_name, request, **options)
    except KysoError as exc:
        kyso.record(Layer.PKI, "CERT_CREATION", Outcome.FAILURE, profile=profile_name,
                    reason=str(exc))
        raise


def _prepare(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile_name: str,
    request: SubjectRequest,
    *,
    csr: x509.CertificateSigningRequest | None = None,
    public_key: PublicKey | None = None,
    private_key: PrivateKey | None = None,
    key_type: KeyType | None = None,
    days: int | None = None,
    issuer: str | None = None,
) -> Prepared:
    profile = kyso.profiles.get(profile_name)
    issuer_name = _pick_issuer(profile, issuer)
    values = dict(request.values)
    warnings: list[str] = []
    if csr is not None:
        if public_key is not None or private_key is not None:
            raise CSRError("give either a CSR or a key, not both")
        examined = examine_csr(csr, profile)
        for k, v in examined.inputs.items():
            if k in values and _nfc(values[k]) != _nfc(v):
                raise CSRError(f"the CSR's {k} differs from the one given on the command line")
            values.setdefault(k, v)
        public_key = examined.public_key
        warnings += [f"dropped CSR extension {e} (not in profile {profile.name})"
                     for e in examined.dropped_extensions]
        if key_type is not None and key_type_of(public_key) is not key_type:
            raise CSRError(f"the CSR holds a {key_type_of(public_key).value} key, "
                           f"not {key_type.value}")
    now = kyso.now()
    resolved = resolve(profile, SubjectRequest(values), ca.settings, issuer_name, now.date())
    if private_key is not None:
        public_key = private_key.public_key()
    if public_key is None:
        kt = key_type or profile.default_key
        _check_key(profile, kt)
        ca.certificate(issuer_name)  # an unknown CA fails here, before the slow key generation
        private_key = generate_key(kt)
        public_key = private_key.public_key()
    else:
        _check_key(profile, key_type_of(public_key))
    holder = resolved.personal_id.number if resolved.personal_id else resolved.tax_code
    return _prepare_signed(
        kyso, ca, profile, issuer_name, resolved.name, resolved.email, public_key, private_key,
        days=days, holder_pseudonym=kyso.pseudonyms.pseudonym(holder) if holder else None,
        holder_hint=(resolved.personal_id.masked if resolved.personal_id else resolved.tax_code),
        replaces=None, new_key=True, warnings=tuple(warnings),
    )


def _prepare_signed(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile: Profile,
    issuer_name: str,
    subject: x509.Name,
    email: str | None,
    public_key: PublicKey,
    private_key: PrivateKey | None,
    *,
    days: int | None,
    holder_pseudonym: str | None,
    holder_hint: str | None,
    replaces: str | None,
    new_key: bool,
    warnings: tuple[str, ...] = (),
) -> Prepared:
    issuer = ca.issuer(issuer_name)
    not_before, not_after = validity_window(
        profile, kyso.now(), days, issuer.certificate.not_valid_after_utc
    )
    context = ca.settings.context(issuer_name)

    def build(serial: int) -> x509.Certificate:
        return build_certificate(
            profile=profile, subject=subject, public_key=public_key, serial=serial,
            not_before=not_before, not_after=not_after, issuer=issuer, context=context,
            email=email,
        )

    return Prepared(
        profile=profile, issuer=issuer, certificate=build(new_serial()), private_key=private_key,
        email=email, holder_pseudonym=holder_pseudonym, holder_hint=holder_hint,
        replaces=replaces, new_key=new_key, rebuild=build, warnings=warnings,
    )


_IN_CHUNK = 400  # stay far below SQLite's bound-parameter limit


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i:i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


def commit(kyso: Kyso, ca: CertificateAuthority, items: Sequence[Prepared]) -> list[IssuedCertificate]:
    """Store prepared certificates in one transaction — all of them, or (on error) none — and
    record their events with one durable audit write."""
    now = kyso.now()
    c, ck = schema.certificates, schema.certified_keys

    def work(conn: sa.Connection) -> list[tuple[Prepared, dict[str, Any]]]:
        keyed = [(item, spki_sha256(item.certificate.public_key())) for item in items]
        new_keys = [spki for item, spki in keyed if item.new_key]
        if len(set(new_keys)) != len(new_keys):
            raise DuplicateKeyError("the same public key appears twice in one request")
        for chunk in _chunks(new_keys):
            if conn.execute(sa.select(ck.c.spki_sha256).where(ck.c.spki_sha256.in_(chunk))
                            ).first() is not None:
                raise DuplicateKeyError(
                    "this public key has already been certified; a new certificate for the "
                    "same key is a renewal (`kyso cert renew`)"
                )
        taken: set[str] = set()
        for chunk in _chunks([serial_hex(i.certificate.serial_number) for i in items]):
            taken.update(conn.execute(sa.select(c.c.serial).where(c.c.serial.in_(chunk))).scalars())
        stored = []
        for item, _spki in keyed:
            while serial_hex(item.certificate.serial_number) in taken:  # a 2^-158 event
                item = replace(item, certificate=item.rebuild(new_serial()))
            row = certificate_row(
                item.certificate, profile=item.profile.name, issuer=item.issuer.name, now=now,
                holder_pseudonym=item.holder_pseudonym, holder_hint=item.holder_hint,
                email=item.email, replaces=item.replaces,
            )
            row["key_file"] = item.key_file
            stored.append((item, row))
        conn.execute(sa.insert(c), [row for _item, row in stored])
        fresh = [{"spki_sha256": row["spki_sha256"], "first_serial": row["serial"]}
                 for item, row in stored if item.new_key]
        if fresh:
            conn.execute(sa.insert(ck), fresh)
        return stored

    try:
        try:
            stored = kyso.store.write(work)
        except IntegrityError:
            # Another writer (PostgreSQL, no table lock) certified the key or took the serial
            # between our check and insert: the constraint held, nothing was stored.
            raise DuplicateKeyError("this public key or serial was certified concurrently; "
                                    "nothing was stored") from None
        except sa.exc.SQLAlchemyError as exc:
            if isinstance(exc, sa.exc.OperationalError | sa.exc.DBAPIError):
                raise StoreError(f"could not store the certificate: {exc.orig}") from None
            raise
    except KysoError as exc:
        kyso.audit.record_many([
            kyso.event(Layer.PKI, "CERT_CREATION", Outcome.FAILURE, profile=item.profile.name,
                       issuer=item.issuer.name, holder=item.holder_pseudonym, reason=str(exc))
            for item in items])
        raise

    out, events = [], []
    for item, row in stored:
        record = _record_of(row)
        events.append(kyso.event(
            Layer.PKI, "CERT_CREATION", Outcome.SUCCESS, object=record.serial,
            profile=item.profile.name, issuer=item.issuer.name, holder=item.holder_pseudonym,
            holder_hint=item.holder_hint, common_name=record.common_name,
            not_after=record.not_after, replaces=item.replaces,
        ))
        out.append(IssuedCertificate(
            record=record, private_key=item.private_key,
            chain=tuple(ca.chain(item.issuer.name)), warnings=item.warnings,
        ))
    kyso.audit.record_many(events)
    return out


def _record_of(row: dict[str, Any]) -> CertificateRecord:
    return CertificateRecord(
        serial=row["serial"], issuer=row["issuer"], profile=row["profile"],
        subject=row["subject"], common_name=row["common_name"], holder_hint=row["holder_hint"],
        email=row["email"], key_type=row["key_type"], not_before=row["not_before"],
        not_after=row["not_after"], status=Status.VALID, revoked_at=None,
        revocation_reason=None, invalidity_date=None, replaces=row["replaces"], der=row["der"],
    )


def issue(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile_name: str,
    request: SubjectRequest,
    **options: Any,
) -> IssuedCertificate:
    """Prepare and commit one certificate (options as for :func:`prepare`)."""
    return commit(kyso, ca, [prepare(kyso, ca, profile_name, request, **options)])[0]


def issue_many(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile_name: str,
    requests: Sequence[SubjectRequest],
    *,
    group: int = 64,
    **options: Any,
) -> list[IssuedCertificate]:
    """Issue for many holders with group commit: each group of ``group`` certificates is one
    transaction and one durable audit write. A refused request stops the run; groups already
    committed stay issued (see :mod:`kyso.pki.batch` for per-row error reports)."""
    out: list[IssuedCertificate] = []
    for start in range(0, len(requests), group):
        prepared = [prepare(kyso, ca, profile_name, r, **options)
                    for r in requests[start:start + group]]
        out += commit(kyso, ca, prepared)
    return out


def get_record(kyso: Kyso, serial: str) -> tuple[CertificateRecord, str | None]:
    c = schema.certificates
    with kyso.store.read() as conn:
        row = conn.execute(sa.select(c).where(c.c.serial == serial)).mappings().first()
    if row is None:
        raise CertificateNotFoundError(f"no certificate with serial {serial} in this CA")
    return CertificateRecord.from_row(row), row["holder_pseudonym"]


def _key_compromised(kyso: Kyso, record: CertificateRecord) -> bool:
    ck = schema.certified_keys
    spki = spki_sha256(record.certificate.public_key())
    with kyso.store.read() as conn:
        value = conn.execute(sa.select(ck.c.compromised_at).where(ck.c.spki_sha256 == spki)
                             ).scalar()
    return value is not None


def _service_key_file(kyso: Kyso, serial: str) -> str | None:
    c = schema.certificates
    with kyso.store.read() as conn:
        value = conn.execute(sa.select(c.c.key_file).where(c.c.serial == serial)).scalar()
    return str(value) if value else None


def renew(
    kyso: Kyso, ca: CertificateAuthority, serial: str, *, days: int | None = None
) -> IssuedCertificate:
    """A new certificate for the same subject and the same key; the old one stays valid
    until it expires or is revoked."""
    return commit(kyso, ca, [prepare_renewal(kyso, ca, serial, days=days)])[0]


def prepare_renewal(
    kyso: Kyso, ca: CertificateAuthority, serial: str, *, days: int | None = None
) -> Prepared:
    return _prepare_reissue(kyso, ca, serial, days=days, public_key=None, private_key=None,
                            action="renew")


def rekey(
    kyso: Kyso,
    ca: CertificateAuthority,
    serial: str,
    *,
    csr: x509.CertificateSigningRequest | None = None,
    key_type: KeyType | None = None,
    days: int | None = None,
    revoke_old: bool = True,
) -> IssuedCertificate:
    """A new certificate for the same subject and a new key (generated, or from a CSR);
    the old certificate is revoked as superseded unless ``revoke_old`` is False."""
    issued = commit(kyso, ca, [prepare_rekey(kyso, ca, serial, csr=csr, key_type=key_type,
                                             days=days)])[0]
    if revoke_old:
        revoke(kyso, serial, reason="superseded")
    return issued


def prepare_rekey(
    kyso: Kyso,
    ca: CertificateAuthority,
    serial: str,
    *,
    csr: x509.CertificateSigningRequest | None = None,
    key_type: KeyType | None = None,
    days: int | None = None,
) -> Prepared:
    old, _ = get_record(kyso, serial)
    profile = kyso.profiles.get(old.profile)
    public_key: PublicKey | None = None
    private_key: PrivateKey | None = None
    if csr is not None:
        public_key = examine_csr(csr, profile).public_key
    else:
        kt = key_type or KeyType(old.key_type)
        _check_key(profile, kt)
        private_key = generate_key(kt)
    return _prepare_reissue(kyso, ca, serial, days=days, public_key=public_key,
                            private_key=private_key, action="rekey")


def _prepare_reissue(
    kyso: Kyso,
    ca: CertificateAuthority,
    serial: str,
    *,
    days: int | None,
    public_key: PublicKey | None,
    private_key: PrivateKey | None,
    action: str,
) -> Prepared:
    old, pseudonym = get_record(kyso, serial)
    key_file = _service_key_file(kyso, serial)
    if key_file is not None and (public_key is not None or private_key is not None):
        raise PkiError(f"certificate {serial} belongs to a kyso service whose key kyso holds; "
                       "renew it (same key) instead of rekeying")
    if old.status is not Status.VALID:
        raise PkiError(f"certificate {serial} is {old.status.value}; only a valid certificate "
                       f"can be used to {action}")
    if public_key is None and private_key is None and _key_compromised(kyso, old):
        raise PkiError(f"the key of certificate {serial} was reported compromised; rekey instead")
    profile = kyso.profiles.get(old.profile)
    cert = old.certificate
    same_key = public_key is None and private_key is None
    if private_key is not None:
        public_key = private_key.public_key()
    if public_key is None:
        public_key = as_public_key(cert.public_key())
    assert public_key is not None
    prepared = _prepare_signed(
        kyso, ca, profile, old.issuer, cert.subject, old.email, public_key, private_key,
        days=days, holder_pseudonym=pseudonym, holder_hint=old.holder_hint, replaces=old.serial,
        new_key=not same_key,
    )
    return replace(prepared, key_file=key_file)
