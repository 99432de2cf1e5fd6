"""Verification of signed PDF dossiers with verdicts that fail closed (domain.md §2).

Each signature gets two independent opinions and our own checks:

- pyHanko's AdES procedure (EN 319 102-1: basic validation for B-B, validation with time and
  long-term validation when a signature timestamp exists): trust, revocation, time, POE;
- pyHanko's classic status: integrity, coverage and the difference analysis of every update
  after the signature, which the AdES verdict alone does not see;
- our own ByteRange sanity check, key-usage fit, and the revocation state in this home's store.

The verdict is TOTAL-PASSED only when all of them pass. Any exception while checking is a
TOTAL-FAILED / FORMAT_FAILURE with the reason, never a pass and never a traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.crypt.api import PdfMacStatus
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESStatus
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.ades import (
    ades_basic_validation,
    ades_lta_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator.context import (
    CertValidationPolicySpec,
    ValidationContext,
    ValidationDataHandlers,
    bootstrap_validation_data_handlers,
)
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from kyso.clock import Clock
from kyso.errors import KysoError
from kyso.pki.identifiers import mask_id
from kyso.pki.records import masked_subject
from kyso.signing import speedups
from kyso.signing import verdict as v
from kyso.signing.pdfio import IN_MEMORY_MAX, FileView, PdfData, check_header, pdf_errors
from kyso.signing.verdict import Check, FileReport, Indication, SignatureReport

T = TypeVar("T")
MAX_PDF_BYTES = 512 * 1024 * 1024
MAX_DSS_ITEMS = 1000
# EKUs that allow document signatures; a certificate without EKU is unrestricted.
SIGNING_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
    "1.3.6.1.5.5.7.3.36",  # id-kp-documentSigning (RFC 9336)
    "1.2.840.113583.1.1.5",  # Adobe Authentic Documents Trust
    "1.3.6.1.4.1.311.10.3.12",  # Microsoft document signing
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string,
}
TRY_LATER = v.TRY_LATER
CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
NO_REVINFO_HINT = ("no revocation information for the signer's chain: publish the CRLs "
                   "(kyso crl publish), verify --online, or sign at B-LT, which embeds them")
_HEX = re.compile(rb"<[0-9A-Fa-f\s]*>")
_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\b")
_PDF_WHITESPACE = b"\x00\t\n\x0c\r "


@dataclass(frozen=True)
class StoreStatus:
    """What this home's CA store knows about a certificate it issued."""

    status: str  # valid | revoked | on_hold
    revoked_at: dt.datetime | None


StoreLookup = Callable[[x509.Certificate], StoreStatus | None]


@dataclass(frozen=True)
class VerifyOptions:
    trust_roots: tuple[x509.Certificate, ...]
    crls: tuple[bytes, ...] = ()  # current CRLs known locally (the home's published ones)
    online: bool = False
    store: StoreLookup | None = None


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class _Material:
    """Validation data found in the document's DSS."""

    certs: tuple[asn1_x509.Certificate, ...] = ()
    ocsps: tuple[Any, ...] = ()
    crls: tuple[Any, ...] = ()

    @property
    def has_revinfo(self) -> bool:
        return bool(self.ocsps or self.crls)


