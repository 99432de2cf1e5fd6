"""The test Country Signing CA (CSCA) of the simulated chip ID card, its Document Signers (DS)
and its CRL (ICAO Doc 9303-12).

The CSCA is its own self-signed root, separate from the e-government hierarchy of
:mod:`kyso.pki.authority`: a chip is trusted because its DS chains to the country's CSCA,
never to the province's CA. Layout under ``<home>/csca/`` (keys encrypted PKCS#8, 0600, with
the CA passphrase):

- ``csca.key.pem`` / ``csca.crt.pem`` — EC P-384, C=VN, keyCertSign + cRLSign, CA pathLen 0;
- ``ds/<serial>.key.pem`` / ``ds/<serial>.crt.pem`` — EC P-256 Document Signers,
  digitalSignature only, no basicConstraints (9303-12 §7.1.1). A DS key signs chips for
  :data:`DS_KEY_USAGE` (privateKeyUsagePeriod); its certificate stays valid that long plus
  :data:`DOCUMENT_VALIDITY`, so every chip it signed verifies until the card expires (the ICAO
  rule, which makes the certificate long-lived compared with the key's use);
- ``csca.crl`` / ``csca.crl.pem`` — the CSCA CRL (v2, cRLNumber, reason codes), republished on
  every revocation and valid :data:`CRL_VALIDITY` (ICAO: at most 90 days);
- ``inventory.json`` — the DS serials issued, their status and the last cRLNumber.

Every change holds an exclusive lock on ``csca/.lock`` and writes files atomically.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kyso.audit import Layer, Outcome
from kyso.clock import vn_iso
from kyso.config import check_new_passphrase
from kyso.context import Kyso
from kyso.errors import CertificateNotFoundError, PkiError, RevocationError
from kyso.files import atomic_write, ensure_private_dir, exclusive_lock
from kyso.pki.keys import PrivateKey, load_private_key, save_private_key, spki_sha256
from kyso.pki.serials import new_serial, parse_serial, serial_hex

__all__ = [
    "CRL_VALIDITY",
    "CSCA_VALIDITY",
    "DOCUMENT_VALIDITY",
    "DS_KEY_USAGE",
    "CscaInfo",
    "DocumentSigner",
    "DocumentSignerInfo",
    "DsReason",
    "DsStatus",
    "build_csca_certificate",
    "build_csca_crl",
    "build_ds_certificate",
    "csca_exists",
    "csca_info",
    "current_document_signer",
    "init_csca",
    "load_csca_certificate",
    "load_csca_crl",
    "publish_csca_crl",
    "revoke_document_signer",
]

CSCA_VALIDITY = dt.timedelta(days=15 * 365)
DS_KEY_USAGE = dt.timedelta(days=90)
DOCUMENT_VALIDITY = dt.timedelta(days=10 * 365 + 3)
CRL_VALIDITY = dt.timedelta(days=90)
ORGANISATION = "Bộ Công an (thử nghiệm)"
UNIT = "Cục Cảnh sát quản lý hành chính về trật tự xã hội"
INVENTORY_FORMAT = "kyso-csca-inventory"


class DsStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"


class DsReason(StrEnum):
    """Why a Document Signer is revoked (RFC 5280 reason codes that make sense for a DS)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key-compromise"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation-of-operation"

    @property
    def flag(self) -> x509.ReasonFlags:
        return _FLAGS[self]


_FLAGS = {
    DsReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    DsReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    DsReason.SUPERSEDED: x509.ReasonFlags.superseded,
    DsReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True)
