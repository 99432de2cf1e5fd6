"""PAdES signing of PDF dossiers with a key that stays loaded (domain.md §2).

:class:`PdfSigner` is built once per signer (one PKCS#12 unlock, one key object) and signs any
number of documents. pyHanko lays out the incremental update (field, stamp, ``/ByteRange``);
the CMS comes from :class:`~kyso.signing.cms.CmsSigner`; B-LT adds a DSS with our OCSP
responses and CRLs; B-LTA adds a document timestamp over all of it.

Memory: the document is never copied. pyHanko copies the input to the output in chunks and
digests the output in chunks; B-LT and B-LTA append to that same output in place.
:meth:`PdfSigner.sign` (bytes in, bytes out) therefore holds the input and the output once
each; :meth:`PdfSigner.sign_file` and :meth:`PdfSigner.sign_to` read a large input from its
file and write the output to a file, holding neither.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import (
    FieldMDPAction,
    FieldMDPSpec,
    MDPPerm,
    SigFieldSpec,
    SigSeedSubFilter,
)
from pyhanko.sign.signers import pdf_cms, pdf_signer
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko_certvalidator.registry import SimpleCertificateStore

from kyso.clock import Clock
from kyso.errors import SigningError
from kyso.files import atomic_output
from kyso.signing import appearance, ltv
from kyso.signing.appearance import StampRequest
from kyso.signing.cms import CmsSigner, SigningKey, chain_without_root
from kyso.signing.pdfio import (
    IN_MEMORY_MAX,
    PdfSource,
    open_for_update,
    page_box,
    page_count,
    pdf_errors,
    signature_fields,
    stream_sha256,
)
from kyso.signing.services import TrustServices

ALLOW = {"none": MDPPerm.NO_CHANGES, "forms": MDPPerm.FILL_FORMS}
RESERVE_SLACK = 512  # bytes of /Contents beyond the largest expected CMS


class Level(Enum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)


@dataclass(frozen=True)
class SignRequest:
    """One signature to add. ``stamp`` None means an invisible signature."""

    level: Level = Level.B_B
    field_name: str | None = None
    stamp: StampRequest | None = None
    certify: bool = False
    allow: str = "forms"
    lock_fields: tuple[str, ...] = ()  # ("*",) locks every field
    reason: str | None = None
    location: str | None = None
    contact: str | None = None
    pdf_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.allow not in ALLOW:
            raise SigningError(f"--allow must be one of {', '.join(ALLOW)}, not {self.allow!r}")
        for name, value in (("reason", self.reason), ("location", self.location),
                            ("contact", self.contact), ("field", self.field_name)):
            if value is not None and (len(value) > 256 or any(ord(c) < 32 for c in value)):
                raise SigningError(f"--{name} must be one line of at most 256 characters")


@dataclass(frozen=True)
class _Signed:
    """What was signed, whichever way the output went."""

    field_name: str
    level: Level
    signing_time: dt.datetime
    certified: bool
    visible: bool
    signer_serial: str


@dataclass(frozen=True)
class SignResult:
    data: bytes = field(repr=False)
    field_name: str
    level: Level
    signing_time: dt.datetime
    certified: bool
    visible: bool
    signer_serial: str

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, len(self.data), hashlib.sha256(self.data).hexdigest())


@dataclass(frozen=True)
class SignedFile:
    """The result of :meth:`PdfSigner.sign_to` and :meth:`PdfSigner.sign_file`: the signed
    output's size and SHA-256 instead of its bytes."""

    field_name: str
    level: Level
    signing_time: dt.datetime
    certified: bool
    visible: bool
    signer_serial: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, self.size, self.sha256)


def _to_dict(result: SignResult | SignedFile, size: int, sha256: str) -> dict[str, Any]:
    from kyso.clock import vn_iso

    return {"field": result.field_name, "level": result.level.value,
            "signing_time": vn_iso(result.signing_time), "certified": result.certified,
            "visible": result.visible, "signer_serial": result.signer_serial,
            "size": size, "sha256": sha256}