class PdfVerifier:
    """Verifies PDFs against fixed trust anchors; build once, call for many files."""

    def __init__(self, options: VerifyOptions, clock: Clock) -> None:
        if not options.trust_roots:
            raise KysoError("no trust anchor: give --trust root.pem or run in a home with a CA")
        speedups.install()
        self.options = options
        self.clock = clock
        # shared by every thread that calls verify(): parsed once, here
        self._roots = [speedups.parsed_for_threads(_asn1(c)) for c in options.trust_roots]
        self._crls = [speedups.parsed_for_threads(asn1_crl.CertificateList.load(c))
                      for c in options.crls]
        self._trust = SimpleTrustManager.build(trust_roots=self._roots)
        self._signatures = speedups.CachingSignatureValidator()
        self._local = threading.local()

    def verify(self, data: bytes, path: str = "-", password: str | None = None) -> FileReport:
        """Verify every signature of ``data``; ``password`` opens an encrypted PDF (the user or
        the owner password)."""
        now = self.clock.now()
        return self._verify(data, io.BytesIO(data), hashlib.sha256(data).hexdigest(), path,
                            password, now)

    def verify_file(self, file: Path | str, path: str | None = None,
                    password: str | None = None) -> FileReport:
        """Verify every signature of the PDF at ``file`` (reported as ``path``, by default the
        file's name). A file up to :data:`~kyso.signing.pdfio.IN_MEMORY_MAX` is read at once
        and verified as by :meth:`verify`; a larger one is never held in memory: pyHanko reads
        its objects and digests its byte ranges from the file, and our own checks read only
        what they look at. The verdict is the same either way."""
        now = self.clock.now()
        name = str(file) if path is None else path
        try:
            fh = open(file, "rb")  # noqa: SIM115 - closed below, after the last read
        except OSError as exc:
            return v.failed_file(name, f"cannot read {name}: {exc.strerror or exc}",
                                 validation_time=now)
        with fh:
            try:
                size = os.fstat(fh.fileno()).st_size
                if size <= IN_MEMORY_MAX:
                    return self.verify(fh.read(), name, password)
                if size > MAX_PDF_BYTES:  # neither hashed nor read
                    return v.failed_file(
                        name, f"the file is larger than {MAX_PDF_BYTES // 2**20} MiB",
                        size=size, validation_time=now)
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                fh.seek(0)
            except OSError as exc:
                return v.failed_file(name, f"cannot read {name}: {exc.strerror or exc}",
                                     validation_time=now)
            view = FileView(fh)
            try:
                return self._verify(view, fh, digest, name, password, now)
            finally:
                view.close()

    def _verify(self, data: PdfData, stream: BinaryIO, digest: str, path: str,
                password: str | None, now: dt.datetime) -> FileReport:
        """``data``: the file's bytes, or a view that reads them from ``stream``'s file;
        ``stream``: what pyHanko reads."""
        size = len(data)
        try:
            if size > MAX_PDF_BYTES:
                raise KysoError(f"the file is larger than {MAX_PDF_BYTES // 2**20} MiB")
            check_header(data)
            with pdf_errors("cannot read the PDF"):
                reader = PdfFileReader(stream, strict=False)
                if reader.encrypted:
                    _decrypt(reader, password)
                sigs = list(reader.embedded_signatures)
                material = _read_dss(reader)
                tail = unsigned_tail(data, reader)
        except KysoError as exc:
            return v.failed_file(path, str(exc), size=size, sha256=digest, validation_time=now)
        except Exception as exc:  # fail closed: a parser crash is a failed file
            return v.failed_file(path, f"cannot read the PDF: {type(exc).__name__}: {exc}",
                                 size=size, sha256=digest, validation_time=now)
        reports = tuple(_run(self._all(data, sigs, material, now, tail)))
        indication, sub = v.worst(reports)
        reasons = tuple(f"{r.field}: {reason}" for r in reports for reason in r.reasons)
        if not reports:
            reasons = ("the PDF has no signature",)
        return FileReport(path=path, indication=indication, sub_indication=sub,
                          signatures=reports, size=size, sha256=digest, validation_time=now,
                          reasons=reasons)

    async def _all(self, data: PdfData, sigs: list[EmbeddedPdfSignature], material: _Material,
                   now: dt.datetime, tail: Check) -> list[SignatureReport]:
        out = []
        last_sig = max((i for i, s in enumerate(sigs) if _kind(s) == "signature"), default=-1)
        for i, emb in enumerate(sigs):
            name = _field(emb)
            # the newest signature or timestamp answers for the bytes after its revision
            end = tail if i == len(sigs) - 1 else None
            try:
                if _kind(emb) == "document-timestamp":
                    out.append(await self._doc_timestamp(data, emb, material, now, end,
                                                         signed_later=i < last_sig))
                else:
                    later_ts = [s for s in sigs[i + 1:] if _kind(s) == "document-timestamp"]
                    out.append(await self._signature(data, emb, material, now, end,
                                                     is_last=i == last_sig, later_ts=later_ts))
            except Exception as exc:  # fail closed
                detail = str(exc).strip() or type(exc).__name__
                out.append(SignatureReport(
                    field=name, kind=_kind(emb), indication=Indication.TOTAL_FAILED,
                    sub_indication=v.FORMAT_FAILURE,
                    reasons=(f"error while checking the signature: {detail}",)))
        return out

    def _context(self, material: _Material, now: dt.datetime) -> ValidationContext:
        return ValidationContext(
            trust_roots=self._roots, other_certs=list(material.certs),
            crls=[*material.crls, *self._crls], ocsps=list(material.ocsps),
            allow_fetching=self.options.online, revocation_mode="soft-fail", moment=now,
            signature_validator=self._signatures,
        )

    def _spec(self, material: _Material | None) -> PdfSignatureValidationSpec:
        knowledge = LocalKnowledge(
            known_crls=[CRLContainer(c) for c in (*self._crls, *(material.crls if material else ()))],
            known_ocsps=[OCSPContainer(o) for o in (material.ocsps if material else ())],
            known_certs=list(material.certs) if material else [],
        )
        rule = (RevinfoOnlineFetchingRule.ALWAYS_FETCH if self.options.online
                else RevinfoOnlineFetchingRule.LOCAL_ONLY)
        return PdfSignatureValidationSpec(SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=self._trust, revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
                signature_validator=self._signatures),
            local_knowledge=knowledge,
            revinfo_gathering_policy=RevocationInfoGatheringSpec(online_fetching_rule=rule),
        ), diff_policy=DEFAULT_DIFF_POLICY)

    def _shared_handlers(self, material: _Material) -> ValidationDataHandlers | None:
        """For a document without validation data of its own (B-B, B-T), validation needs only
        this verifier's CRLs and trust anchors: one set of handlers serves many documents, so
        the CRL issuers and parsed CRLs are found once. What a document adds (its embedded
        certificates, the proof of existence its timestamp gives its own signature value) is
        keyed by content and cannot speak for another document. Renewed every 256 documents."""
        if material.certs or material.has_revinfo or self.options.online:
            return None
        local = self._local  # handlers are not thread-safe: one set per thread
        if getattr(local, "handlers", None) is None or local.uses >= 256:
            local.handlers = bootstrap_validation_data_handlers(
                fetchers=None, crls=[CRLContainer(c) for c in self._crls])
            local.uses = 0
        local.uses += 1
        handlers: ValidationDataHandlers = local.handlers
        return handlers

    async def _doc_timestamp(self, data: PdfData, emb: EmbeddedPdfSignature, material: _Material,
                             now: dt.datetime, end: Check | None, *,
                             signed_later: bool) -> SignatureReport:
        br = byte_range_check(data, emb)
        status = await async_validate_pdf_timestamp(emb, self._context(material, now),
                                                    diff_policy=DEFAULT_DIFF_POLICY)
        level = _modification(emb)
        allowed = {ModificationLevel.NONE, ModificationLevel.LTA_UPDATES}
        if signed_later and status.docmdp_ok is not False:
            allowed.add(ModificationLevel.FORM_FILLING)  # a later signer filled a field
        checks = _present(
            br,
            end,
            Check("integrity", bool(status.intact and status.valid),
                  "digest and signature match" if status.intact and status.valid
                  else "the timestamp does not match the document"),
            Check("trust", status.trusted, "chain to a trust anchor" if status.trusted
                  else "the TSA certificate does not chain to a trust anchor"),
            Check("modifications", level in allowed and status.docmdp_ok is not False,
                  _modification_text(level, status.docmdp_ok, not signed_later)),
        )
        indication, sub, reasons = _judge_checks(checks)
        tsa = _asn1_subject(status.signing_cert)
        return SignatureReport(
            field=_field(emb), kind="document-timestamp", indication=indication,
            sub_indication=sub, reasons=reasons,
            timestamp=TimestampInfo(status.timestamp, tsa, status.valid and status.intact,
                                    status.trusted),
            coverage=_coverage(emb), modification_level=level.name if level else None,
            checks=checks)

    async def _signature(self, data: PdfData, emb: EmbeddedPdfSignature, material: _Material,
                         now: dt.datetime, end: Check | None, *, is_last: bool,
                         later_ts: list[EmbeddedPdfSignature]) -> SignatureReport:
        br = byte_range_check(data, emb)
        timing = ValidationTimingInfo(now, now, point_in_time_validation=False)
        ades: Any
        timestamped = _has_signature_timestamp(emb)
        if timestamped and later_ts:
            # long-term validation (EN 319 102-1 §5.6.3): past validation with the POE of the
            # document timestamps
            ades = await ades_lta_validation(emb, self._spec(None), timing_info=timing)
        elif timestamped:  # §5.5: signatures with time (B-T) and LT material (B-LT)
            ades = await ades_with_time_validation(
                emb.signed_data, self._spec(material).signature_validation_spec,
                timing_info=timing, raw_digest=emb.compute_digest(),
                validation_data_handlers=self._shared_handlers(material))
        else:
            ades = await ades_basic_validation(
                emb.signed_data, self._spec(material).signature_validation_spec,
                timing_info=timing, raw_digest=emb.compute_digest(),
                validation_data_handlers=self._shared_handlers(material))
        # The classic opinion: integrity, coverage and the difference analysis. Cryptographic
        # validity and the timestamp come from the AdES run (one path validation per
        # signature); when AdES stopped before checking them, pyHanko's classic procedure
        # answers instead.
        classic: Any = ades.api_status
        if classic is None or (timestamped and classic.timestamp_validity is None):
            classic = await async_validate_pdf_signature(
                emb, self._context(material, now), diff_policy=DEFAULT_DIFF_POLICY)
        emb.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
        integrity = emb.summarise_integrity_info()
        docmdp_ok = integrity.get("docmdp_ok")
        ts_status = classic.timestamp_validity
        claimed = classic.signer_reported_dt or emb.self_reported_timestamp
        cert = x509.load_der_x509_certificate(emb.signer_cert.dump())
        level = _modification(emb)
        allowed = {ModificationLevel.NONE, ModificationLevel.LTA_UPDATES}
        if not is_last and docmdp_ok:
            allowed.add(ModificationLevel.FORM_FILLING)  # later signatures fill their fields
        opinion = _Ades.of(ades, revinfo=material.has_revinfo or bool(self._crls)
                           or self.options.online)
        proven = (ts_status.timestamp if ts_status is not None and ts_status.valid
                  and ts_status.intact and ts_status.trusted else None)
        store = self.options.store(cert) if self.options.store else None
        revocation, rev_source, store_check = _revocation(opinion, store, proven, material,
                                                          bool(self._crls), self.options.online)
        checks = _present(
            br,
            end,
            Check("integrity", classic.intact, "the signed bytes are unchanged" if classic.intact
                  else "the signed bytes were changed"),
            Check("signature", classic.valid, "the signature value is correct" if classic.valid
                  else "the signature value does not verify"),
            Check("coverage", emb.coverage in (SignatureCoverageLevel.ENTIRE_FILE,
                                               SignatureCoverageLevel.ENTIRE_REVISION),
                  _coverage(emb) or ""),
            Check("modifications", level in allowed and docmdp_ok is not False,
                  _modification_text(level, docmdp_ok, is_last)),
            _key_usage_check(cert),
            Check("ades", opinion.passed, opinion.text),
            store_check,
        )
        indication, sub, reasons = _judge_checks(checks, ades=opinion)
        pades = _pades_level(emb, proven is not None, material, later_ts)
        return SignatureReport(
            field=_field(emb), kind="signature", indication=indication, sub_indication=sub,
            reasons=reasons, signer=_signer(cert), claimed_time=claimed,
            timestamp=(TimestampInfo(ts_status.timestamp, _asn1_subject(ts_status.signing_cert),
                                     ts_status.valid and ts_status.intact, ts_status.trusted)
                       if ts_status is not None else None),
            coverage=_coverage(emb), modification_level=level.name if level else None,
            docmdp=emb.docmdp_level.name if emb.docmdp_level else None,
            fieldmdp=_fieldmdp(emb), revocation=revocation, revocation_source=rev_source,
            pades_level=pades, certified=_is_certification(emb), checks=checks)