class DocumentSignerInfo:
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    usage_until: dt.datetime
    status: DsStatus
    revoked_at: dt.datetime | None = None
    reason: DsReason | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "status": self.status.value,
            "not_before": vn_iso(self.not_before), "not_after": vn_iso(self.not_after),
            "usage_until": vn_iso(self.usage_until),
            "revoked_at": vn_iso(self.revoked_at) if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
        }

    def _json(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "status": self.status.value,
            "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
            "usage_until": self.usage_until.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
        }

    @classmethod
    def _from_json(cls, item: dict[str, Any]) -> DocumentSignerInfo:
        return cls(
            serial=str(item["serial"]), status=DsStatus(item["status"]),
            not_before=dt.datetime.fromisoformat(item["not_before"]),
            not_after=dt.datetime.fromisoformat(item["not_after"]),
            usage_until=dt.datetime.fromisoformat(item["usage_until"]),
            revoked_at=dt.datetime.fromisoformat(item["revoked_at"]) if item["revoked_at"] else None,
            reason=DsReason(item["reason"]) if item["reason"] else None,
        )


@dataclass(frozen=True)
class CscaInfo:
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    spki_sha256: str
    crl_number: int
    certificate_path: Path
    crl_path: Path
    document_signers: tuple[DocumentSignerInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "serial": self.serial,
            "not_before": vn_iso(self.not_before), "not_after": vn_iso(self.not_after),
            "spki_sha256": self.spki_sha256, "crl_number": self.crl_number,
            "certificate": str(self.certificate_path), "crl": str(self.crl_path),
            "document_signers": [d.to_dict() for d in self.document_signers],
        }


@dataclass(frozen=True)
class DocumentSigner:
    """A Document Signer able to sign SODs: its certificate and unlocked key."""

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)


# --- pure builders -----------------------------------------------------------------------------

def _name(common_name: str, *, unit: bool = False) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, UNIT))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def build_csca_certificate(key: PrivateKey, now: dt.datetime, *,
                           common_name: str = "CSCA Việt Nam (thử nghiệm)") -> x509.Certificate:
    """A self-signed CSCA certificate (9303-12 profile: CA pathLen 0, keyCertSign + cRLSign)."""
    name = _name(common_name)
    public = key.public_key()
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(new_serial()).not_valid_before(now).not_valid_after(now + CSCA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )


def build_ds_certificate(csca_cert: x509.Certificate, csca_key: PrivateKey,
                         public_key: ec.EllipticCurvePublicKey, now: dt.datetime
                         ) -> x509.Certificate:
    """A Document Signer certificate: digitalSignature, privateKeyUsagePeriod, no CA flag."""
    ski = csca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + DS_KEY_USAGE + DOCUMENT_VALIDITY, csca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"Document Signer {now:%Y%m%d%H%M%S}", unit=True))
        .issuer_name(csca_cert.subject).public_key(public_key)
        .serial_number(new_serial()).not_valid_before(now).not_valid_after(not_after)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.PrivateKeyUsagePeriod(now.replace(tzinfo=None),
                                                  (now + DS_KEY_USAGE).replace(tzinfo=None)),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(csca_key, hashes.SHA384())
    )