class _CmsAdapter(pdf_cms.Signer):
    """pyHanko's view of our signer: the certificate for layout, our bytes for the CMS."""

    def __init__(self, cms: CmsSigner, timestamp: Any,
                 writer: IncrementalPdfFileWriter | None = None) -> None:
        def load(c: x509.Certificate) -> asn1_x509.Certificate:
            return asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

        super().__init__(signing_cert=load(cms.certificate),
                         cert_registry=SimpleCertificateStore.from_certs(
                             [load(c) for c in cms.chain]),
                         embed_roots=False)
        self._cms = cms
        self._timestamp = timestamp
        handler = writer.security_handler if writer is not None else None
        # ISO/TS 32004: a PDF encrypted with a MAC needs the pdfMacData unsigned attribute,
        # which pyHanko adds only to CMS it builds itself.
        self._mac_writer = writer if handler is not None and handler.pdf_mac_enabled else None

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        return self._cms.sign_raw(data)

    async def async_sign(self, data_digest: bytes, digest_algorithm: str, dry_run: bool = False,
                         use_pades: bool = False, timestamper: Any = None,
                         signed_attr_settings: Any = None, is_pdf_sig: bool = True,
                         encap_content_info: Any = None) -> asn1_cms.ContentInfo:
        der = self._cms.signed_data(data_digest, timestamp=self._timestamp, placeholder=dry_run)
        content = asn1_cms.ContentInfo.load(der)
        if self._mac_writer is not None:
            pdf_signer.add_mac_to_external_cms(self._mac_writer, digest_algorithm,
                                               content["content"], data_digest, dry_run=dry_run)
        return content


