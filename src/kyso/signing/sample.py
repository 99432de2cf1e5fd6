"""Sample dossiers for the demo, the tests and the benchmarks: small, valid, deterministic PDFs
(classic xref table, one content stream per page), optionally padded to any size."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import BinaryIO

_NOISE_BLOCK = 1 << 16


def _escape(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def sample_pdf(pages: int = 2, title: str = "Don de nghi cap ban sao trich luc khai sinh",
               padding: int = 0) -> bytes:
    """A PDF with ``pages`` A4 pages of text (Helvetica, Latin-1) and, when ``padding`` > 0,
    an extra stream of that many pseudo-random bytes attached to the first page."""
    out = io.BytesIO()
    write_sample(out, pages=pages, title=title, padding=padding)
    return out.getvalue()


def write_sample_pdf(path: Path, pages: int = 2,
                     title: str = "Don de nghi cap ban sao trich luc khai sinh",
                     padding: int = 0) -> int:
    """:func:`sample_pdf` written to ``path`` in blocks (a large ``padding`` is never held in
    memory); returns the file's size."""
    with open(path, "wb") as fh:
        return write_sample(fh, pages=pages, title=title, padding=padding)


def write_sample(out: BinaryIO, pages: int = 2,
                 title: str = "Don de nghi cap ban sao trich luc khai sinh",
                 padding: int = 0) -> int:
    """Write :func:`sample_pdf`'s bytes to ``out``; returns how many were written."""
    if pages < 1:
        raise ValueError("a dossier has at least one page")
    if padding < 0:
        raise ValueError("padding is a number of bytes, at least 0")
    objs: list[bytes] = []
    font = 3 + 2 * pages
    pad = font + 1
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    for i in range(pages):
        content = (b"BT /F1 16 Tf 72 770 Td (" + _escape(title) + b") Tj ET\n"
                   + b"BT /F1 11 Tf 72 740 Td (" + _escape(f"Trang {i + 1}/{pages}") + b") Tj ET\n")
        extra = f" /PieceInfo << /Kyso << /Data {pad} 0 R >> >>" if padding and i == 0 else ""
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources "
                    f"<< /Font << /F1 {font} 0 R >> >> /Contents {4 + 2 * i} 0 R{extra} >>"
                    .encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                b"/Encoding /WinAnsiEncoding >>")
    pos = out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(pos)
        pos += out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    if padding:  # the noise stream, block by block
        offsets.append(pos)
        pos += out.write(b"%d 0 obj\n<< /Length %d >>\nstream\n" % (pad, padding))
        block = hashlib.shake_256(b"kyso sample padding").digest(_NOISE_BLOCK)
        left = padding
        while left:
            pos += out.write(block[:left] if left < len(block) else block)
            left -= min(left, len(block))
        pos += out.write(b"\nendstream\nendobj\n")
    xref = pos
    tail = bytearray(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
    for off in offsets:
        tail += b"%010d 00000 n \n" % off
    tail += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
             % (len(offsets) + 1, xref))
    return pos + out.write(tail)