def build_csca_crl(csca_cert: x509.Certificate, csca_key: PrivateKey,
                   revoked: list[DocumentSignerInfo], number: int, now: dt.datetime
                   ) -> x509.CertificateRevocationList:
    ski = csca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(csca_cert.subject)
        .last_update(now).next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    for ds in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(int(ds.serial, 16))
                 .revocation_date(ds.revoked_at or now))
        if ds.reason not in (None, DsReason.UNSPECIFIED):
            assert ds.reason is not None
            entry = entry.add_extension(x509.CRLReason(ds.reason.flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(csca_key, hashes.SHA384())


# --- files -------------------------------------------------------------------------------------

def _dir(kyso: Kyso) -> Path:
    return kyso.settings.home / "csca"


def _paths(kyso: Kyso) -> dict[str, Path]:
    d = _dir(kyso)
    return {"key": d / "csca.key.pem", "cert": d / "csca.crt.pem", "crl": d / "csca.crl",
            "crl_pem": d / "csca.crl.pem", "inventory": d / "inventory.json", "ds": d / "ds"}


@contextlib.contextmanager
def _locked(kyso: Kyso) -> Iterator[None]:
    folder = ensure_private_dir(_dir(kyso))
    with exclusive_lock(folder / ".lock",
                        lambda why: PkiError(f"cannot write into {folder}: {why}")):
        yield


def csca_exists(kyso: Kyso) -> bool:
    return _paths(kyso)["cert"].exists()


def load_csca_certificate(kyso: Kyso) -> x509.Certificate:
    path = _paths(kyso)["cert"]
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(f"no test CSCA in {kyso.settings.home}; create it with "
                       "`kyso id csca init`") from None
    except (OSError, ValueError):
        raise PkiError(f"the CSCA certificate {path} is unreadable or corrupted") from None


def load_csca_crl(kyso: Kyso) -> x509.CertificateRevocationList | None:
    path = _paths(kyso)["crl"]
    try:
        return x509.load_der_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise PkiError(f"the CSCA CRL {path} is unreadable or corrupted") from None


def _read_inventory(kyso: Kyso) -> tuple[int, list[DocumentSignerInfo]]:
    path = _paths(kyso)["inventory"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != INVENTORY_FORMAT:
            raise ValueError("format")
        return int(data["crl_number"]), [DocumentSignerInfo._from_json(i)
                                         for i in data["document_signers"]]
    except FileNotFoundError:
        return 0, []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise PkiError(f"the CSCA inventory {path} is corrupted") from None


def _write_inventory(kyso: Kyso, crl_number: int, signers: list[DocumentSignerInfo]) -> None:
    data = {"format": INVENTORY_FORMAT, "version": 1, "crl_number": crl_number,
            "document_signers": [d._json() for d in signers]}
    atomic_write(_paths(kyso)["inventory"],
                 (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _csca_key(kyso: Kyso, passphrase: str) -> PrivateKey:
    key = load_private_key(_paths(kyso)["key"], passphrase)
    record = f"the CSCA key in {_dir(kyso)}"
    if spki_sha256(key.public_key()) != spki_sha256(load_csca_certificate(kyso).public_key()):
        raise PkiError(f"{record} does not match the CSCA certificate")
    return key


# --- operations --------------------------------------------------------------------------------

def init_csca(kyso: Kyso, passphrase: str) -> CscaInfo:
    """Create the test CSCA and publish its first (empty) CRL. Never overwrites one."""
    check_new_passphrase(passphrase, "CA passphrase")
    paths = _paths(kyso)
    with _locked(kyso):
        if paths["cert"].exists() or paths["key"].exists():
            raise PkiError(f"a test CSCA already exists in {kyso.settings.home}; "
                           "it is never overwritten")
        now = kyso.now()
        key = ec.generate_private_key(ec.SECP384R1())
        cert = build_csca_certificate(key, now)
        save_private_key(paths["key"], key, passphrase, kyso.settings.key_kdf_iterations)
        try:
            atomic_write(paths["cert"], cert.public_bytes(serialization.Encoding.PEM),
                         exclusive=True)
        except BaseException:
            paths["key"].unlink(missing_ok=True)
            raise
        _publish(kyso, cert, key, now)
    kyso.record(Layer.PKI, "CA_CREATION", Outcome.SUCCESS, object="csca",
                serial=serial_hex(cert.serial_number), subject=cert.subject.rfc4514_string(),
                key_type="ec-p384")
    return csca_info(kyso)


def _publish(kyso: Kyso, cert: x509.Certificate, key: PrivateKey, now: dt.datetime) -> int:
    """Sign and write the next CRL (the caller holds the lock); returns its number."""
    number, signers = _read_inventory(kyso)
    number += 1
    crl = build_csca_crl(cert, key, [d for d in signers if d.status is DsStatus.REVOKED],
                         number, now)
    paths = _paths(kyso)
    atomic_write(paths["crl"], crl.public_bytes(serialization.Encoding.DER))
    atomic_write(paths["crl_pem"], crl.public_bytes(serialization.Encoding.PEM))
    _write_inventory(kyso, number, signers)
    kyso.record(Layer.PKI, "CRL_CREATION", Outcome.SUCCESS, object="csca", crl_number=number,
                entries=len(crl))
    return number


def publish_csca_crl(kyso: Kyso, passphrase: str) -> CscaInfo:
    """Republish the CSCA CRL (before the current one's nextUpdate)."""
    cert = load_csca_certificate(kyso)
    key = _csca_key(kyso, passphrase)
    with _locked(kyso):
        _publish(kyso, cert, key, kyso.now())
    return csca_info(kyso)


def csca_info(kyso: Kyso) -> CscaInfo:
    cert = load_csca_certificate(kyso)
    number, signers = _read_inventory(kyso)
    paths = _paths(kyso)
    return CscaInfo(
        subject=cert.subject.rfc4514_string(), serial=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        spki_sha256=spki_sha256(cert.public_key()), crl_number=number,
        certificate_path=paths["cert"], crl_path=paths["crl"], document_signers=tuple(signers))


def current_document_signer(kyso: Kyso, passphrase: str, *, create_csca: bool = True
                            ) -> DocumentSigner:
    """The DS that signs new chips: the newest valid one still inside its key-usage period,
    or a new one issued under the CSCA (the CSCA itself is created on first use when
    ``create_csca``)."""
    if not csca_exists(kyso):
        if not create_csca:
            load_csca_certificate(kyso)  # raises the "no CSCA" error
        with contextlib.suppress(PkiError):  # a concurrent first use may have won the race
            init_csca(kyso, passphrase)
    csca_cert = load_csca_certificate(kyso)
    now = kyso.now()
    ds_dir = _paths(kyso)["ds"]
    with _locked(kyso):
        number, signers = _read_inventory(kyso)
        usable = [d for d in signers if d.status is DsStatus.VALID
                  and d.not_before <= now < d.usage_until]
        if usable:
            newest = max(usable, key=lambda d: d.not_before)
            cert = x509.load_pem_x509_certificate(
                (ds_dir / f"{newest.serial}.crt.pem").read_bytes())
            return DocumentSigner(cert, load_private_key(ds_dir / f"{newest.serial}.key.pem",
                                                         passphrase))
        csca_key = _csca_key(kyso, passphrase)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_ds_certificate(csca_cert, csca_key, key.public_key(), now)
        serial = serial_hex(cert.serial_number)
        ensure_private_dir(ds_dir)
        save_private_key(ds_dir / f"{serial}.key.pem", key, passphrase,
                         kyso.settings.key_kdf_iterations)
        atomic_write(ds_dir / f"{serial}.crt.pem", cert.public_bytes(serialization.Encoding.PEM),
                     exclusive=True)
        signers.append(DocumentSignerInfo(serial, cert.not_valid_before_utc,
                                          cert.not_valid_after_utc, now + DS_KEY_USAGE,
                                          DsStatus.VALID))
        _write_inventory(kyso, number, signers)
    kyso.record(Layer.PKI, "CERT_CREATION", Outcome.SUCCESS, object=serial,
                profile="document-signer", issuer="csca")
    return DocumentSigner(cert, key)


def revoke_document_signer(kyso: Kyso, passphrase: str, serial: str,
                           reason: DsReason = DsReason.UNSPECIFIED) -> DocumentSignerInfo:
    """Revoke a DS and republish the CSCA CRL at once: chips it signed stop verifying."""
    wanted = parse_serial(serial)
    cert = load_csca_certificate(kyso)
    key = _csca_key(kyso, passphrase)
    now = kyso.now()
    with _locked(kyso):
        number, signers = _read_inventory(kyso)
        found = [d for d in signers if d.serial == wanted]
        if not found:
            raise CertificateNotFoundError(f"no Document Signer with serial {wanted}")
        if found[0].status is DsStatus.REVOKED:
            raise RevocationError(f"Document Signer {wanted} is already revoked")
        revoked = DocumentSignerInfo(found[0].serial, found[0].not_before, found[0].not_after,
                                     found[0].usage_until, DsStatus.REVOKED, now, reason)
        _write_inventory(kyso, number, [revoked if d.serial == wanted else d for d in signers])
        _publish(kyso, cert, key, now)
    kyso.record(Layer.PKI, "CERT_REVOKED", Outcome.SUCCESS, object=wanted,
                profile="document-signer", issuer="csca", reason=reason.value)
    return revoked
