"""Signed dossiers judged by independent tools (domain.md §2): poppler's ``pdfsig`` (NSS),
``qpdf --check``, the pyHanko CLI, ``pdftotext`` / ``pdftoppm`` for the Vietnamese stamps, and
NSS's ``pk12util`` for the PKCS#12 that ``kyso cert issue --p12`` writes.

These are cross-checks, not the verdict: ``pdfsig`` checks digest and trust only and cannot
verify document timestamps, ``qpdf --check`` checks syntax only. What the tools cannot see
(revocation, modifications after signing) is kyso's verifier's job, asked here too so that the
opinions are compared on the same files.

Two options that are not in the plain commands, and why:

- ``pdfsig -no-ocsp``: otherwise NSS asks the OCSP responder named in the certificates
  (``http://pki.thainguyen.gov.vn``), unreachable from the tests, and reports "Unknown issue
  with Certificate or corrupted data." instead of judging the chain.
- ``pyhanko sign validate --no-revocation-check`` at every level: pyhanko-cli's ``validate``
  ignores the document's DSS and has no way to be given CRLs or to stay offline, so even a
  B-LT/B-LTA file with complete validation data is "UNTRUSTED" without network access (and
  ``sign adesverify`` fetches online too). The chain to our root, integrity, the signature
  timestamp and the difference analysis are still checked.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader
from signing_support import (  # noqa: F401 - fixtures
    Holder,
    citizen,
    dossier,
    root_pem,
    seal,
    services,
    staff,
    verifier,
)

from conftest import BASE_URL, FAST_KDF, PASSPHRASE, SEAL, STAFF, T0
from kyso.cli import cli
from kyso.signing.appearance import Holder as StampHolder
from kyso.signing.appearance import StampRequest, StampStyle, stamp_lines
from kyso.signing.pdfio import signature_fields
from kyso.signing.sign import Level, SignRequest
from kyso.signing.verdict import FileReport, Indication
from kyso.signing.verify import PdfVerifier

pytestmark = pytest.mark.external

PYHANKO = shutil.which("pyhanko", path=str(Path(sys.executable).parent)) or shutil.which("pyhanko")
INSTALL_HINT = {
    "pdfsig": "poppler-utils", "pdftotext": "poppler-utils", "pdftoppm": "poppler-utils",
    "certutil": "libnss3-tools", "pk12util": "libnss3-tools", "vfychain": "libnss3-tools",
    "qpdf": "qpdf",
    "pyhanko": "pip install pyhanko-cli",
}


def need(*tools: str) -> None:
    """Skip, naming what is missing and where it comes from."""
    missing = [t for t in tools if (PYHANKO if t == "pyhanko" else shutil.which(t)) is None]
    if missing:
        hints = ", ".join(f"{t} ({INSTALL_HINT[t]})" for t in missing)
        pytest.skip(f"external tool not installed: {hints}")


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, encoding="utf-8",
                          errors="replace", timeout=120, check=False, env=env)


def offline_env() -> dict[str, str]:
    """No proxy: a tool that tries the network fails at once instead of waiting."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C.UTF-8"
    return env


# --- inputs -------------------------------------------------------------------------------

def handwriting_png(path: Path) -> Path:
    """A transparent PNG with a blue scribble, like a scanned handwritten signature."""
    image = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(10, 90), (60, 20), (110, 100), (170, 30), (230, 95), (290, 40)],
              fill=(20, 40, 200, 255), width=6)
    image.save(path)
    return path


