"""Signing and verifying from files without holding them: ``PdfSigner.sign_to`` /
``sign_file``, ``PdfVerifier.verify_file`` and the pieces under them (``FileView``,
``atomic_output``, ``write_sample_pdf``). Small files, with the in-memory threshold set to 0 so
that the streaming paths run; the 100 MB case is tests/signing/test_large_dossier.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    citizen,
    dossier,
    services,
    staff,
    verifier,
)
from test_verify_attacks import BYTE_RANGES, byte_range_span, rewrite_byte_range
from test_verify_pdf import OWNER_PASSWORD, USER_PASSWORD, encrypted

from kyso.errors import PdfInputError, SigningError
from kyso.files import atomic_output
from kyso.signing import commands, sign, verify
from kyso.signing.pdfio import FileView, stream_sha256
from kyso.signing.sample import sample_pdf, write_sample_pdf
from kyso.signing.sign import Level, SignRequest
from kyso.signing.verdict import FileReport, Indication
from kyso.signing.verify import PdfVerifier


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file is "large": read from disk as needed, never at once."""
    for module in (sign, verify, commands):
        monkeypatch.setattr(module, "IN_MEMORY_MAX", 0)


def summary(report: FileReport) -> tuple[object, ...]:
    return (report.indication, report.sub_indication, report.reasons, report.size,
            report.sha256, report.error,
            [(s.field, s.indication, s.pades_level, [(c.name, c.ok, c.detail) for c in s.checks])
             for s in report.signatures])


# --- the pieces ------------------------------------------------------------------------------

def test_write_sample_pdf_writes_the_bytes_of_sample_pdf(tmp_path: Path) -> None:
    for kwargs in ({"pages": 1}, {"pages": 3, "padding": 200_000, "title": "Ho so (x)"}):
        path = tmp_path / "s.pdf"
        size = write_sample_pdf(path, **kwargs)  # type: ignore[arg-type]
        assert path.read_bytes() == sample_pdf(**kwargs)  # type: ignore[arg-type]
        assert size == path.stat().st_size


def test_a_file_view_slices_like_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        fh.seek(123)
        view = FileView(fh)
        for key in (slice(None, 1024), slice(-2048, None), slice(5000, 7000), slice(9000, 20000),
                    slice(700, 600), slice(len(data), None)):
            assert view[key] == data[key]
        assert len(view) == len(data)
        assert fh.tell() == 123  # the file's position, which pyHanko uses, never moves
        with pytest.raises(TypeError):
            view[::2]


def test_atomic_output_shows_the_file_only_when_complete(tmp_path: Path) -> None:
    dst = tmp_path / "out.pdf"

    def interrupted() -> None:
        with atomic_output(dst) as out:
            out.write(b"half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted()
    assert list(tmp_path.iterdir()) == []
    with atomic_output(dst, mode=0o640) as out:
        out.write(b"whole")
    assert dst.read_bytes() == b"whole"
    assert dst.stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileExistsError), atomic_output(dst) as out:
        out.write(b"other")
    assert dst.read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [dst]


# --- signing into files ----------------------------------------------------------------------

@pytest.mark.parametrize("level", list(Level))
def test_sign_file_streams_and_matches_the_bytes_api(
        streaming: None, tmp_path: Path, staff: Holder, verifier: PdfVerifier, dossier: bytes,
        level: Level) -> None:
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(dossier)

    result = staff.signer.sign_file(src, dst, SignRequest(level=level))

    data = dst.read_bytes()
    assert data.startswith(dossier)  # an incremental update: the input's bytes stay
    assert src.read_bytes() == dossier
    assert (result.size, result.sha256) == stream_sha256(io.BytesIO(data))
    from_bytes = staff.signer.sign(dossier, SignRequest(level=level))
    assert {k: v for k, v in result.to_dict().items() if k not in ("size", "sha256")} == {
        k: v for k, v in from_bytes.to_dict().items() if k not in ("size", "sha256")}
    report = verifier.verify(data)
    assert report.passed, report.reasons
    assert report.signatures[0].pades_level == level.value


