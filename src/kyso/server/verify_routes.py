"""The PDF verification API: ``POST /api/v1/verify`` and ``/api/v1/verify/batch``.

Public (no token): a backend service verifies a dossier without an account. The answer is the
JSON report of ``kyso pdf verify --format json`` (schema ``kyso-pdf-verify/1``, see
docs/verification.md); a signature that fails is a verdict (HTTP 200, ``TOTAL-FAILED``), not an
HTTP error. HTTP errors are for requests that cannot be verified at all, always JSON
``{"error", "error_description"}``: 400 (malformed request or multipart body), 413 (larger than
the limit — refused from ``Content-Length`` before reading, else counted while streaming, so a
huge body is never held), 415 (neither ``application/pdf`` nor ``multipart/form-data``), 422
(empty, not a PDF, truncated), 503 (the home has no CA, so there is no trust anchor).

The verifier trusts the home's root CA and uses its published CRLs and its store's revocation
state (:func:`kyso.signing.setup.build_verifier`); it is rebuilt when the CRL files change (a
CRL republished by ``/crl/…`` or ``kyso crl publish``) and built late if the CA is created
after start-up. Verification runs in the thread pool, at most :data:`MAX_CONCURRENT` requests
at a time per process (others wait; memory stays bounded). Like ``kyso pdf verify``, each
request records one ``DOCUMENT_VERIFY`` event (file count and verdict, never content).

"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Sequence
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import KysoError, PdfInputError
from kyso.server.api import (
    NO_STORE,
    ApiError,
    JsonApiRoute,
    check_declared,
    client_host,
    error_responses,
    limited,
    media_type,
    read_body,
    request_id,
    too_large,
    unsupported_media,
)
from kyso.server.options import AppOptions
from kyso.signing.pdfio import check_header
from kyso.signing.setup import build_verifier
from kyso.signing.verdict import REPORT_SCHEMA, FileReport, Indication
from kyso.signing.verify import PdfVerifier

__all__ = [
    "BATCH_SCHEMA",
    "MAX_BATCH_FILES",
    "MAX_CONCURRENT",
    "router",
    "setup",
]

BATCH_SCHEMA = "kyso-pdf-verify-batch/1"
MAX_BATCH_FILES = 50
BATCH_BYTES_FACTOR = 4  # a batch body: at most 4 × the single-PDF limit
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file(s)
MAX_FIELD_BYTES = 64 * 1024  # a non-file multipart part (ignored)
MAX_FIELDS = 16
MAX_CONCURRENT = 16
MAX_NAME = 255
PDF = "application/pdf"
MULTIPART = "multipart/form-data"


# --- the verifier ----------------------------------------------------------------------------


RESCAN = dt.timedelta(seconds=1)  # the CRL files are listed at least this often


class VerifierHolder:
    """The home's :class:`PdfVerifier`, rebuilt when the set of published CRL files changes
    and built late if the CA did not exist at start-up. A verifier in use by other threads
    stays valid while a new one replaces it.

    Each request stats the CRL directory (a CRL published by ``/crl/…``, ``kyso crl publish``
    or another node is renamed into place, which changes it); the files themselves are listed
    when it changed, and at least once per :data:`RESCAN` of the home's clock whatever happened
    (a file overwritten in place, or renamed within the directory's timestamp granularity). A
    build that fails (a damaged CRL: 503 naming it) is tried again by the next request."""

    def __init__(self, kyso: Kyso) -> None:
        self.kyso = kyso
        self._lock = threading.Lock()
        self._verifier: PdfVerifier | None = None
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._folder: tuple[int, int] | None = None  # the directory's inode and mtime
        self._listed_at: dt.datetime | None = None

    def _crl_stamp(self) -> tuple[tuple[str, int, int], ...]:
        """The CRL files' names, mtimes and sizes; () when the directory is missing."""
        found = []
        try:
            with os.scandir(self.kyso.settings.crl_dir) as entries:  # ~4x faster than glob
                for entry in entries:
                    if entry.name.endswith(".crl"):
                        st = entry.stat()
                        found.append((entry.name, st.st_mtime_ns, st.st_size))
        except OSError:
            return ()
        return tuple(sorted(found))

    def _folder_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.kyso.settings.crl_dir)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    @property
    def built(self) -> bool:
        """Whether a verifier exists (it may still be rebuilt by :meth:`get`)."""
        return self._verifier is not None

    def get(self) -> PdfVerifier:
        """The current verifier; :class:`ApiError` 503 when the home has no trust anchor or a
        published CRL is damaged."""
        with self._lock:
            now, listed = self.kyso.clock.now(), self._listed_at
            folder = self._folder_stamp()  # before listing: a change meanwhile is seen next time
            if (self._verifier is not None and folder == self._folder and listed is not None
                    and listed <= now < listed + RESCAN):
                return self._verifier
            stamp = self._crl_stamp()
            self._folder, self._listed_at = folder, now
            if self._verifier is None or stamp != self._stamp:
                try:
                    self._verifier = build_verifier(self.kyso.clock, kyso=self.kyso)
                except KysoError as exc:
                    self._listed_at = None  # the next request tries again
                    raise ApiError(503, "service_unavailable",
                                   f"PDF verification is not available on this node: {exc}",
                                   {"Retry-After": "60"}) from None
                self._stamp = stamp
            return self._verifier