@dataclass(frozen=True)
class _Ades:
    """pyHanko's AdES verdict, as the report needs it."""

    status: AdESStatus
    sub: str  # the EN 319 102-1 sub-indication ("" when passed)
    text: str

    @property
    def passed(self) -> bool:
        return self.status is AdESStatus.PASSED

    @classmethod
    def of(cls, result: Any, *, revinfo: bool) -> _Ades:
        """``revinfo``: whether any revocation source was available. Without one, pyHanko
        reports a chain failure; the truth is that the answer is not known yet (TRY_LATER)."""
        indic = result.ades_subindic
        if indic.status is AdESStatus.PASSED:
            return cls(indic.status, "", "PASSED")
        if (not revinfo and indic.status is AdESStatus.INDETERMINATE
                and indic.standard_name in (CHAIN_GENERAL_FAILURE, TRY_LATER)):
            return cls(indic.status, TRY_LATER, f"INDETERMINATE/{TRY_LATER}: {NO_REVINFO_HINT}")
        text = f"{indic.status.name}/{indic.standard_name}: {result.failure_msg or ''}"
        return cls(indic.status, indic.standard_name, text.strip())


def _judge_checks(checks: tuple[Check, ...], ades: _Ades | None = None
                  ) -> tuple[Indication, str | None, tuple[str, ...]]:
    """Map the failed checks to one EN 319 102-1 indication (the most severe wins)."""
    failed = {c.name: c for c in checks if c.ok is False}
    reasons = tuple(f"{c.name}: {c.detail}" for c in failed.values())
    if not failed:
        return Indication.TOTAL_PASSED, None, ()
    order = [
        ("byte-range", Indication.TOTAL_FAILED, v.FORMAT_FAILURE),
        ("integrity", Indication.TOTAL_FAILED, v.HASH_FAILURE),
        ("signature", Indication.TOTAL_FAILED, v.SIG_CRYPTO_FAILURE),
        ("coverage", Indication.TOTAL_FAILED, v.FORMAT_FAILURE),
        ("file-end", Indication.TOTAL_FAILED, v.FORMAT_FAILURE),
        ("modifications", Indication.TOTAL_FAILED, v.HASH_FAILURE),
        ("store-revocation", None, None),
        ("ades", None, None),
        ("key-usage", Indication.INDETERMINATE, v.CHAIN_CONSTRAINTS_FAILURE),
        ("trust", Indication.INDETERMINATE, v.NO_CERTIFICATE_CHAIN_FOUND),
    ]
    for name, indication, sub in order:
        check = failed.get(name)
        if check is None:
            continue
        if name == "store-revocation":
            revoked = check.detail.startswith("revoked at") and "proven" in check.detail
            return ((Indication.TOTAL_FAILED, v.REVOKED, reasons) if revoked
                    else (Indication.INDETERMINATE, v.REVOKED_NO_POE, reasons))
        if name == "ades":
            assert ades is not None
            ind = (Indication.TOTAL_FAILED if ades.status is AdESStatus.FAILED
                   else Indication.INDETERMINATE)
            return ind, ades.sub, reasons
        assert indication is not None
        return indication, sub, reasons
    return Indication.INDETERMINATE, None, reasons


