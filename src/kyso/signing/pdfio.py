"""Opening PDFs for signing: one place that turns pyHanko's many parse errors into a clear
:class:`~kyso.errors.PdfInputError`, handles passwords, and reads what placement needs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import SigningError as PyHankoSigningError

from kyso.errors import PdfInputError, SigningError

Box = tuple[float, float, float, float]


@contextmanager
def pdf_errors(what: str) -> Iterator[None]:
    """Any failure of the PDF parser while doing ``what`` becomes a PdfInputError."""
    try:
        yield
    except PdfInputError:
        raise
    except PyHankoSigningError as exc:  # a refusal of pyHanko's, not a damaged file
        raise SigningError(f"{what}: {str(exc).strip() or type(exc).__name__}") from None
    except (PdfError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            AssertionError, RecursionError, OverflowError, UnicodeError, EOFError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise PdfInputError(f"{what}: the PDF is damaged or not a PDF ({detail})") from None


def check_header(data: bytes) -> None:
    if not data:
        raise PdfInputError("the input is empty, not a PDF")
    if b"%PDF-" not in data[:1024]:
        raise PdfInputError("the input is not a PDF (no %PDF- header)")
    if b"%%EOF" not in data[-2048:]:
        raise PdfInputError("the PDF is truncated (no %%EOF marker at its end)")


def open_for_update(data: bytes, password: str | None) -> IncrementalPdfFileWriter:
    """A writer that appends an incremental update to ``data`` (never changing its bytes)."""
    check_header(data)
    with pdf_errors("cannot read the PDF"):
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        reader = writer.prev
        if reader.encrypted:
            if password is None:
                raise PdfInputError("the PDF is password-protected; give its password "
                                    "(--pdf-password-file or KYSO_PDF_PASSWORD)")
            result = writer.encrypt(password.encode("utf-8"))
            if result.status is AuthStatus.FAILED:
                raise PdfInputError("wrong PDF password")
        _ = reader.root["/Pages"]  # a document without pages is not a dossier
        if page_count(reader) < 1:
            raise PdfInputError("the PDF has no pages")
    return writer


def page_count(reader: PdfFileReader) -> int:
    return int(reader.root["/Pages"]["/Count"])


def page_box(reader: PdfFileReader, page_ix: int) -> Box:
    """The visible area (CropBox, else MediaBox, possibly inherited) of a 0-based page."""
    with pdf_errors(f"cannot read page {page_ix + 1}"):
        ref, _resources = reader.find_page_for_modification(page_ix)
        node = ref.get_object()
        for key in ("/CropBox", "/MediaBox"):
            current = node
            while current is not None:
                if key in current:
                    x1, y1, x2, y2 = (float(v) for v in current[key])
                    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
                parent = current.get("/Parent")
                current = parent.get_object() if parent is not None else None
    raise PdfInputError(f"page {page_ix + 1} has no MediaBox")


@dataclass(frozen=True)
class ExistingField:
    name: str
    filled: bool
    page_ref: generic.Reference | None
    rect: Box | None


def signature_fields(reader: PdfFileReader) -> list[ExistingField]:
    out = []
    with pdf_errors("cannot read the signature fields"):
        for name, value, ref in enumerate_sig_fields(reader):
            widget = ref.get_object()
            try:  # indexing, not .get(): it resolves and decrypts (encrypted PDFs)
                rect = widget["/Rect"]
            except KeyError:
                rect = None
            page = widget.raw_get("/P") if "/P" in widget else None
            box = None
            if rect is not None:
                x1, y1, x2, y2 = (float(v) for v in rect)
                box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
            out.append(ExistingField(
                name=name, filled=value is not None,
                page_ref=page.reference if isinstance(page, generic.IndirectObject) else None,
                rect=box if box and box[2] > box[0] and box[3] > box[1] else None,
            ))
    return out