router = APIRouter(tags=["verify"], route_class=JsonApiRoute)


def setup(app: FastAPI, options: AppOptions) -> None:
    """Build the home's verifier now (if the home has a CA) and the concurrency limit."""
    holder = VerifierHolder(app.state.kyso)
    with contextlib.suppress(ApiError):  # no CA yet: the routes answer 503 until one exists
        holder.get()
    app.state.pdf_verifiers = holder
    app.state.verify_slots = anyio.Semaphore(MAX_CONCURRENT)


# --- reading the request ---------------------------------------------------------------------


def _name(value: str | None, default: str) -> str:
    """A part's filename as the report shows it: control characters removed, at most 255."""
    text = "".join(ch for ch in (value or "") if ch.isprintable())[:MAX_NAME].strip()
    return text or default


async def _files(request: Request, field: str, limit: int, max_files: int
                 ) -> list[UploadFile]:
    """The ``field`` file parts of a multipart body of at most ``limit`` bytes, in order
    (spooled to disk above 1 MiB each). The caller closes them."""
    check_declared(request, limit)
    parser = MultiPartParser(request.headers, limited(request, limit), max_files=max_files,
                             max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "invalid_request", f"malformed multipart body: {exc.message}") \
            from None
    parts = form.getlist(field)
    files = [p for p in parts if isinstance(p, UploadFile)]
    problem = None
    if len(files) != len(parts):
        problem = (f"the {field} part must be a file upload (Content-Disposition with a "
                   "filename)")
    elif not files:
        problem = f"the multipart body has no part named {field}"
    for key, value in form.multi_items():  # other file parts are ignored
        if isinstance(value, UploadFile) and (key != field or problem):
            await value.close()
    if problem:
        raise ApiError(400, "invalid_request", problem)
    return files


# --- verification (in the thread pool) --------------------------------------------------------


def _read_part(upload: UploadFile, limit: int) -> bytes:
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit, f"file {_name(upload.filename, 'part')!r}")
    return data


def _record(kyso: Kyso, reports: Sequence[FileReport], request: Request) -> None:
    """One ``DOCUMENT_VERIFY`` event per request, as ``kyso pdf verify`` records per run."""
    passed = all(r.passed for r in reports)
    kyso.record(Layer.SIGNING, "DOCUMENT_VERIFY", Outcome.SUCCESS if passed else Outcome.FAILURE,
                object=f"{len(reports)} file(s)", actor="anonymous",
                source=client_host(request) or None, request_id=request_id(request),
                files=len(reports), passed=passed)


def _holder(request: Request) -> VerifierHolder:
    holder: VerifierHolder = request.app.state.pdf_verifiers
    return holder


async def _check_available(request: Request) -> None:
    """503 before the body is read when the home has no trust anchor (a verifier built at
    start-up answers at once; otherwise one is built now, in the thread pool)."""
    holder = _holder(request)
    if not holder.built:
        await run_in_threadpool(holder.get)


def _verify_one(request: Request, data: bytes, name: str) -> FileReport:
    """The verifier, the verification and the event in one trip to the thread pool (each trip
    costs two thread wake-ups)."""
    report = _holder(request).get().verify(data, name)
    _record(request.app.state.kyso, [report], request)
    return report


def _verify_parts(request: Request, uploads: list[UploadFile], limit: int) -> list[FileReport]:
    verifier = _holder(request).get()
    reports = []
    for i, upload in enumerate(uploads):
        data = _read_part(upload, limit)
        reports.append(verifier.verify(data, _name(upload.filename, f"file-{i + 1}")))
        del data
    _record(request.app.state.kyso, reports, request)
    return reports


def _check_pdf(data: bytes) -> None:
    try:
        check_header(data)
    except PdfInputError as exc:
        raise ApiError(422, "not_a_pdf", str(exc)) from None