_MAIN_RUNNER: asyncio.Runner | None = None


class _ThreadRunner:
    """A worker thread's own event loop, closed when the thread ends (its thread-local storage
    is dropped then) — so a loop never outlives its thread and is never shared by two."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.runner.close()


_THREAD = threading.local()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on this thread's event loop. A new loop costs about 1 ms,
    as much as a tenth of verifying a small dossier, so each thread keeps one: the main thread
    until exit, a worker thread (the server's thread pool) until it ends."""
    global _MAIN_RUNNER
    if threading.current_thread() is not threading.main_thread():
        owned: _ThreadRunner | None = getattr(_THREAD, "owned", None)
        if owned is None:
            owned = _THREAD.owned = _ThreadRunner()
        return owned.runner.run(coro)
    if _MAIN_RUNNER is None:
        _MAIN_RUNNER = asyncio.Runner()
        atexit.register(_MAIN_RUNNER.close)
    return _MAIN_RUNNER.run(coro)


def _present(*checks: Check | None) -> tuple[Check, ...]:
    return tuple(c for c in checks if c is not None)


def _decrypt(reader: PdfFileReader, password: str | None) -> None:
    if password is None:
        raise KysoError("the PDF is password-protected; give its password "
                        "(--pdf-password-file or KYSO_PDF_PASSWORD)")
    result = reader.decrypt(password.encode("utf-8"))
    if result.mac_status is PdfMacStatus.FAILED:
        raise KysoError("the PDF's integrity MAC (ISO 32004) does not verify: "
                        f"{result.mac_failure_reason or 'no reason given'}")
    if result.status is AuthStatus.FAILED:
        raise KysoError("wrong PDF password")