def test_sign_file_leaves_nothing_behind_when_it_fails(tmp_path: Path, staff: Holder) -> None:
    work = tmp_path / "work"
    work.mkdir()
    src, dst = work / "in.pdf", work / "out.pdf"
    src.write_bytes(b"%PDF-1.7\nnot really a PDF\n%%EOF\n")

    with pytest.raises(PdfInputError):
        staff.signer.sign_file(src, dst, SignRequest())

    assert [p.name for p in work.iterdir()] == ["in.pdf"]


def test_sign_to_refuses_an_output_it_cannot_read_back(staff: Holder, dossier: bytes,
                                                       tmp_path: Path) -> None:
    with open(tmp_path / "w.pdf", "wb") as write_only, pytest.raises(SigningError):
        staff.signer.sign_to(dossier, write_only, SignRequest())


def test_sign_to_a_bytesio_from_a_file(streaming: None, tmp_path: Path, staff: Holder,
                                       verifier: PdfVerifier, dossier: bytes) -> None:
    src = tmp_path / "in.pdf"
    src.write_bytes(encrypted(dossier, mac=True))
    out = io.BytesIO()
    with open(src, "rb") as fh:
        staff.signer.sign_to(fh, out, SignRequest(level=Level.B_LT, pdf_password=USER_PASSWORD))

    report = verifier.verify(out.getvalue(), password=OWNER_PASSWORD)

    assert report.passed, report.reasons


# --- verifying files -------------------------------------------------------------------------

def corpus(staff: Holder, citizen: Holder, dossier: bytes) -> dict[str, bytes]:
    """Passing and failing files whose verdicts depend on every check that reads the bytes
    (header, byte range gap, the end of the file)."""
    bb = staff.signer.sign(dossier, SignRequest()).data
    lta = citizen.signer.sign(dossier, SignRequest(field_name="citizen", level=Level.B_LTA)).data
    _, _, values = byte_range_span(bb)
    _, b, c, _ = values
    tampered = bytearray(bb)
    tampered[bb.index(b"Tf") + 4] ^= 1
    return {
        "b-b": bb,
        "b-lt": staff.signer.sign(dossier, SignRequest(level=Level.B_LT)).data,
        "b-lta then b-b": staff.signer.sign(lta, SignRequest(field_name="official")).data,
        "whitespace after eof": bb + b"\r\n\x00 ",
        "junk after eof": bb + b"junk",
        "object before a repeated startxref": (bb + b"12 0 obj\n(x)\nendobj\n"
                                               + bb[bb.rindex(b"startxref"):]),
        "byte changed": bytes(tampered),
        "byte range beyond eof": rewrite_byte_range(bb, BYTE_RANGES["beyond-eof"](*values)),
        "gap wider than contents": rewrite_byte_range(
            bb, BYTE_RANGES["gap-wider-than-contents"](*values)),
        "gap payload": bb[:b] + (bb[b:b + 40] + b">%" + b" 99 0 obj (x) endobj ").ljust(c - b)
        + bb[c:],
        "unsigned": dossier,
        "truncated": bb[:-300],
        "not a pdf": b"hello",
        "empty": b"",
    }


def test_verify_file_streaming_gives_the_verdict_of_verify(
        streaming: None, tmp_path: Path, staff: Holder, citizen: Holder,
        verifier: PdfVerifier, dossier: bytes) -> None:
    for name, data in corpus(staff, citizen, dossier).items():
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(data)

        streamed = verifier.verify_file(path, name)

        assert summary(streamed) == summary(verifier.verify(data, name)), name
        assert streamed.passed == name.startswith(("b-", "whitespace")), (name, streamed.reasons)


def test_verify_file_of_an_encrypted_pdf(streaming: None, tmp_path: Path, staff: Holder,
                                         verifier: PdfVerifier, dossier: bytes) -> None:
    signed = staff.signer.sign(encrypted(dossier, mac=False),
                               SignRequest(level=Level.B_LT, pdf_password=USER_PASSWORD)).data
    path = tmp_path / "khoa.pdf"
    path.write_bytes(signed)

    assert verifier.verify_file(path, password=USER_PASSWORD).passed
    assert "password" in (verifier.verify_file(path).error or "")


def test_verify_file_of_a_missing_file_fails_closed(tmp_path: Path,
                                                    verifier: PdfVerifier) -> None:
    report = verifier.verify_file(tmp_path / "none.pdf", "none.pdf")

    assert report.indication is Indication.TOTAL_FAILED
    assert report.error is not None
    assert "cannot read none.pdf" in report.error