# --- routes ---------------------------------------------------------------------------------

_FILE_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "file", "indication", "sub_indication", "reasons", "signatures"],
    "properties": {
        "schema": {"type": "string", "enum": [REPORT_SCHEMA]},
        "file": {"type": "string"},
        "indication": {"type": "string", "enum": [i.value for i in Indication]},
        "sub_indication": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "size": {"type": "integer"},
        "sha256": {"type": ["string", "null"]},
        "validation_time": {"type": ["string", "null"]},
        "signatures": {"type": "array", "items": {"type": "object"}},
    },
}
_BINARY = {"type": "string", "format": "binary"}


def _pdf_limit(request: Request) -> int:
    options: AppOptions = request.app.state.options
    return options.max_pdf_bytes


@router.post(
    "/api/v1/verify",
    summary="Verify every signature of one PDF",
    description="The body is the PDF itself (`Content-Type: application/pdf`) or a "
                "`multipart/form-data` body with one file part named `file`. The answer is the "
                "`kyso-pdf-verify/1` report: a failed signature is `TOTAL-FAILED` with HTTP 200. "
                "No token needed.",
    openapi_extra={"requestBody": {"required": True, "content": {
        PDF: {"schema": _BINARY},
        MULTIPART: {"schema": {"type": "object", "required": ["file"],
                               "properties": {"file": _BINARY}}}}}},
    responses={200: {"description": "The verification report (any verdict)",
                     "content": {"application/json": {"schema": _FILE_REPORT_SCHEMA}}},
               **error_responses(400, 413, 415, 422, 503)},
)
async def verify(request: Request) -> Response:
    limit = _pdf_limit(request)
    media = media_type(request)
    if media not in (PDF, MULTIPART):
        raise unsupported_media(media, f"the PDF as {PDF}, or {MULTIPART} with a part named file")
    check_declared(request, limit if media == PDF else limit + MULTIPART_OVERHEAD)
    await _check_available(request)  # 503 before reading the body
    async with request.app.state.verify_slots:
        if media == PDF:
            data, name = await read_body(request, limit), "-"
        else:
            uploads = await _files(request, "file", limit + MULTIPART_OVERHEAD, max_files=1)
            try:
                name = _name(uploads[0].filename, "-")
                data = await run_in_threadpool(_read_part, uploads[0], limit)
            finally:
                for upload in uploads:
                    await upload.close()
        _check_pdf(data)
        report = await run_in_threadpool(_verify_one, request, data, name)
    return JSONResponse(report.to_dict(), headers=NO_STORE)


@router.post(
    "/api/v1/verify/batch",
    summary="Verify several PDFs in one request",
    description=f"A `multipart/form-data` body with up to {MAX_BATCH_FILES} file parts named "
                f"`files`, each within the PDF size limit, together within {BATCH_BYTES_FACTOR} "
                "times that limit. The answer lists one `kyso-pdf-verify/1` report per part, in "
                "the order of the parts, each named by its part's filename; a part that is not "
                "a PDF gets a `TOTAL-FAILED` / `FORMAT_FAILURE` report. No token needed.",
    openapi_extra={"requestBody": {"required": True, "content": {
        MULTIPART: {"schema": {"type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "items": _BINARY, "maxItems": MAX_BATCH_FILES}}}}}}},
    responses={200: {"description": "One report per file, in order",
                     "content": {"application/json": {"schema": {
                         "type": "object", "required": ["schema", "passed", "reports"],
                         "properties": {"schema": {"type": "string", "enum": [BATCH_SCHEMA]},
                                        "passed": {"type": "boolean"},
                                        "reports": {"type": "array",
                                                    "items": _FILE_REPORT_SCHEMA}}}}}},
               **error_responses(400, 413, 415, 503)},
)
async def verify_batch(request: Request) -> Response:
    limit = _pdf_limit(request)
    media = media_type(request)
    if media != MULTIPART:
        raise unsupported_media(media, f"{MULTIPART} with file parts named files")
    total = BATCH_BYTES_FACTOR * limit + MULTIPART_OVERHEAD
    check_declared(request, total)
    await _check_available(request)
    async with request.app.state.verify_slots:
        uploads = await _files(request, "files", total, max_files=MAX_BATCH_FILES)
        try:
            reports = await run_in_threadpool(_verify_parts, request, uploads, limit)
        finally:
            for upload in uploads:
                await upload.close()
    return JSONResponse({"schema": BATCH_SCHEMA, "passed": all(r.passed for r in reports),
                         "reports": [r.to_dict() for r in reports]}, headers=NO_STORE)