def unsigned_tail(data: PdfData, reader: PdfFileReader) -> Check:
    """The file must end where its newest revision ends (its ``%%EOF``, then whitespace).

    Bytes after it belong to no revision, so neither a signature nor the difference analysis
    sees them, yet a reader that rebuilds the cross-reference table (qpdf, most viewers on a
    damaged file) shows the objects hidden there.
    """
    xrefs = reader.xrefs
    end = xrefs.get_xref_container_info(xrefs.total_revisions - 1).end_location
    if isinstance(data, FileView):  # read only what follows the newest cross-reference section
        data, end = data[end:], 0
    eof = data.find(b"%%EOF", end)
    if eof < 0:
        return Check("file-end", False, "no %%EOF after the newest cross-reference section")
    if _OBJECT.search(data, end, eof):
        return Check("file-end", False, "an object is defined between the newest "
                     "cross-reference section and its %%EOF")
    extra = len(data[eof + 5:].strip(_PDF_WHITESPACE))
    if extra:
        return Check("file-end", False, f"{extra} bytes after the newest revision's %%EOF "
                     "belong to no revision and no signature covers them")
    return Check("file-end", True, "nothing follows the newest revision")


def byte_range_check(data: PdfData, emb: EmbeddedPdfSignature) -> Check:
    """Exactly two ranges; the first starts at 0; the gap is exactly the /Contents hex string;
    everything inside the file."""
    br = emb.byte_range
    try:
        values = [int(x) for x in br]
    except (TypeError, ValueError):
        return Check("byte-range", False, "/ByteRange is not a list of integers")
    if len(values) != 4:
        return Check("byte-range", False, f"/ByteRange has {len(values)} numbers, not 4")
    a, b, c, d = values
    if a != 0 or b <= 0 or c <= b or d < 0 or c + d > len(data):
        return Check("byte-range", False, f"/ByteRange {values} does not describe two ranges "
                     f"inside a {len(data)}-byte file starting at 0")
    gap = data[b:c]
    if not _HEX.fullmatch(gap):
        return Check("byte-range", False, "the gap between the signed ranges is not exactly the "
                     "/Contents hex string")
    contents = bytes.fromhex(re.sub(rb"\s", b"", gap[1:-1]).decode("ascii"))
    if not contents.rstrip(b"\x00").startswith(emb.pkcs7_content.rstrip(b"\x00")[:64]):
        return Check("byte-range", False, "the gap does not hold this signature's /Contents")
    return Check("byte-range", True, f"[0 {b} {c} {d}]")