def signed_dossier(citizen: Holder, staff: Holder, seal: Holder, pdf: bytes, level: Level,
                   image: Path) -> bytes:
    """Citizen (invisible) → official (visible, handwriting image) → agency seal over the
    official's stamp, certifying and locking every field. The seal is at ``level``; the earlier
    two at most at B-LT (kyso's verifier fails a document timestamp followed by a later
    signature: see test_pdf_cli.py's xfail)."""
    earlier = Level.B_LT if level is Level.B_LTA else level
    data = citizen.signer.sign(pdf, SignRequest(level=earlier, field_name="citizen")).data
    data = staff.signer.sign(data, SignRequest(
        level=earlier, field_name="official",
        stamp=StampRequest(style=StampStyle.OFFICIAL, image=image))).data
    return seal.signer.sign(data, SignRequest(
        level=level, field_name="seal",
        stamp=StampRequest(style=StampStyle.SEAL, position="over:official"),
        certify=True, lock_fields=("*",))).data


def official_only(staff: Holder, pdf: bytes, level: Level, image: Path) -> bytes:
    return staff.signer.sign(pdf, SignRequest(
        level=level, field_name="official",
        stamp=StampRequest(style=StampStyle.OFFICIAL, image=image))).data


def electronic_copy(seal: Holder, pdf: bytes, level: Level) -> bytes:
    return seal.signer.sign(pdf, SignRequest(level=level, field_name="copy",
                                             stamp=StampRequest(style=StampStyle.COPY))).data


def kyso_fields(report: FileReport) -> tuple[list[str], list[str]]:
    """(signature fields, document-timestamp fields) as kyso's verifier sees them."""
    sigs = [s.field for s in report.signatures if s.kind == "signature"]
    stamps = [s.field for s in report.signatures if s.kind == "document-timestamp"]
    return sigs, stamps


# --- pdfsig -------------------------------------------------------------------------------

