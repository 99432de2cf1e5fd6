"""Sample dossiers for the demo, the tests and the benchmarks: small, valid, deterministic PDFs
(classic xref table, one content stream per page), optionally padded to any size."""

from __future__ import annotations

import hashlib


def _escape(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def sample_pdf(pages: int = 2, title: str = "Don de nghi cap ban sao trich luc khai sinh",
               padding: int = 0) -> bytes:
    """A PDF with ``pages`` A4 pages of text (Helvetica, Latin-1) and, when ``padding`` > 0,
    an extra stream of that many pseudo-random bytes attached to the first page."""
    if pages < 1:
        raise ValueError("a dossier has at least one page")
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
    if padding:
        objs.append(b"<< /Length %d >>\nstream\n" % padding + _noise(padding) + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objs) + 1, xref))
    return bytes(out)


def _noise(size: int) -> bytes:
    block = hashlib.shake_256(b"kyso sample padding").digest(1 << 16)
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]