def _revocation(ades: _Ades, store: StoreStatus | None, proven: dt.datetime | None,
                material: _Material, home_crls: bool, online: bool
                ) -> tuple[str, str, Check]:
    sources = [s for s, on in (("dss", material.has_revinfo), ("crl", home_crls),
                               ("online", online), ("store", store is not None)) if on]
    source = ",".join(sources) or "none"
    if store is not None and store.status in ("revoked", "on_hold") and store.revoked_at:
        at = store.revoked_at
        if proven is not None and proven < at:
            return ("good", source, Check("store-revocation", True,
                                          f"revoked at {at.isoformat()}, after the signature "
                                          f"proven at {proven.isoformat()}"))
        detail = (f"revoked at {at.isoformat()}; signature proven at {proven.isoformat()}"
                  if proven is not None else f"revoked at {at.isoformat()}; no timestamp proves "
                  "the signature existed before")
        return "revoked", source, Check("store-revocation", False, detail)
    store_check = Check("store-revocation", None if store is None else True,
                        "not issued by this home's CA" if store is None else "not revoked")
    if "REVOKED" in ades.sub:
        return "revoked", source, store_check
    if ades.sub in (TRY_LATER, "REVOCATION_OUT_OF_BOUNDS_NO_POE"):
        return "unknown", source, store_check
    if ades.passed:
        return "good", source, store_check
    return "not-checked", source, store_check