@pytest.fixture
def nssdb(tmp_path: Path, root_pem: Path) -> str:
    """An NSS database that trusts our root CA and nothing else of ours."""
    need("certutil")
    folder = tmp_path / "nssdb"
    folder.mkdir()
    db = f"sql:{folder}"
    for args in (("-N", "-d", db, "--empty-password"),
                 ("-A", "-d", db, "-n", "kyso test root", "-t", "CT,C,C", "-i", root_pem)):
        proc = run("certutil", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return db


def pdfsig_blocks(output: str) -> dict[str, str]:
    """``pdfsig`` output split per signature, keyed by field name."""
    blocks = re.split(r"^Signature #\d+:\s*$", output, flags=re.MULTILINE)[1:]
    out = {}
    for block in blocks:
        match = re.search(r"- Signature Field Name: (.+)$", block, re.MULTILINE)
        assert match is not None, block
        out[match[1].strip()] = block
    return out


def pdfsig_version() -> tuple[int, ...]:
    proc = run("pdfsig", "-v")
    match = re.search(r"pdfsig version (\d+)\.(\d+)", proc.stdout + proc.stderr)
    assert match is not None, proc.stdout + proc.stderr
    return (int(match[1]), int(match[2]))


# poppler before 24.05 reads NSS's thread error code after CERT_PKIXVerifyCert even when the
# call succeeded, so an error NSS set and recovered from on the way turns a trusted chain into
# "Unknown issue with Certificate or corrupted data.": SEC_ERROR_EXTENSION_NOT_FOUND for a signer
# without subjectAltName, SEC_ERROR_UNRECOGNIZED_OID for a subject attribute NSS does not know,
# such as organizationIdentifier (2.5.4.97), which an ETSI legal-person certificate must carry.
# The seal certificate has both. With such a pdfsig the trust is asked of NSS itself, with the
# call pdfsig makes: libpkix (vfychain -pp), email-signer usage, the chain from the signature.
STALE_NSS_ERROR = "- Certificate Validation: Unknown issue with Certificate or corrupted data."
FIXED_POPPLER = (24, 5)


def nss_trusts_signer(data: bytes, field: str, nssdb: str) -> str:
    """``vfychain``'s answer for the signer chain embedded in ``field``'s signature."""
    need("vfychain")
    (sig,) = [s for s in PdfFileReader(io.BytesIO(data)).embedded_signatures
              if s.field_name == field]
    leaf = sig.signer_cert
    others = [c.chosen for c in sig.signed_data["certificates"] if c.chosen.dump() != leaf.dump()]
    folder = Path(nssdb.removeprefix("sql:")).parent / f"chain-{field}"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, cert in enumerate([leaf, *others]):
        paths.append(folder / f"{i}.der")
        paths[-1].write_bytes(cert.dump())
    proc = run("vfychain", "-d", nssdb, "-pp", "-u", "4", *paths, env=offline_env())
    return proc.stdout + proc.stderr


def assert_pdfsig_trusts(path: Path, nssdb: str, sig_fields: list[str],
                         ts_fields: list[str]) -> None:
    proc = run("pdfsig", "-nssdir", nssdb, "-no-ocsp", path, env=offline_env())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    blocks = pdfsig_blocks(proc.stdout)
    assert sorted(blocks) == sorted(sig_fields + ts_fields), output
    for name in sig_fields:  # pdfsig cannot verify document timestamps: not asked about them
        block = blocks[name]
        assert "- Signature Validation: Signature is Valid." in block, (name, output)
        if STALE_NSS_ERROR in block and pdfsig_version() < FIXED_POPPLER:
            answer = nss_trusts_signer(path.read_bytes(), name, nssdb)
            assert "Chain is good!" in answer, (name, answer)
        else:
            assert "- Certificate Validation: Certificate is Trusted." in block, (name, output)
        assert "- Signature Type: ETSI.CAdES.detached" in block, (name, output)
        assert "- Signing Hash Algorithm: SHA-256" in block, (name, output)


def assert_qpdf_check(path: Path) -> None:
    proc = run("qpdf", "--check", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # 2: errors, 3: warnings
    assert "No syntax or stream encoding errors found" in proc.stdout, proc.stdout


def assert_pyhanko_validates(path: Path, root: Path, sig_fields: list[str],
                             timestamped: bool) -> None:
    proc = run(PYHANKO or "pyhanko", "sign", "validate", "--trust", root, "--trust-replace",
               "--no-revocation-check", path, env=offline_env())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summaries = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    assert list(summaries) == sig_fields, output
    for name in sig_fields:
        summary = summaries[name].split(":", 1)[1]  # after the certificate fingerprint
        assert summary.startswith("INTACT:TRUSTED"), (name, output)
        assert ("TIMESTAMP_TOKEN<INTACT:TRUSTED>" in summary) is timestamped, (name, output)


# --- every level and every style ----------------------------------------------------------

@pytest.mark.parametrize("level", list(Level), ids=[lv.value for lv in Level])
def test_independent_verifiers_accept_every_level_and_style(
        citizen: Holder, staff: Holder, seal: Holder, verifier: PdfVerifier, dossier: bytes,
        root_pem: Path, nssdb: str, tmp_path: Path, level: Level) -> None:
    need("pdfsig", "qpdf", "pyhanko")
    image = handwriting_png(tmp_path / "chu-ky.png")
    files = {
        "dossier": signed_dossier(citizen, staff, seal, dossier, level, image),
        "official": official_only(staff, dossier, level, image),
        "copy": electronic_copy(seal, dossier, level),
    }
    expected_fields = {"dossier": ["citizen", "official", "seal"], "official": ["official"],
                       "copy": ["copy"]}
    for name, data in files.items():
        path = tmp_path / f"{name}-{level.value}.pdf"
        path.write_bytes(data)
        report = verifier.verify(data, str(path))
        assert report.indication is Indication.TOTAL_PASSED, report.reasons
        sig_fields, ts_fields = kyso_fields(report)
        assert sig_fields == expected_fields[name]
        assert len(ts_fields) == (1 if level is Level.B_LTA else 0)

        assert_pdfsig_trusts(path, nssdb, sig_fields, ts_fields)
        assert_qpdf_check(path)
        assert_pyhanko_validates(path, root_pem, sig_fields, timestamped=level.timestamped)


def test_independent_verifiers_see_a_tampered_signature(
        staff: Holder, dossier: bytes, root_pem: Path, nssdb: str, tmp_path: Path) -> None:
    """Negative control: the same commands do notice a changed signed byte, so the checks
    above are not vacuous. (pdfsig exits 0 even then: only its text tells.)"""
    need("pdfsig", "pyhanko")
    data = staff.signer.sign(dossier, SignRequest(field_name="official")).data
    assert data.count(b"(Trang 1/2)") == 1
    path = tmp_path / "sua.pdf"
    path.write_bytes(data.replace(b"(Trang 1/2)", b"(Trang 9/2)"))
    proc = run("pdfsig", "-nssdir", nssdb, "-no-ocsp", path, env=offline_env())
    block = pdfsig_blocks(proc.stdout)["official"]
    assert "Signature is Valid." not in block, proc.stdout
    assert "Digest Mismatch" in block, proc.stdout
    proc = run(PYHANKO or "pyhanko", "sign", "validate", "--trust", root_pem, "--trust-replace",
               "--no-revocation-check", path, env=offline_env())
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "INTACT:TRUSTED" not in proc.stdout


def test_pdfsig_trusts_the_seal_certificate(staff: Holder, seal: Holder, dossier: bytes,
                                            nssdb: str, tmp_path: Path) -> None:
    """NSS validates PDF signers for its "email signer" usage, which wants emailProtection; a
    seal certificate with documentSigning alone was "Certificate type not approved"."""
    need("pdfsig", "vfychain")
    path = tmp_path / "seal.pdf"
    data = seal.signer.sign(dossier, SignRequest(field_name="seal")).data
    path.write_bytes(data)
    answer = nss_trusts_signer(data, "seal", nssdb)
    assert "Chain is good!" in answer, answer
    proc = run("pdfsig", "-nssdir", nssdb, "-no-ocsp", path, env=offline_env())
    block = pdfsig_blocks(proc.stdout)["seal"]
    assert "- Signature Validation: Signature is Valid." in block, proc.stdout
    if pdfsig_version() >= FIXED_POPPLER:
        assert "- Certificate Validation: Certificate is Trusted." in block, proc.stdout
    else:  # see STALE_NSS_ERROR: the one answer such a pdfsig gives for an ETSI seal
        assert STALE_NSS_ERROR in block, proc.stdout
    # the control: a staff certificate is trusted by every pdfsig
    staff_path = tmp_path / "staff.pdf"
    staff_path.write_bytes(staff.signer.sign(dossier, SignRequest(field_name="official")).data)
    proc = run("pdfsig", "-nssdir", nssdb, "-no-ocsp", staff_path, env=offline_env())
    block = pdfsig_blocks(proc.stdout)["official"]
    assert "- Certificate Validation: Certificate is Trusted." in block, proc.stdout


# --- Vietnamese stamps --------------------------------------------------------------------

def pdftotext_lines(path: Path) -> list[str]:
    proc = run("pdftotext", "-enc", "UTF-8", path, "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return [line.strip() for line in proc.stdout.splitlines()]


def rendered_pages(path: Path, folder: Path) -> list[Image.Image]:
    """Pages rendered by poppler at 72 dpi: one pixel per point."""
    proc = run("pdftoppm", "-r", "72", "-png", path, folder / "trang")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no "Syntax Error", no font warnings
    pages = sorted(folder.glob("trang-*.png"))
    return [Image.open(p).convert("RGB") for p in pages]


def widget_boxes(data: bytes) -> dict[str, tuple[float, float, float, float]]:
    fields = signature_fields(PdfFileReader(io.BytesIO(data)))
    return {f.name: f.rect for f in fields if f.rect is not None}


def ink(page: Image.Image, box: tuple[float, float, float, float],
        page_height: float = 842) -> dict[str, int]:
    """Counts of non-white, blue-ish and red-ish pixels inside a PDF box (origin bottom-left)."""
    x1, y1, x2, y2 = box
    crop = page.crop((int(x1), int(page_height - y2), int(x2), int(page_height - y1)))
    counts = {"ink": 0, "blue": 0, "red": 0}
    raw = crop.tobytes()
    for i in range(0, len(raw), 3):
        r, g, b = raw[i], raw[i + 1], raw[i + 2]
        if min(r, g, b) < 200:
            counts["ink"] += 1
        if b > 120 and b > r + 60 and b > g + 40:
            counts["blue"] += 1
        if r > 150 and r > g + 80 and r > b + 80:
            counts["red"] += 1
    return counts


@pytest.mark.parametrize("style", list(StampStyle), ids=[s.value for s in StampStyle])
def test_stamp_text_and_rendering(staff: Holder, seal: Holder, dossier: bytes, tmp_path: Path,
                                  style: StampStyle) -> None:
    """``pdftotext`` finds exactly the Decree 30 lines; poppler renders the stamp cleanly:
    the official's blue handwriting, the red seal over the official's stamp, the copy's text."""
    need("pdftotext", "pdftoppm")
    image = handwriting_png(tmp_path / "chu-ky.png")
    official_req = SignRequest(field_name="official",
                               stamp=StampRequest(style=StampStyle.OFFICIAL, image=image))
    if style is StampStyle.OFFICIAL:
        data, signer = staff.signer.sign(dossier, official_req).data, staff
    elif style is StampStyle.SEAL:
        first = staff.signer.sign(dossier, official_req).data
        data = seal.signer.sign(first, SignRequest(
            field_name="seal", stamp=StampRequest(style=style, position="over:official"),
            certify=True, lock_fields=("*",))).data
        signer = seal
    else:
        data, signer = seal.signer.sign(dossier, SignRequest(stamp=StampRequest(style=style))).data, seal
    path = tmp_path / f"{style.value}.pdf"
    path.write_bytes(data)

    expected = stamp_lines(style, StampHolder.of(signer.certificate), T0)
    assert expected[-1] == "Thời gian ký: 2026-11-23T09:00:00+07:00"
    lines = pdftotext_lines(path)
    for line in expected:
        assert line in lines, (line, lines)
    if style is StampStyle.SEAL:  # the official's stamp under the seal stays readable
        for line in stamp_lines(StampStyle.OFFICIAL, StampHolder.of(staff.certificate), T0):
            assert line in lines, (line, lines)
    if style is not StampStyle.COPY:
        assert f"Ký bởi: {StampHolder.of(signer.certificate).name}" in lines

    pages = rendered_pages(path, tmp_path)
    assert len(pages) == 2
    assert pages[0].size == (595, 842)
    box = widget_boxes(data)[style.value]
    counts = ink(pages[0], box)
    assert counts["ink"] > 50, counts  # the stamp is drawn, not an empty box
    if style is StampStyle.OFFICIAL:
        assert counts["blue"] > 50, counts
    if style is StampStyle.SEAL:
        assert counts["red"] > 200, counts
    if style is StampStyle.COPY:
        assert counts["blue"] == 0, counts
        assert counts["red"] == 0, counts


@pytest.mark.parametrize("style", [StampStyle.COPY, StampStyle.OFFICIAL],
                         ids=["copy", "official"])
def test_the_seal_stamp_names_the_agency_not_the_province(
        seal: Holder, dossier: bytes, tmp_path: Path, style: StampStyle) -> None:
    """A seal certificate's CN is the agency; its O is the province above it."""
    need("pdftotext")
    path = tmp_path / "ban-sao.pdf"
    path.write_bytes(seal.signer.sign(dossier, SignRequest(
        field_name="copy", stamp=StampRequest(style=style))).data)
    lines = pdftotext_lines(path)
    text = "\n".join(lines)
    if style is StampStyle.COPY:
        assert f"Cơ quan: {SEAL['name']}" in lines, lines
    else:
        assert f"Ký bởi: {SEAL['name']}" in lines, lines
    assert "Cơ quan: UBND tỉnh Thái Nguyên" not in text, lines


def test_stamp_lines_are_the_decree_30_labels(staff: Holder, seal: Holder) -> None:
    """The lines the test above looks for, spelled out once for the fixtures' people."""
    official = stamp_lines(StampStyle.OFFICIAL, StampHolder.of(staff.certificate), T0)
    assert official == [f"Ký bởi: {STAFF['name']}", f"Chức vụ: {STAFF['title']}",
                        f"Cơ quan: {STAFF['unit']}", "Thời gian ký: 2026-11-23T09:00:00+07:00"]
    assert stamp_lines(StampStyle.SEAL, StampHolder.of(seal.certificate), T0)[0] == \
        "Ký bởi: UBND xã Phú Đình"
    assert stamp_lines(StampStyle.COPY, StampHolder.of(seal.certificate), T0) == [
        "Cơ quan: UBND xã Phú Đình", "Thời gian ký: 2026-11-23T09:00:00+07:00"]


# --- PKCS#12 from the command line --------------------------------------------------------

def test_cli_pkcs12_imports_into_nss(tmp_path: Path) -> None:
    need("certutil", "pk12util")
    home, p12 = tmp_path / "home", tmp_path / "an.p12"
    p12_pass = "Bundle-Pass-2026!"
    runner = CliRunner(env={"KYSO_CA_PASSPHRASE": PASSPHRASE, "KYSO_P12_PASSPHRASE": p12_pass,
                            **FAST_KDF, "KYSO_HOME": None})  # type: ignore[dict-item]
    result = runner.invoke(cli, ["--home", str(home), "ca", "init", "--org",
                                 "UBND tỉnh Thái Nguyên", "--province", "thai-nguyen",
                                 "--key-type", "ec-p384", "--base-url", BASE_URL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, [
        "--home", str(home), "cert", "issue", "--profile", "staff", "--name", STAFF["name"],
        "--id", STAFF["id"], "--dob", STAFF["dob"], "--title", STAFF["title"],
        "--unit", STAFF["unit"], "--email", STAFF["email"], "--p12", str(p12),
        "--format", "json"])
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate(
        Path(json.loads(result.stdout)["files"]["certificate"]).read_bytes())

    folder = tmp_path / "nssdb"
    folder.mkdir()
    db = f"sql:{folder}"
    proc = run("certutil", "-N", "-d", db, "--empty-password")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run("pk12util", "-i", p12, "-d", db, "-W", p12_pass)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PKCS12 IMPORT SUCCESSFUL" in proc.stdout + proc.stderr
    listing = run("certutil", "-L", "-d", db)
    assert listing.returncode == 0, listing.stderr
    user = [line for line in listing.stdout.splitlines() if line.rstrip().endswith("u,u,u")]
    assert len(user) == 1, listing.stdout  # the holder's certificate, with its key in NSS
    nickname = re.split(r"\s{2,}", user[0].strip())[0]
    exported = run("certutil", "-L", "-d", db, "-n", nickname, "-a")
    assert exported.returncode == 0, exported.stderr
    assert x509.load_pem_x509_certificate(exported.stdout.encode()) == cert
    keys = run("certutil", "-K", "-d", db)
    assert keys.returncode == 0, keys.stderr
    assert "< 0> ec" in keys.stdout, keys.stdout  # one EC private key
    other = tmp_path / "other-nssdb"
    other.mkdir()
    assert run("certutil", "-N", "-d", f"sql:{other}", "--empty-password").returncode == 0
    proc = run("pk12util", "-i", p12, "-d", f"sql:{other}", "-W", "wrong-passphrase")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert cert.public_bytes(serialization.Encoding.DER)
