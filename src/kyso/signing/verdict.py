"""The verdict model of PDF verification: ETSI EN 319 102-1 indications per signature and per
file, as frozen dataclasses with a stable ``to_dict()`` (documented in docs/verification.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kyso.clock import vn_iso

REPORT_SCHEMA = "kyso-pdf-verify/1"


class Indication(Enum):
    TOTAL_PASSED = "TOTAL-PASSED"
    TOTAL_FAILED = "TOTAL-FAILED"
    INDETERMINATE = "INDETERMINATE"


# The sub-indications kyso uses (EN 319 102-1 §5.1.3 names).
FORMAT_FAILURE = "FORMAT_FAILURE"
HASH_FAILURE = "HASH_FAILURE"
SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
REVOKED = "REVOKED"
NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
TRY_LATER = "TRY_LATER"
REVOKED_NO_POE = "REVOKED_NO_POE"
OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
NO_SIGNATURE = "NO_SIGNATURE_FOUND"

_RANK = {Indication.TOTAL_PASSED: 0, Indication.INDETERMINATE: 1, Indication.TOTAL_FAILED: 2}


def _time(value: dt.datetime | None) -> str | None:
    return vn_iso(value) if value is not None else None


@dataclass(frozen=True)
class SignerInfo:
    subject: str  # personal ID numbers masked
    common_name: str
    uid: str | None  # masked
    serial: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "common_name": self.common_name, "uid": self.uid,
                "serial": self.serial, "issuer": self.issuer,
                "not_before": _time(self.not_before), "not_after": _time(self.not_after)}


@dataclass(frozen=True)
class TimestampInfo:
    time: dt.datetime
    tsa: str
    valid: bool
    trusted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"time": _time(self.time), "tsa": self.tsa, "valid": self.valid,
                "trusted": self.trusted}


@dataclass(frozen=True)
class Check:
    """One named check of a signature: passed or not, with a short detail."""

    name: str
    ok: bool | None  # None: not applicable / not run
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class SignatureReport:
    field: str
    kind: str  # "signature" | "document-timestamp"
    indication: Indication
    sub_indication: str | None
    reasons: tuple[str, ...]
    signer: SignerInfo | None = None
    claimed_time: dt.datetime | None = None
    timestamp: TimestampInfo | None = None
    coverage: str | None = None
    modification_level: str | None = None
    docmdp: str | None = None
    fieldmdp: str | None = None
    revocation: str | None = None  # good | revoked | unknown | not-checked
    revocation_source: str | None = None
    pades_level: str | None = None
    certified: bool = False
    checks: tuple[Check, ...] = ()

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field, "kind": self.kind, "indication": self.indication.value,
            "sub_indication": self.sub_indication, "reasons": list(self.reasons),
            "signer": self.signer.to_dict() if self.signer else None,
            "claimed_signing_time": _time(self.claimed_time),
            "timestamp": self.timestamp.to_dict() if self.timestamp else None,
            "coverage": self.coverage, "modification_level": self.modification_level,
            "docmdp": self.docmdp, "fieldmdp": self.fieldmdp, "certified": self.certified,
            "revocation": {"status": self.revocation, "source": self.revocation_source},
            "pades_level": self.pades_level,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class FileReport:
    path: str
    indication: Indication
    sub_indication: str | None
    signatures: tuple[SignatureReport, ...] = ()
    error: str | None = None
    size: int = 0
    sha256: str | None = None
    validation_time: dt.datetime | None = None
    reasons: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA, "file": self.path, "indication": self.indication.value,
            "sub_indication": self.sub_indication, "error": self.error,
            "reasons": list(self.reasons), "size": self.size, "sha256": self.sha256,
            "validation_time": _time(self.validation_time),
            "signatures": [s.to_dict() for s in self.signatures],
        }


def worst(reports: tuple[SignatureReport, ...]) -> tuple[Indication, str | None]:
    """A file passes only when every signature passes; otherwise it takes the worst verdict."""
    if not reports:
        return Indication.TOTAL_FAILED, NO_SIGNATURE
    bad = max(reports, key=lambda r: _RANK[r.indication])
    return bad.indication, bad.sub_indication


def failed_file(path: str, reason: str, *, size: int = 0, sha256: str | None = None,
                validation_time: dt.datetime | None = None) -> FileReport:
    """The verdict for a file that could not be checked at all: never a pass."""
    return FileReport(path=path, indication=Indication.TOTAL_FAILED,
                      sub_indication=FORMAT_FAILURE, error=reason, size=size, sha256=sha256,
                      validation_time=validation_time, reasons=(reason,))