def key_usage_problem(cert: x509.Certificate) -> str | None:
    """Why the key usage of ``cert`` does not allow signatures (None when it does)."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "the certificate has no key usage extension"
    if not (ku.digital_signature or ku.content_commitment):
        return "key usage allows neither digitalSignature nor nonRepudiation"
    return None


def _key_usage_check(cert: x509.Certificate) -> Check:
    problem = key_usage_problem(cert)
    if problem is not None:
        return Check("key-usage", False, problem)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return Check("key-usage", True, "digitalSignature/nonRepudiation")
    oids = {o.dotted_string for o in eku}
    if not oids & SIGNING_EKUS:
        return Check("key-usage", False, "extended key usage does not allow document signing")
    return Check("key-usage", True, "digitalSignature/nonRepudiation; EKU allows signing")


def _pades_level(emb: EmbeddedPdfSignature, timestamped: bool, material: _Material,
                 later_ts: list[EmbeddedPdfSignature]) -> str | None:
    subfilter = str(emb.sig_object.get("/SubFilter", ""))
    if subfilter != "/ETSI.CAdES.detached":
        return None
    if not timestamped:
        return "B-B"
    if not material.has_revinfo:
        return "B-T"
    return "B-LTA" if later_ts else "B-LT"


def _modification(emb: EmbeddedPdfSignature) -> ModificationLevel | None:
    result: Any = emb.diff_result
    level = getattr(result, "modification_level", None)
    if result is not None and level is None:
        return ModificationLevel.OTHER
    return level if isinstance(level, ModificationLevel) else None


def _modification_text(level: ModificationLevel | None, docmdp_ok: bool | None,
                       is_last: bool) -> str:
    if level is None:
        return "not analysed"
    if level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES):
        return f"{level.name}: nothing but validation data was added after signing"
    if docmdp_ok is False:
        return f"{level.name}: changes after signing violate the signature's permissions"
    if is_last:
        return f"{level.name}: the document was changed after the last signature"
    return f"{level.name}: later signatures filled their fields"


def _signer(cert: x509.Certificate) -> v.SignerInfo:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    uid = None
    if uids:
        raw = str(uids[0].value)
        prefix, _, number = raw.rpartition(":")
        uid = f"{prefix}:{mask_id(number)}" if prefix else mask_id(raw)
    return v.SignerInfo(
        subject=masked_subject(cert.subject), common_name=str(cns[0].value) if cns else "",
        uid=uid, serial=f"{cert.serial_number:x}", issuer=masked_subject(cert.issuer),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def _asn1_subject(cert: asn1_x509.Certificate | None) -> str:
    if cert is None:
        return ""
    return masked_subject(x509.load_der_x509_certificate(cert.dump()).subject)


def _coverage(emb: EmbeddedPdfSignature) -> str | None:
    return emb.coverage.name if emb.coverage is not None else None


def _fieldmdp(emb: EmbeddedPdfSignature) -> str | None:
    spec = emb.fieldmdp
    if spec is None:
        return None
    fields = f" {', '.join(spec.fields)}" if spec.fields else ""
    return f"{spec.action.name}{fields}"


def _is_certification(emb: EmbeddedPdfSignature) -> bool:
    from pyhanko.sign.validation.pdf_embedded import _extract_docmdp_for_sig

    return _extract_docmdp_for_sig(emb.sig_object) is not None


def _has_signature_timestamp(emb: EmbeddedPdfSignature) -> bool:
    unsigned = emb.signer_info["unsigned_attrs"]
    if not unsigned:
        return False
    return any(attr["type"].native == "signature_time_stamp_token" for attr in unsigned)


def _kind(emb: EmbeddedPdfSignature) -> str:
    return "document-timestamp" if emb.sig_object_type == "/DocTimeStamp" else "signature"


def _field(emb: EmbeddedPdfSignature) -> str:
    try:
        return str(emb.field_name)
    except Exception:  # a field without a usable name still gets a report
        return "?"


def _read_dss(reader: PdfFileReader) -> _Material:
    """The certificates, OCSP responses and CRLs of the document's DSS (none if absent)."""
    dss = reader.root.get("/DSS")
    if dss is None:
        return _Material()
    dss = dss.get_object()

    def items(key: str, load: Callable[[bytes], Any]) -> tuple[Any, ...]:
        refs = dss.get(key)
        if refs is None:
            return ()
        refs = refs.get_object()
        if len(refs) > MAX_DSS_ITEMS:
            raise KysoError(f"the DSS holds more than {MAX_DSS_ITEMS} entries under {key}")
        return tuple(load(r.get_object().data) for r in refs)

    return _Material(certs=items("/Certs", asn1_x509.Certificate.load),
                     ocsps=items("/OCSPs", asn1_ocsp.OCSPResponse.load),
                     crls=items("/CRLs", asn1_crl.CertificateList.load))


TimestampInfo = v.TimestampInfo