class PdfSigner:
    """Signs PDFs with one loaded key. Thread-compatible, not thread-safe."""

    def __init__(self, cms: CmsSigner, clock: Clock, services: TrustServices | None = None) -> None:
        self.cms = cms
        self.clock = clock
        self.services = services
        self._reserve: dict[bool, int] = {}

    @classmethod
    def from_key(cls, key: SigningKey, certificate: x509.Certificate,
                 chain: tuple[x509.Certificate, ...], clock: Clock,
                 services: TrustServices | None = None, digest: str = "sha256") -> PdfSigner:
        return cls(CmsSigner(key, certificate, chain_without_root(chain), digest), clock, services)

    def __repr__(self) -> str:
        return f"PdfSigner(serial={self.cms.certificate.serial_number:x})"

    def _timestamp_fn(self, level: Level) -> Any:
        if not level.timestamped:
            return None
        if self.services is None:
            raise SigningError(f"{level.value} needs a timestamping service (the CA passphrase "
                               "for the in-process TSA)")
        return self.services.timestamp_token

    def _bytes_reserved(self, timestamped: bool, timestamp: Any) -> int:
        if timestamped not in self._reserve:
            dummy = self.cms.signed_data(b"\x00" * 64, timestamp=timestamp, placeholder=True)
            self._reserve[timestamped] = 2 * (len(dummy) + RESERVE_SLACK)
        return self._reserve[timestamped]

    def sign(self, pdf: bytes, request: SignRequest) -> SignResult:
        """Sign ``pdf`` (bytes, never modified) and return the signed file's bytes."""
        return asyncio.run(self.async_sign(pdf, request))

    async def async_sign(self, pdf: bytes, request: SignRequest) -> SignResult:
        output = io.BytesIO()
        signed = await self._sign_into(pdf, output, request)
        data = output.getvalue()  # the buffer itself, not a copy (nothing else refers to it)
        del output
        return SignResult(data=data, **vars(signed))

    def sign_to(self, source: PdfSource, output: BinaryIO, request: SignRequest) -> SignedFile:
        """Sign ``source`` (bytes, or a readable, seekable binary file at its start, never
        modified) into ``output``: an empty binary stream that can be read, written and
        seeked (a file opened ``w+b``). Neither is read into memory whole. On an error,
        ``output`` holds a partial file: write to :func:`~kyso.files.atomic_output`
        (or use :meth:`sign_file`) so that nobody sees it."""
        if not (output.readable() and output.writable() and output.seekable()):
            raise SigningError("the signing output must be readable, writable and seekable")
        signed = asyncio.run(self._sign_into(source, output, request))
        size, sha256 = stream_sha256(output)
        return SignedFile(**vars(signed), size=size, sha256=sha256)

    def sign_file(self, src: Path, dst: Path, request: SignRequest, *, mode: int = 0o644,
                  exclusive: bool = True) -> SignedFile:
        """Sign the PDF at ``src`` into a new file ``dst``, written atomically (see
        :func:`~kyso.files.atomic_output`; nothing is left at ``dst`` on failure). A
        file up to :data:`~kyso.signing.pdfio.IN_MEMORY_MAX` is read at once; a larger one is
        read as needed, so memory stays small whatever the size."""
        with open(src, "rb") as fh:
            source: PdfSource = fh
            if os.fstat(fh.fileno()).st_size <= IN_MEMORY_MAX:
                source = fh.read()
            with atomic_output(dst, mode=mode, exclusive=exclusive) as out:
                return self.sign_to(source, out, request)

    async def _sign_into(self, source: PdfSource, output: BinaryIO,
                         request: SignRequest) -> _Signed:
        now = self.clock.now()
        timestamp = self._timestamp_fn(request.level)
        if request.level.long_term and self.services is None:
            raise SigningError(f"{request.level.value} needs revocation data (the CA passphrase "
                               "for the in-process OCSP responders)")
        writer = open_for_update(source, request.pdf_password)
        existing = signature_fields(writer.prev)
        field_name = _field_name(request, existing)
        new_visible = request.stamp is not None and field_name not in {f.name for f in existing}
        with pdf_errors("cannot read the existing signatures' permissions"):
            problem = signing_forbidden(writer.prev, field_name, new_visible=new_visible)
        if problem is not None:
            raise SigningError(problem)
        spec = self._field_spec(writer, request, field_name, existing)
        holder = appearance.Holder.of(self.cms.certificate)
        style = None
        text = None
        if request.stamp is not None:
            image = appearance.load_image(request.stamp.image) if request.stamp.image else None
            style = appearance.stamp_style(request.stamp.style, holder, image)
            text = {"kyso_text": "\n".join(
                appearance.stamp_lines(request.stamp.style, holder, now))}
        certify_first = request.certify and not any(f.filled for f in existing)
        meta = pdf_signer.PdfSignatureMetadata(
            field_name=field_name, md_algorithm=self.cms.digest,
            subfilter=SigSeedSubFilter.PADES, reason=request.reason,
            location=request.location, contact_info=request.contact, name=holder.name,
            certify=certify_first, docmdp_permissions=ALLOW[request.allow],
        )
        signer = pdf_signer.PdfSigner(meta, signer=_CmsAdapter(self.cms, timestamp, writer),
                                      stamp_style=style, new_field_spec=spec)
        with pdf_errors("cannot sign the PDF"):
            session = signer.init_signing_session(writer)
            session.system_time = now
            tbs = session.prepare_tbs_document(
                validation_info=None,
                bytes_reserved=self._bytes_reserved(timestamp is not None, timestamp),
                appearance_text_params=text)
            prepared, written = tbs.digest_tbs_document(output=output)
            await tbs.perform_signature(prepared.document_digest,
                                        PdfCMSSignedAttributes(signing_time=now))
        # pyHanko writes to ``output`` itself when it can be read and seeked (checked above)
        assert written is output, "pyHanko replaced the output stream"
        if request.level.long_term:
            assert self.services is not None
            ltv.add_validation_data(output, self.cms, self.services, request.pdf_password,
                                    with_tsa=True)
        if request.level is Level.B_LTA:
            assert self.services is not None
            await ltv.add_document_timestamp(output, self.services, request.pdf_password)
        return _Signed(field_name=field_name, level=request.level, signing_time=now,
                       certified=request.certify, visible=request.stamp is not None,
                       signer_serial=f"{self.cms.certificate.serial_number:x}")

    def _field_spec(self, writer: IncrementalPdfFileWriter, request: SignRequest,
                    field_name: str, existing: list[Any]) -> SigFieldSpec | None:
        by_name = {f.name: f for f in existing}
        if field_name in by_name:
            if by_name[field_name].filled:
                raise SigningError(f"the field {field_name!r} is already signed")
            if request.stamp is not None or request.lock_fields:
                raise SigningError(f"the field {field_name!r} already exists; its place and "
                                   "locks are fixed (omit --visible/--lock-fields or use a "
                                   "new --field)")
            return None
        lock = _lock_spec(request, existing)
        final_lock = request.certify and any(f.filled for f in existing)
        box = None
        page_ix = 0
        if request.stamp is not None:
            reader = writer.prev
            pages = page_count(reader)
            page_ix = _page_index(request.stamp, pages)
            others: dict[str, Any] = {f.name: f.rect for f in existing if f.rect is not None
                      and _on_page(reader, f.page_ref, page_ix)}
            box = appearance.place(request.stamp, page_box(reader, page_ix), others)
        if final_lock and lock is None:
            lock = FieldMDPSpec(FieldMDPAction.ALL)
        return SigFieldSpec(
            sig_field_name=field_name, on_page=page_ix,
            box=tuple(round(v) for v in box) if box else None,  # type: ignore[arg-type]
            field_mdp_spec=lock,
            doc_mdp_update_value=ALLOW[request.allow] if final_lock else None,
        )


