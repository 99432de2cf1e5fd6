"""Passive authentication of a chip (ICAO Doc 9303-11 §5.1), with a per-check report.

Checks, in order (each PASSED, FAILED or INDETERMINATE with a reason, as in EU DSS):

1. ``sod-format`` — EF.SOD is a CMS SignedData with one signer over an LDSSecurityObject
   (eContentType 2.23.136.1.1.1) with a supported hash algorithm, one hash per data group;
2. ``sod-signature`` — the signed attributes hold the right content-type and a message-digest
   equal to the hash of the eContent, and the DS key's signature over their DER verifies
   (ECDSA, RSA PKCS#1 v1.5 or RSA-PSS);
3. ``ds-chain`` — the DS certificate is signed by one of the trusted CSCA certificates, both are
   valid at the clock's time, the CSCA is a CA with keyCertSign, the DS is not a CA and may sign
   (digitalSignature);
4. ``ds-revocation`` — a CRL signed by that CSCA and current at the clock's time does not list
   the DS (no such CRL: INDETERMINATE, which does not pass);
5. ``data-group-hashes`` — DG1, DG2 and DG13 are present and covered by the SOD, and every data
   group on the chip hashes to its value in the SOD;
6. ``personal-data`` — DG13 parses to valid personal data and DG1's MRZ (check digits, document
   number, birth date, sex, ID number) agrees with it.

:func:`check_passive_auth` never raises for a bad chip: any exception inside a check makes that
check FAILED (fail closed). :func:`verify_passive_auth` raises :class:`IdentityError` naming the
checks that did not pass.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kyso.authn.chip import (
    LDS_SECURITY_OBJECT_OID,
    REQUIRED_DATA_GROUPS,
    ChipData,
    ChipPersonalData,
    LDSSecurityObject,
    decode_dg13,
    mrz_check_digit,
    read_tlv,
)
from kyso.clock import vn_iso
from kyso.errors import IdentityError
from kyso.pki.serials import serial_hex

__all__ = [
    "Check",
    "CheckResult",
    "CheckStatus",
    "Indication",
    "PassiveAuthResult",
    "check_passive_auth",
    "verify_passive_auth",
]

_DIGESTS: dict[str, Callable[[bytes], Any]] = {
    "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_HASH_OBJECTS: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


class Check(StrEnum):
    SOD_FORMAT = "sod-format"
    SOD_SIGNATURE = "sod-signature"
    DS_CHAIN = "ds-chain"
    DS_REVOCATION = "ds-revocation"
    DATA_GROUP_HASHES = "data-group-hashes"
    PERSONAL_DATA = "personal-data"


class CheckStatus(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    INDETERMINATE = "INDETERMINATE"


class Indication(StrEnum):
    TOTAL_PASSED = "TOTAL-PASSED"
    TOTAL_FAILED = "TOTAL-FAILED"
    INDETERMINATE = "INDETERMINATE"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    status: CheckStatus
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check.value, "status": self.status.value, "reason": self.reason}


@dataclass(frozen=True)
class PassiveAuthResult:
    """The report. ``personal_data`` is what DG13 says; trust it only when :attr:`passed`."""

    indication: Indication
    checks: tuple[CheckResult, ...]
    checked_at: dt.datetime
    ds_serial: str | None = None
    ds_subject: str | None = None
    csca_subject: str | None = None
    document_number: str | None = None
    personal_data: ChipPersonalData | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is not CheckStatus.PASSED)

    def status_of(self, check: Check) -> CheckStatus:
        return next(c.status for c in self.checks if c.check is check)

    def to_dict(self) -> dict[str, Any]:
        return {
            "indication": self.indication.value,
            "checked_at": vn_iso(self.checked_at),
            "checks": [c.to_dict() for c in self.checks],
            "ds_serial": self.ds_serial, "ds_subject": self.ds_subject,
            "csca_subject": self.csca_subject, "document_number": self.document_number,
            "personal_data": self.personal_data.to_dict() if self.personal_data else None,
        }


class _Failed(Exception):
    pass


class _Indeterminate(Exception):
    pass


@dataclass
class _Parsed:
    econtent: bytes
    hash_algorithm: str
    dg_hashes: dict[int, bytes]
    signer_info: cms.SignerInfo
    ds: x509.Certificate


def check_passive_auth(chip: ChipData, *, csca: Sequence[x509.Certificate],
                       crls: Sequence[x509.CertificateRevocationList] = (),
                       now: dt.datetime) -> PassiveAuthResult:
    """Run every check against the trusted CSCA certificates and CRLs at time ``now``."""
    results: list[CheckResult] = []
    state: dict[str, Any] = {}

    def run(check: Check, needs: tuple[Check, ...], fn: Callable[[], str]) -> None:
        blocked = [r.check.value for r in results if r.check in needs
                   and r.status is not CheckStatus.PASSED]
        if blocked:
            results.append(CheckResult(check, CheckStatus.INDETERMINATE,
                                       f"not run: {', '.join(blocked)} did not pass"))
            return
        try:
            results.append(CheckResult(check, CheckStatus.PASSED, fn()))
        except _Failed as exc:
            results.append(CheckResult(check, CheckStatus.FAILED, str(exc)))
        except _Indeterminate as exc:
            results.append(CheckResult(check, CheckStatus.INDETERMINATE, str(exc)))
        except Exception as exc:  # fail closed: a malformed structure is a failed check
            results.append(CheckResult(check, CheckStatus.FAILED,
                                       f"malformed data ({type(exc).__name__})"))

    def parse() -> str:
        state["sod"] = _parse_sod(chip.sod)
        return "CMS SignedData over an LDSSecurityObject"

    def signature() -> str:
        _check_signature(state["sod"])
        return "SOD signature and message digest verify"

    def chain() -> str:
        state["csca"] = _check_chain(state["sod"].ds, csca, now)
        return f"issued by {state['csca'].subject.rfc4514_string()}"

    def revocation() -> str:
        return _check_revocation(state["sod"].ds, state["csca"], crls, now)

    def data_groups() -> str:
        return _check_hashes(chip, state["sod"])

    def personal() -> str:
        state["personal"] = decode_dg13(chip.data_groups[13]) if 13 in chip.data_groups else None
        if state["personal"] is None:
            raise _Failed("DG13 is missing")
        _check_mrz(chip.data_groups.get(1, b""), state["personal"])
        return "DG13 is valid and agrees with the MRZ"

    run(Check.SOD_FORMAT, (), parse)
    run(Check.SOD_SIGNATURE, (Check.SOD_FORMAT,), signature)
    run(Check.DS_CHAIN, (Check.SOD_FORMAT,), chain)
    run(Check.DS_REVOCATION, (Check.SOD_FORMAT, Check.DS_CHAIN), revocation)
    run(Check.DATA_GROUP_HASHES, (Check.SOD_FORMAT,), data_groups)
    run(Check.PERSONAL_DATA, (), personal)

    statuses = {r.status for r in results}
    indication = (Indication.TOTAL_FAILED if CheckStatus.FAILED in statuses else
                  Indication.INDETERMINATE if CheckStatus.INDETERMINATE in statuses else
                  Indication.TOTAL_PASSED)
    parsed: _Parsed | None = state.get("sod")
    personal_data: ChipPersonalData | None = state.get("personal")
    csca_used: x509.Certificate | None = state.get("csca")
    return PassiveAuthResult(
        indication=indication, checks=tuple(results), checked_at=now,
        ds_serial=serial_hex(parsed.ds.serial_number) if parsed else None,
        ds_subject=parsed.ds.subject.rfc4514_string() if parsed else None,
        csca_subject=csca_used.subject.rfc4514_string() if csca_used else None,
        document_number=personal_data.document_number if personal_data else None,
        personal_data=personal_data)


def verify_passive_auth(chip: ChipData, *, csca: Sequence[x509.Certificate],
                        crls: Sequence[x509.CertificateRevocationList] = (),
                        now: dt.datetime) -> PassiveAuthResult:
    """Like :func:`check_passive_auth`, but raise :class:`IdentityError` unless every check
    passed; the message names each failing check and its reason."""
    result = check_passive_auth(chip, csca=csca, crls=crls, now=now)
    if not result.passed:
        raise IdentityError("chip passive authentication failed: " + "; ".join(
            f"{c.check.value} {c.status.value}: {c.reason}" for c in result.failures))
    return result


# --- the checks --------------------------------------------------------------------------------

def _parse_sod(sod: bytes) -> _Parsed:
    try:
        content = read_tlv(sod, b"\x77", "EF.SOD")
    except IdentityError as exc:
        raise _Failed(str(exc)) from None
    info = cms.ContentInfo.load(content, strict=True)
    if info["content_type"].native != "signed_data":
        raise _Failed("EF.SOD does not hold a CMS SignedData")
    sd = info["content"]
    encap = sd["encap_content_info"]
    if encap["content_type"].dotted != LDS_SECURITY_OBJECT_OID:
        raise _Failed("the signed content is not an LDS Security Object")
    if encap["content"].native is None:
        raise _Failed("the LDS Security Object is missing (detached signature)")
    econtent = bytes(encap["content"].contents)
    lds = LDSSecurityObject.load(econtent, strict=True)
    algorithm = lds["hash_algorithm"]["algorithm"].native
    if algorithm not in _DIGESTS:
        raise _Failed(f"unsupported data-group hash algorithm {algorithm}")
    dg_hashes: dict[int, bytes] = {}
    for item in lds["data_group_hash_values"]:
        number = int(item["data_group_number"].native)
        if number in dg_hashes:
            raise _Failed(f"DG{number} has two hashes in the SOD")
        dg_hashes[number] = bytes(item["data_group_hash_value"].native)
    signers = list(sd["signer_infos"])
    if len(signers) != 1:
        raise _Failed(f"the SOD has {len(signers)} signers; exactly one is expected")
    signer = signers[0]
    certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"]
             if c.name == "certificate"] if sd["certificates"].native is not None else []
    sid = signer["sid"]
    if sid.name == "issuer_and_serial_number":
        serial = int(sid.chosen["serial_number"].native)
        issuer = sid.chosen["issuer"].dump()
        match = [c for c in certs if c.serial_number == serial
                 and c.issuer.public_bytes() == issuer]
    else:
        ski = bytes(sid.chosen.native)
        match = [c for c in certs if _ski(c) == ski]
    if len(match) != 1:
        raise _Failed("the Document Signer certificate is not in the SOD")
    return _Parsed(econtent, algorithm, dg_hashes, signer, match[0])


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _check_signature(parsed: _Parsed) -> None:
    si = parsed.signer_info
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _DIGESTS:
        raise _Failed(f"unsupported digest algorithm {digest_name}")
    if si["signed_attrs"].native is None or len(si["signed_attrs"]) == 0:
        raise _Failed("the SOD has no signed attributes")
    attrs: dict[str, Any] = {}
    for attr in si["signed_attrs"]:
        kind = attr["type"].dotted
        if kind in attrs or len(attr["values"]) != 1:
            raise _Failed("a signed attribute is repeated")
        attrs[kind] = attr["values"][0]
    if _CONTENT_TYPE not in attrs or attrs[_CONTENT_TYPE].dotted != LDS_SECURITY_OBJECT_OID:
        raise _Failed("the content-type signed attribute is missing or wrong")
    expected = _DIGESTS[digest_name](parsed.econtent).digest()
    if _MESSAGE_DIGEST not in attrs or not hmac.compare_digest(
            bytes(attrs[_MESSAGE_DIGEST].native), expected):
        raise _Failed("the message digest does not match the LDS Security Object")
    signed = b"\x31" + si["signed_attrs"].dump()[1:]
    algorithm = si["signature_algorithm"]
    kind = algorithm.signature_algo
    try:
        hash_name = algorithm.hash_algo
    except ValueError:  # a bare "ecdsa" / "rsassa_pkcs1v15" OID: the digest algorithm applies
        hash_name = digest_name
    if hash_name not in _HASH_OBJECTS:
        raise _Failed(f"unsupported signature hash {hash_name}")
    chosen = _HASH_OBJECTS[hash_name]
    key = parsed.ds.public_key()
    signature = bytes(si["signature"].native)
    try:
        if kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(chosen))
        elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), chosen)
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            salt = int(algorithm["parameters"]["salt_length"].native)
            key.verify(signature, signed, padding.PSS(padding.MGF1(chosen), salt), chosen)
        else:
            raise _Failed(f"signature algorithm {kind} does not fit the Document Signer key")
    except InvalidSignature:
        raise _Failed("the SOD signature does not verify with the Document Signer key") from None


def _valid_at(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise _Failed(f"the {what} certificate is not valid before "
                      f"{vn_iso(cert.not_valid_before_utc)}")
    if now > cert.not_valid_after_utc:
        raise _Failed(f"the {what} certificate expired on {vn_iso(cert.not_valid_after_utc)}")


def _check_chain(ds: x509.Certificate, trusted: Sequence[x509.Certificate],
                 now: dt.datetime) -> x509.Certificate:
    if not trusted:
        raise _Failed("no trusted CSCA certificate was given")
    named = [c for c in trusted if c.subject == ds.issuer]
    if not named:
        raise _Failed(f"the Document Signer's issuer {ds.issuer.rfc4514_string()} is not a "
                      "trusted CSCA")
    issuer = None
    for candidate in named:
        try:
            ds.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        issuer = candidate
        break
    if issuer is None:
        raise _Failed("the Document Signer certificate is not signed by the trusted CSCA "
                      "of that name (rogue CSCA)")
    bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    if not bc.ca or not ku.key_cert_sign:
        raise _Failed("the trusted CSCA certificate is not a CA allowed to sign certificates")
    _valid_at(issuer, now, "CSCA")
    _valid_at(ds, now, "Document Signer")
    try:
        if ds.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise _Failed("the Document Signer certificate is a CA certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        if not ds.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise _Failed("the Document Signer certificate may not sign (no digitalSignature)")
    except x509.ExtensionNotFound:
        raise _Failed("the Document Signer certificate has no key usage") from None
    return issuer


def _check_revocation(ds: x509.Certificate, issuer: x509.Certificate,
                      crls: Sequence[x509.CertificateRevocationList], now: dt.datetime) -> str:
    own = [c for c in crls if c.issuer == issuer.subject
           and c.is_signature_valid(issuer.public_key())]  # type: ignore[arg-type]
    if not own:
        raise _Indeterminate("no CRL signed by the CSCA is available")
    crl = max(own, key=lambda c: c.last_update_utc)
    if crl.next_update_utc is None or now > crl.next_update_utc or now < crl.last_update_utc:
        raise _Indeterminate("the CSCA CRL is not current (published "
                             f"{vn_iso(crl.last_update_utc)}); publish a new one")
    entry = crl.get_revoked_certificate_by_serial_number(ds.serial_number)
    if entry is not None:
        reason = ""
        with contextlib.suppress(x509.ExtensionNotFound):
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            reason = f", reason {flag.value}"
        raise _Failed(f"the Document Signer {serial_hex(ds.serial_number)} was revoked on "
                      f"{vn_iso(entry.revocation_date_utc)}{reason}")
    return f"not revoked (CSCA CRL of {vn_iso(crl.last_update_utc)})"


def _check_hashes(chip: ChipData, parsed: _Parsed) -> str:
    digest = _DIGESTS[parsed.hash_algorithm]
    missing = [f"DG{n}" for n in REQUIRED_DATA_GROUPS if n not in chip.data_groups]
    if missing:
        raise _Failed(f"the chip lacks {', '.join(missing)}")
    uncovered = [f"DG{n}" for n in sorted(chip.data_groups) if n not in parsed.dg_hashes]
    if uncovered:
        raise _Failed(f"{', '.join(uncovered)} not covered by the SOD")
    altered = [f"DG{n}" for n, data in sorted(chip.data_groups.items())
               if not hmac.compare_digest(digest(data).digest(), parsed.dg_hashes[n])]
    if altered:
        raise _Failed(f"hash of {', '.join(altered)} does not match the SOD (data altered)")
    return f"{len(chip.data_groups)} data groups match their {parsed.hash_algorithm} hashes"


def _check_mrz(dg1: bytes, data: ChipPersonalData) -> None:
    try:
        mrz = read_tlv(read_tlv(dg1, b"\x61", "DG1"), b"\x5f\x1f", "DG1 MRZ").decode("ascii")
    except (IdentityError, UnicodeDecodeError):
        raise _Failed("DG1 does not hold a readable MRZ") from None
    if len(mrz) != 90:
        raise _Failed("the MRZ is not three lines of 30 characters")
    line1, line2 = mrz[:30], mrz[30:60]
    fields = ((line1[5:14], line1[14], "document number"), (line2[0:6], line2[6], "birth date"),
              (line2[8:14], line2[14], "expiry date"),
              (line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29], line2[29], "composite"))
    for text, digit, what in fields:
        if mrz_check_digit(text) != digit:
            raise _Failed(f"the MRZ check digit of the {what} is wrong")
    person = data.person
    sex = "M" if person.sex.value == "male" else "F"
    if (line1[5:14].rstrip("<") != data.document_number
            or line2[0:6] != person.birth_date.strftime("%y%m%d") or line2[7] != sex
            or line2[8:14] != data.expiry_date.strftime("%y%m%d")
            or line1[15:27] != person.id_number):
        raise _Failed("the MRZ (DG1) and the personal data (DG13) disagree")