def signing_forbidden(reader: PdfFileReader, field_name: str, *,
                      new_visible: bool = False) -> str | None:
    """Why the existing signatures forbid a new signature in ``field_name``, or None.

    A signature that breaks an earlier one's permissions can never verify, so it is refused
    before anything is written: a certification allowing no changes (DocMDP P=1), a PDF 2.0
    lock allowing none (``/Lock /P 1``, as our ``--certify`` on a signed PDF with
    ``--allow none`` writes), or a FieldMDP lock covering the field to fill (``/All``, as that
    final seal writes, or an ``/Include`` / ``/Exclude`` list that covers it). A certification
    allowing form filling (P=2) accepts signatures in existing fields and in new invisible
    ones; a new *visible* field (``new_visible``) after a certification is a change beyond
    form filling for pyHanko's difference analysis (stricter than Acrobat), so it is refused.
    """
    for sig in reader.embedded_regular_signatures:
        name = sig.field_name
        certification = _transform_params(sig, "/DocMDP") is not None
        if sig.docmdp_level is MDPPerm.NO_CHANGES or _lock_p(sig) == MDPPerm.NO_CHANGES.value:
            what = "certification" if certification else "lock"
            return (f"the signature in field {name!r} forbids any change to the document "
                    f"({what} with P=1, no changes allowed); a further signature would "
                    f"invalidate it")
        if certification and new_visible:
            return (f"the certification signature in field {name!r} allows no new visible "
                    f"signature field; sign invisibly (without --visible) or in an existing "
                    f"empty field")
        lock = sig.fieldmdp or _field_lock(sig)
        if lock is not None and lock.is_locked(field_name):
            scope = ("every field" if lock.action is FieldMDPAction.ALL
                     else f"the field {field_name!r}")
            return (f"the signature in field {name!r} locks {scope} (FieldMDP "
                    f"{lock.action.value.lstrip('/')}); a signature in field {field_name!r} "
                    f"would invalidate it")
    return None


def _entry(obj: Any, key: str) -> Any:
    """``obj[key]``, dereferenced (pyHanko's ``get`` returns indirect references), or None."""
    try:
        return obj[key]
    except KeyError:
        return None


def _transform_params(sig: Any, method: str) -> Any:
    """The /TransformParams of the signature's /Reference with that /TransformMethod."""
    refs = _entry(sig.sig_object, "/Reference") or ()
    for i in range(len(refs)):
        ref = refs[i].get_object()  # generic arrays do not dereference their items
        if _entry(ref, "/TransformMethod") == method:
            return _entry(ref, "/TransformParams") or {}
    return None


def _lock_p(sig: Any) -> int | None:
    """``/P`` of the PDF 2.0 lock: in the signature's FieldMDP transform or its field's /Lock."""
    params = _transform_params(sig, "/FieldMDP")
    if params is not None and "/P" in params:
        return int(params["/P"])
    lock = _entry(sig.sig_field, "/Lock")
    return int(lock["/P"]) if lock is not None and "/P" in lock else None


def _field_lock(sig: Any) -> FieldMDPSpec | None:
    """The signed field's /Lock, for files whose signature lacks the FieldMDP reference."""
    lock = _entry(sig.sig_field, "/Lock")
    if lock is None or "/Action" not in lock:
        return None
    return FieldMDPSpec.from_pdf_object(lock)


def _page_index(stamp: StampRequest, pages: int) -> int:
    if stamp.page == 0 or not -pages <= stamp.page <= pages:
        raise SigningError(f"--page {stamp.page}: the PDF has {pages} page(s)")
    return stamp.page - 1 if stamp.page > 0 else pages + stamp.page


def _on_page(reader: Any, page_ref: Any, page_ix: int) -> bool:
    if page_ref is None:
        return False
    ref, _ = reader.find_page_for_modification(page_ix)
    return bool(ref.reference == page_ref)


def _field_name(request: SignRequest, existing: list[Any]) -> str:
    if request.field_name:
        return request.field_name
    taken = {f.name for f in existing}
    if request.stamp is not None and request.stamp.style.value not in taken:
        return request.stamp.style.value
    n = len(existing) + 1
    while f"Signature{n}" in taken:
        n += 1
    return f"Signature{n}"


def _lock_spec(request: SignRequest, existing: list[Any]) -> FieldMDPSpec | None:
    if not request.lock_fields:
        return None
    if request.lock_fields == ("*",):
        return FieldMDPSpec(FieldMDPAction.ALL)
    known = {f.name for f in existing}
    unknown = [n for n in request.lock_fields if n not in known]
    if unknown:
        raise SigningError(f"--lock-fields: no field named {', '.join(map(repr, unknown))} "
                           f"(fields: {', '.join(sorted(known)) or 'none'})")
    return FieldMDPSpec(FieldMDPAction.INCLUDE, fields=list(request.lock_fields))
