"""``kyso pdf sign | sign-batch | verify`` end to end through the console entry point.

One home per module: a CA made with ``kyso ca init``, staff / seal / citizen certificates
issued with ``kyso cert issue --p12`` and CRLs published with ``kyso crl publish`` (a B-B or
B-T signature has no revocation data of its own; offline, the home's CRLs are what proves
"not revoked"). Each test runs ``kyso.cli.main`` in-process, as the console script does, so exit
codes and messages are the real ones. The CLI runs on the system clock.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from conftest import BASE_URL, CITIZEN, FAST_KDF, PASSPHRASE, SEAL, STAFF
from kyso.audit import read_events
from kyso.cli import cli
from kyso.signing.pdfio import signature_fields
from kyso.signing.sample import sample_pdf
from main_support import Outcome, run_main

P12_PASSPHRASE = "holder-p12-passphrase"
PDF_USER_PASSWORD = "mat-khau-nguoi-dung"
PDF_OWNER_PASSWORD = "mat-khau-chu-so-huu"
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
SECRET_ENV = {
    "KYSO_CA_PASSPHRASE": PASSPHRASE,
    "KYSO_P12_PASSPHRASE": P12_PASSPHRASE,
    **FAST_KDF,
}

STAFF_ARGS = ("--profile", "staff", "--name", STAFF["name"], "--id", STAFF["id"],
              "--dob", STAFF["dob"], "--title", STAFF["title"], "--unit", STAFF["unit"],
              "--email", STAFF["email"])
SEAL_ARGS = ("--profile", "seal", "--name", SEAL["name"], "--tax-code", SEAL["tax_code"],
             "--budget-code", SEAL["budget_code"])
CITIZEN_ARGS = ("--profile", "citizen", "--name", CITIZEN["name"], "--id", CITIZEN["id"])

# The report contract of docs/verification.md (schema kyso-pdf-verify/1).
FILE_KEYS = {"schema", "file", "indication", "sub_indication", "error", "reasons", "size",
             "sha256", "validation_time", "signatures"}
SIGNATURE_KEYS = {"field", "kind", "indication", "sub_indication", "reasons", "signer",
                  "claimed_signing_time", "timestamp", "coverage", "modification_level",
                  "docmdp", "fieldmdp", "certified", "revocation", "pades_level", "checks"}
SIGNER_KEYS = {"subject", "common_name", "uid", "serial", "issuer", "not_before", "not_after"}


# --- the home -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    p12: Path
    certificate: Path
    serial: str


@dataclass(frozen=True)
class Pki:
    home: Path
    staff: Signer
    seal: Signer
    citizen: Signer
    root_pem: Path


def _invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner(env=env).invoke(cli, list(args))
    assert result.exit_code == 0, f"kyso {' '.join(args)}\n{result.output}\n{result.exception!r}"
    return result.stdout


def _issue(env: dict[str, str], home: Path, args: tuple[str, ...], p12: Path) -> Signer:
    record = json.loads(_invoke(env, "--home", str(home), "cert", "issue", *args,
                                "--p12", str(p12), "--format", "json"))
    return Signer(p12=p12, certificate=Path(record["files"]["certificate"]),
                  serial=record["serial"])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pdf-cli")
    home = base / "home"
    env = {**SECRET_ENV, "KYSO_HOME": None, "KYSO_DATABASE_URL": None}  # type: ignore[dict-item]
    _invoke(env, "--home", str(home), "ca", "init", "--org", "UBND tỉnh Thái Nguyên",
            "--province", "thai-nguyen", "--key-type", "ec-p384", "--base-url", BASE_URL)
    staff = _issue(env, home, STAFF_ARGS, base / "staff.p12")
    seal = _issue(env, home, SEAL_ARGS, base / "seal.p12")
    citizen = _issue(env, home, CITIZEN_ARGS, base / "citizen.p12")
    _invoke(env, "--home", str(home), "crl", "publish")
    return Pki(home=home, staff=staff, seal=seal, citizen=citizen,
               root_pem=home / "ca" / "root.crt.pem")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Passphrases from the environment, no stray settings, a scratch working directory."""
    for name in ("KYSO_HOME", "KYSO_DATABASE_URL", "KYSO_PDF_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def dossier(env: Path) -> Path:
    path = env / "ho-so.pdf"
    path.write_bytes(sample_pdf(pages=2))
    return path


# --- running kyso -------------------------------------------------------------------------

def sign(capsys: pytest.CaptureFixture[str], pki: Pki, src: Path, dst: Path, *extra: str | Path,
         signer: Signer | None = None) -> Outcome:
    p12 = (signer or pki.staff).p12
    return run_main(capsys, pki.home, "pdf", "sign", src, "-o", dst, "--p12", p12, *extra)


def sign_ok(capsys: pytest.CaptureFixture[str], pki: Pki, src: Path, dst: Path,
            *extra: str | Path, signer: Signer | None = None) -> dict[str, Any]:
    """Sign, insist on success, return the JSON result of ``kyso --format json pdf sign``."""
    outcome = run_main(capsys, pki.home, "--format", "json", "pdf", "sign", src, "-o", dst,
                       "--p12", (signer or pki.staff).p12, *extra)
    assert outcome.code == 0, outcome.text
    assert dst.is_file()
    result: dict[str, Any] = outcome.json()
    return result


def verify_json(capsys: pytest.CaptureFixture[str], pki: Pki, *files: Path) -> tuple[int, Any]:
    outcome = run_main(capsys, pki.home, "--format", "json", "pdf", "verify", *files)
    assert "Traceback" not in outcome.text
    return outcome.code, outcome.json()


def assert_refused(outcome: Outcome, code: int, *needles: str) -> None:
    """A clear refusal: exit code, an ``error:`` line naming the problem, no traceback."""
    assert outcome.code == code, f"expected exit {code}, got {outcome.code}\n{outcome.text}"
    assert "Traceback" not in outcome.text, outcome.text
    assert "internal error" not in outcome.text, outcome.text
    assert outcome.err.startswith(("error:", "Error:", "Usage:")), outcome.err
    for needle in needles:
        assert needle.lower() in outcome.err.lower(), f"{needle!r} not in {outcome.err!r}"


def files_in(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (recursively) with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def signatures(report: dict[str, Any], kind: str = "signature") -> dict[str, dict[str, Any]]:
    return {s["field"]: s for s in report["signatures"] if s["kind"] == kind}


def tamper(data: bytes) -> bytes:
    """Change one signed byte of the sample's page text (same length, still a valid PDF)."""
    assert data.count(b"(Trang 1/2)") == 1
    return data.replace(b"(Trang 1/2)", b"(Trang 9/2)")


# --- levels, styles and reports -----------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_sign_at_each_level_then_verify_passes(capsys: pytest.CaptureFixture[str], pki: Pki,
                                               dossier: Path, level: str) -> None:
    before = dossier.read_bytes()
    out = dossier.with_name(f"ky-{level}.pdf")
    outcome = sign(capsys, pki, dossier, out, "--level", level)
    assert outcome.code == 0, outcome.text
    assert f"→ {out}" in outcome.out
    assert level in outcome.out
    assert out.is_file()
    assert dossier.read_bytes() == before
    assert out.read_bytes().startswith(before)  # an incremental update of the input

    text = run_main(capsys, pki.home, "pdf", "verify", out)
    assert text.code == 0, text.text
    assert "Chữ ký hợp lệ" in text.out
    assert "TOTAL-PASSED" in text.out

    code, report = verify_json(capsys, pki, out)
    assert code == 0
    assert report["indication"] == "TOTAL-PASSED", report["reasons"]
    (sig,) = signatures(report).values()
    assert sig["pades_level"] == level
    assert sig["signer"]["serial"] == pki.staff.serial
    assert sig["revocation"]["status"] == "good"
    assert (sig["timestamp"] is not None) is (level != "B-B")
    timestamps = signatures(report, "document-timestamp")
    assert len(timestamps) == (1 if level == "B-LTA" else 0)
    assert all(t["indication"] == "TOTAL-PASSED" for t in timestamps.values())


def test_timestamped_levels_need_the_ca_passphrase(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                   dossier: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_CA_PASSPHRASE")
    before = files_in(dossier.parent)
    outcome = sign(capsys, pki, dossier, dossier.with_name("out.pdf"), "--level", "B-T")
    assert_refused(outcome, 2, "CA passphrase", "KYSO_CA_PASSPHRASE")
    assert files_in(dossier.parent) == before

    monkeypatch.setenv("KYSO_CA_PASSPHRASE", "not-the-ca-passphrase")
    outcome = sign(capsys, pki, dossier, dossier.with_name("out.pdf"), "--level", "B-LTA")
    assert_refused(outcome, 1, "wrong CA passphrase")
    assert files_in(dossier.parent) == before


def test_b_b_signs_without_a_home(capsys: pytest.CaptureFixture[str], pki: Pki,
                                  dossier: Path, tmp_path: Path) -> None:
    """B-B needs only the PKCS#12; verification then needs an explicit trust anchor."""
    out = dossier.with_name("ky.pdf")
    nowhere = tmp_path / "no-home"
    outcome = run_main(capsys, nowhere, "pdf", "sign", dossier, "-o", out, "--p12", pki.staff.p12)
    assert outcome.code == 0, outcome.text
    assert not nowhere.exists()  # a mistyped home is not created
    outcome = run_main(capsys, nowhere, "pdf", "sign", dossier, "-o", dossier.with_name("t.pdf"),
                       "--p12", pki.staff.p12, "--level", "B-T")
    assert_refused(outcome, 1, "B-T needs this home's CA")
    outcome = run_main(capsys, nowhere, "pdf", "verify", out)
    assert_refused(outcome, 2, "no trust anchor")


def test_verify_with_an_explicit_trust_anchor_outside_the_home(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path, tmp_path: Path) -> None:
    out = dossier.with_name("ky.pdf")
    sign_ok(capsys, pki, dossier, out, "--level", "B-LT")
    outcome = run_main(capsys, tmp_path / "no-home", "pdf", "verify", out, "--trust", pki.root_pem)
    assert outcome.code == 0, outcome.text
    assert "Chữ ký hợp lệ" in outcome.out


def test_verify_in_a_home_with_a_damaged_crl_refuses_naming_the_file(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path, tmp_path: Path) -> None:
    out = dossier.with_name("signed.pdf")
    sign_ok(capsys, pki, dossier, out)
    home = tmp_path / "home"
    shutil.copytree(pki.home, home)
    damaged = home / "crl" / "staff.crl"
    damaged.write_bytes(damaged.read_bytes()[:40])  # truncated
    outcome = run_main(capsys, home, "pdf", "verify", out)
    assert_refused(outcome, 1, "staff.crl", "not a DER CRL", "kyso crl publish")


@pytest.mark.parametrize("style", ["official", "seal", "copy"])
def test_visible_stamp_of_each_style_verifies(capsys: pytest.CaptureFixture[str], pki: Pki,
                                              dossier: Path, style: str) -> None:
    src = dossier
    if style == "seal":  # the seal goes over an official's visible stamp
        src = dossier.with_name("official.pdf")
        sign_ok(capsys, pki, dossier, src, "--visible", "--style", "official")
        extra: tuple[str, ...] = ("--position", "over:official")
    else:
        extra = ()
    out = dossier.with_name(f"{style}-ky.pdf")
    signer = pki.seal if style in ("seal", "copy") else pki.staff
    before = src.read_bytes()
    result = sign_ok(capsys, pki, src, out, "--visible", "--style", style, *extra, signer=signer)
    assert result["field"] == style
    assert result["visible"] is True
    assert result["signer_serial"] == signer.serial
    assert result["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert src.read_bytes() == before

    outcome = run_main(capsys, pki.home, "pdf", "verify", out)
    assert outcome.code == 0, outcome.text
    assert "Chữ ký hợp lệ" in outcome.out
    code, report = verify_json(capsys, pki, out)
    assert code == 0
    assert report["indication"] == "TOTAL-PASSED", report["reasons"]
    assert style in signatures(report)

    fields = {f.name: f for f in signature_fields(PdfFileReader(io.BytesIO(out.read_bytes())))}
    box = fields[style].rect
    assert box is not None
    if style == "seal":
        official = fields["official"].rect
        assert official is not None
        # Decree 30: the seal overlaps about the left third of the official's stamp.
        third = official[0] + (official[2] - official[0]) / 3
        assert abs(box[2] - third) <= 1
        assert box[0] < official[0] < box[2]
        assert abs((box[1] + box[3]) / 2 - (official[1] + official[3]) / 2) <= 1
    if style == "copy":  # top-right of page 1
        assert box[2] > 595 / 2
        assert box[3] > 842 / 2


def test_verify_english_text(capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path) -> None:
    out = dossier.with_name("ky.pdf")
    sign_ok(capsys, pki, dossier, out, "--visible")
    outcome = run_main(capsys, pki.home, "pdf", "verify", out, "--lang", "en")
    assert outcome.code == 0, outcome.text
    assert "Signature is valid" in outcome.out
    assert "Verdict: TOTAL-PASSED" in outcome.out
    assert "Chữ ký hợp lệ" not in outcome.out


@pytest.mark.parametrize("where", ["global", "leaf"])
def test_verify_json_is_the_documented_report(capsys: pytest.CaptureFixture[str], pki: Pki,
                                              dossier: Path, where: str) -> None:
    out = dossier.with_name("ky.pdf")
    sign_ok(capsys, pki, dossier, out, "--level", "B-LT", "--field", "official")
    args: tuple[str, ...] = (("--format", "json", "pdf", "verify", str(out)) if where == "global"
                             else ("pdf", "verify", str(out), "--format", "json"))
    outcome = run_main(capsys, pki.home, *args)
    assert outcome.code == 0, outcome.text
    report = outcome.json()
    assert isinstance(report, dict)  # one file: one object, not a list
    assert set(report) == FILE_KEYS
    assert report["schema"] == "kyso-pdf-verify/1"
    assert report["file"] == str(out)
    assert report["indication"] == "TOTAL-PASSED"
    assert report["sub_indication"] is None
    assert report["error"] is None
    assert report["reasons"] == []
    assert report["size"] == out.stat().st_size
    assert report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report["validation_time"].endswith("+07:00")
    (sig,) = report["signatures"]
    assert set(sig) == SIGNATURE_KEYS
    assert set(sig["signer"]) == SIGNER_KEYS
    assert sig["field"] == "official"
    assert sig["kind"] == "signature"
    assert sig["indication"] == "TOTAL-PASSED"
    assert sig["signer"]["common_name"] == STAFF["name"]
    assert sig["signer"]["uid"] == "CCCD:019******345"
    assert STAFF["id"] not in outcome.out  # personal ID numbers are masked everywhere
    assert sig["claimed_signing_time"].endswith("+07:00")
    assert set(sig["timestamp"]) == {"time", "tsa", "valid", "trusted"}
    assert sig["timestamp"]["valid"] is True
    assert sig["timestamp"]["trusted"] is True
    assert sig["revocation"]["status"] == "good"
    assert "dss" in sig["revocation"]["source"].split(",")
    assert sig["pades_level"] == "B-LT"
    assert sig["certified"] is False
    checks = {c["name"]: c["ok"] for c in sig["checks"]}
    assert {"byte-range", "integrity", "signature", "coverage", "modifications", "key-usage",
            "ades"} <= set(checks)
    assert all(ok in (True, None) for ok in checks.values()), sig["checks"]


# --- the dossier recipe -------------------------------------------------------------------

@pytest.fixture
def sealed_dossier(capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path) -> Path:
    """Citizen (invisible) → official (visible) → agency seal over the official's stamp,
    certifying and locking every field (README's recipe)."""
    citizen = dossier.with_name("1-citizen.pdf")
    official = dossier.with_name("2-official.pdf")
    sealed = dossier.with_name("3-sealed.pdf")
    sign_ok(capsys, pki, dossier, citizen, "--field", "citizen", signer=pki.citizen)
    sign_ok(capsys, pki, citizen, official, "--visible", "--style", "official",
            "--field", "official", "--level", "B-T")
    result = sign_ok(capsys, pki, official, sealed, "--visible", "--style", "seal",
                     "--position", "over:official", "--certify", "--lock-fields", "*",
                     "--level", "B-LTA", signer=pki.seal)
    assert result["field"] == "seal"
    assert result["certified"] is True
    return sealed


def test_dossier_recipe_verifies_with_a_final_lock(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                   sealed_dossier: Path) -> None:
    code, report = verify_json(capsys, pki, sealed_dossier)
    assert code == 0, report["reasons"]
    assert report["indication"] == "TOTAL-PASSED"
    sigs = signatures(report)
    assert list(sigs) == ["citizen", "official", "seal"]
    assert all(s["indication"] == "TOTAL-PASSED" for s in sigs.values())
    assert sigs["citizen"]["signer"]["serial"] == pki.citizen.serial
    assert sigs["official"]["signer"]["serial"] == pki.staff.serial
    assert sigs["seal"]["signer"]["serial"] == pki.seal.serial
    assert sigs["seal"]["fieldmdp"] is not None
    assert sigs["seal"]["fieldmdp"].startswith("ALL")
    assert sigs["seal"]["pades_level"] == "B-LTA"
    # the earlier signatures saw only later signatures filling their fields
    assert sigs["citizen"]["modification_level"] == "FORM_FILLING"
    assert sigs["official"]["modification_level"] == "FORM_FILLING"
    assert sigs["seal"]["modification_level"] in ("NONE", "LTA_UPDATES")
    (ts,) = signatures(report, "document-timestamp").values()
    assert ts["indication"] == "TOTAL-PASSED"

    text = run_main(capsys, pki.home, "pdf", "verify", sealed_dossier)
    assert text.code == 0
    assert text.out.count("Chữ ký hợp lệ") == 3


def test_signature_after_the_final_lock_is_refused(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                   sealed_dossier: Path) -> None:
    """A further signature after the locking seal could never verify: kyso pdf sign refuses it,
    naming the seal's field, and writes nothing."""
    late = sealed_dossier.with_name("4-late.pdf")
    before = files_in(sealed_dossier.parent)
    outcome = sign(capsys, pki, sealed_dossier, late, "--field", "late")
    assert_refused(outcome, 1, "field 'seal'", "locks every field")
    assert files_in(sealed_dossier.parent) == before


def test_a_certification_allowing_forms_accepts_a_later_invisible_signature(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path) -> None:
    """DocMDP P=2 (--certify, default --allow forms) lets the next signer add a signature in
    a new field, invisible: a new widget would be more than form filling (refused)."""
    certified = dossier.with_name("1-certified.pdf")
    later = dossier.with_name("2-later.pdf")
    sign_ok(capsys, pki, dossier, certified, "--field", "seal", "--certify", signer=pki.seal)
    refused = sign(capsys, pki, certified, later, "--visible")
    assert_refused(refused, 1, "field 'seal'", "no new visible signature field")
    assert not later.exists()
    result = sign_ok(capsys, pki, certified, later)
    code, report = verify_json(capsys, pki, later)
    assert code == 0, report["reasons"]
    assert list(signatures(report)) == ["seal", result["field"]]


def test_a_later_signature_after_a_b_lta_signature_verifies(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path) -> None:
    citizen = dossier.with_name("1-citizen.pdf")
    official = dossier.with_name("2-official.pdf")
    sign_ok(capsys, pki, dossier, citizen, "--field", "citizen", "--level", "B-LTA",
            signer=pki.citizen)
    sign_ok(capsys, pki, citizen, official, "--field", "official", "--visible")
    code, report = verify_json(capsys, pki, official)
    assert report["reasons"] == []
    assert code == 0


def add_annotation(data: bytes) -> bytes:
    """An incremental update adding a text annotation to page 1 (an "evil annotation")."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    annot = writer.add_object(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Annot"),
        generic.NameObject("/Subtype"): generic.NameObject("/FreeText"),
        generic.NameObject("/Rect"): generic.ArrayObject(
            [generic.FloatObject(v) for v in (72, 600, 400, 640)]),
        generic.NameObject("/Contents"): generic.TextStringObject("Từ chối cấp bản sao"),
        generic.NameObject("/DA"): generic.pdf_string("/Helv 12 Tf 0 g"),
    }))
    annots = page.get("/Annots")
    if annots is None:
        page[generic.NameObject("/Annots")] = generic.ArrayObject([annot])
    else:
        annots.get_object().append(annot)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_annotation_after_the_final_lock_is_caught(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                   sealed_dossier: Path) -> None:
    annotated = sealed_dossier.with_name("4-annotated.pdf")
    annotated.write_bytes(add_annotation(sealed_dossier.read_bytes()))
    code, report = verify_json(capsys, pki, annotated)
    assert code == 1
    assert report["indication"] == "TOTAL-FAILED"
    seal = signatures(report)["seal"]
    assert seal["indication"] == "TOTAL-FAILED"
    assert any(r.startswith("modifications") for r in seal["reasons"]), seal["reasons"]


# --- refusals -----------------------------------------------------------------------------

def _p12_without_key(pki: Pki, folder: Path) -> Path:
    cert = x509.load_pem_x509_certificate(pki.staff.certificate.read_bytes())
    path = folder / "cert-only.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"cert only", None, cert, None, BestAvailableEncryption(P12_PASSPHRASE.encode())))
    return path


def _encrypted(src: Path, dst: Path) -> Path:
    if shutil.which("qpdf") is None:
        pytest.skip("qpdf is not installed (apt-get install qpdf)")
    proc = subprocess.run(["qpdf", "--encrypt", PDF_USER_PASSWORD, PDF_OWNER_PASSWORD, "256",
                           "--", str(src), str(dst)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return dst


@dataclass(frozen=True)
class Bad:
    """One refused call: how to prepare it and what kyso must answer."""

    code: int
    needles: tuple[str, ...]


REFUSALS: dict[str, Bad] = {
    "not-a-pdf": Bad(1, ("not a PDF",)),
    "empty": Bad(1, ("empty",)),
    "truncated": Bad(1, ("truncated",)),
    "truncated-with-eof": Bad(1, ("damaged",)),
    "missing-input": Bad(1, ("does not exist",)),
    "directory-input": Bad(2, ("directory",)),
    "wrong-p12-passphrase": Bad(1, ("PKCS#12", "wrong passphrase")),
    "p12-without-key": Bad(1, ("no private key",)),
    "not-a-p12": Bad(1, ("not a PKCS#12",)),
    "missing-p12": Bad(1, ("does not exist",)),
    "field-already-signed": Bad(1, ("'official' is already signed",)),
    "box-outside-page": Bad(1, ("outside the page",)),
    "page-out-of-range": Bad(1, ("--page 5", "2 page")),
    "over-unknown-field": Bad(1, ("over:nobody", "no visible field")),
    "unknown-lock-field": Bad(1, ("--lock-fields", "nobody")),
    "missing-image": Bad(1, ("image not found", "khong-co.png")),
    "not-an-image": Bad(1, ("not a readable PNG/JPEG", "chu-ky.png")),
    "box-not-numbers": Bad(2, ("--box", "four numbers", "1,2,x")),
    "box-three-numbers": Bad(2, ("--box", "four numbers", "1,2,3")),
    "box-reversed": Bad(2, ("--box", "x1 < x2")),
    "box-infinite": Bad(2, ("--box", "finite")),
    "certified-without-changes": Bad(1, ("field 'seal'", "P=1")),
    "after-the-final-lock": Bad(1, ("field 'seal'", "locks every field")),
    "after-the-final-lock-allowing-nothing": Bad(1, ("field 'seal'", "P=1")),
    "encrypted-without-password": Bad(1, ("password-protected",)),
    "wrong-pdf-password": Bad(1, ("wrong PDF password",)),
    "output-exists": Bad(2, ("already exists",)),
    "output-is-input": Bad(2, ("new file",)),
    "output-is-input-other-spelling": Bad(2, ("new file",)),
    "output-dir-missing": Bad(2, ("does not exist",)),
    "box-and-position": Bad(2, ("--box or --position",)),
    "box-without-visible": Bad(2, ("need --visible",)),
    "unknown-level": Bad(2, ("--level",)),
}


def _refusal_args(case: str, pki: Pki, dossier: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, list[str | Path]]:
    """(input, output, extra arguments) of one refused call; files it needs are made here."""
    work = dossier.parent
    src, dst = dossier, work / "out.pdf"
    extra: list[str | Path] = ["--p12", pki.staff.p12]
    data = dossier.read_bytes()
    match case:
        case "not-a-pdf":
            src = work / "thu.pdf"
            src.write_bytes(b"Kinh gui UBND xa Phu Dinh, day khong phai PDF.\n")
        case "empty":
            src = work / "rong.pdf"
            src.write_bytes(b"")
        case "truncated":
            src = work / "cut.pdf"
            src.write_bytes(data[: len(data) // 2])
        case "truncated-with-eof":
            src = work / "cut-eof.pdf"
            src.write_bytes(data[: len(data) // 2] + b"\n%%EOF\n")
        case "missing-input":
            src = work / "khong-co.pdf"
        case "directory-input":
            src = work / "thu-muc"
            src.mkdir()
        case "wrong-p12-passphrase":
            monkeypatch.setenv("KYSO_P12_PASSPHRASE", "not-the-p12-passphrase")
        case "p12-without-key":
            extra = ["--p12", _p12_without_key(pki, work.parent)]
        case "not-a-p12":
            bogus = work.parent / "bogus.p12"
            bogus.write_bytes(b"\x30\x82\x00\x10 not a pkcs12")
            extra = ["--p12", bogus]
        case "missing-p12":
            extra = ["--p12", work.parent / "khong-co.p12"]
        case "field-already-signed":
            src = work.parent / "signed.pdf"
            sign_ok(capsys, pki, dossier, src, "--field", "official")
            extra += ["--field", "official"]
        case "box-outside-page":
            extra += ["--visible", "--box", "500,800,700,900"]
        case "page-out-of-range":
            extra += ["--visible", "--page", "5"]
        case "over-unknown-field":
            extra += ["--visible", "--style", "seal", "--position", "over:nobody"]
        case "unknown-lock-field":
            extra += ["--lock-fields", "nobody"]
        case "missing-image":
            extra += ["--visible", "--image", work.parent / "khong-co.png"]
        case "not-an-image":
            fake = work.parent / "chu-ky.png"
            fake.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
            extra += ["--visible", "--image", fake]
        case "box-not-numbers":
            extra += ["--visible", "--box", "1,2,x"]
        case "box-three-numbers":
            extra += ["--visible", "--box", "1,2,3"]
        case "box-reversed":
            extra += ["--visible", "--box", "5,5,1,1"]
        case "box-infinite":
            extra += ["--visible", "--box", "0,0,inf,inf"]
        case "certified-without-changes":
            src = work.parent / "certified.pdf"
            sign_ok(capsys, pki, dossier, src, "--field", "seal", "--certify", "--allow", "none",
                    signer=pki.seal)
        case "after-the-final-lock" | "after-the-final-lock-allowing-nothing":
            official, src = work.parent / "official.pdf", work.parent / "sealed.pdf"
            sign_ok(capsys, pki, dossier, official, "--field", "official")
            allow = "none" if case.endswith("nothing") else "forms"
            sign_ok(capsys, pki, official, src, "--field", "seal", "--certify", "--allow", allow,
                    signer=pki.seal)
            extra += ["--field", "late"]
        case "encrypted-without-password":
            src = _encrypted(dossier, work.parent / "khoa.pdf")
        case "wrong-pdf-password":
            src = _encrypted(dossier, work.parent / "khoa.pdf")
            monkeypatch.setenv("KYSO_PDF_PASSWORD", "sai-mat-khau")
        case "output-exists":
            dst = work / "da-co.pdf"
            dst.write_bytes(b"%PDF-1.7 someone else's file\n%%EOF\n")
        case "output-is-input":
            dst = dossier
        case "output-is-input-other-spelling":
            dst = work / "." / ".." / work.name / dossier.name
        case "output-dir-missing":
            dst = work / "khong-co" / "out.pdf"
        case "box-and-position":
            extra += ["--visible", "--box", "36,36,200,100", "--position", "top-left"]
        case "box-without-visible":
            extra += ["--box", "36,36,200,100"]
        case "unknown-level":
            extra += ["--level", "B-XL"]
        case _:
            raise AssertionError(case)
    return src, dst, extra


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_sign_writes_nothing_and_says_why(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path,
        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    src, dst, extra = _refusal_args(case, pki, dossier, monkeypatch, capsys)
    work = dossier.parent
    before = files_in(work.parent)
    input_bytes = src.read_bytes() if src.is_file() else None
    outcome = run_main(capsys, pki.home, "pdf", "sign", src, "-o", dst, *extra)
    bad = REFUSALS[case]
    assert_refused(outcome, bad.code, *bad.needles)
    assert "Traceback" not in outcome.out
    assert "object at 0x" not in outcome.text  # no Python repr in a message
    assert P12_PASSPHRASE not in outcome.text
    assert files_in(work.parent) == before  # no output, no temporary file, input unchanged
    if input_bytes is not None:
        assert src.read_bytes() == input_bytes


# --- password-protected input -------------------------------------------------------------

def _valid_with_pyhanko(data: bytes, password: str, root: Path) -> list[str]:
    """Fields whose signature pyHanko (library) judges intact, valid and trusted."""
    reader = PdfFileReader(io.BytesIO(data))
    reader.decrypt(password.encode())
    anchor = x509.load_pem_x509_certificate(root.read_bytes())
    roots = [asn1_x509.Certificate.load(anchor.public_bytes(serialization.Encoding.DER))]
    fields = []
    for emb in reader.embedded_regular_signatures:
        status = validate_pdf_signature(emb, ValidationContext(
            trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail"))
        if status.intact and status.valid and status.trusted:
            fields.append(str(emb.field_name))
    return fields


@pytest.mark.parametrize("source", ["env-user-password", "file-owner-password"])
def test_password_protected_input_is_signed_with_its_password(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> None:
    locked = _encrypted(dossier, dossier.with_name("khoa.pdf"))
    before = locked.read_bytes()
    out = dossier.with_name("khoa-ky.pdf")
    extra: tuple[str | Path, ...] = ()
    if source == "env-user-password":
        monkeypatch.setenv("KYSO_PDF_PASSWORD", PDF_USER_PASSWORD)
    else:
        password_file = tmp_path / "pdf.pass"
        password_file.write_text(PDF_OWNER_PASSWORD + "\n", encoding="utf-8")
        extra = ("--pdf-password-file", password_file)
    result = sign_ok(capsys, pki, locked, out, "--visible", "--level", "B-LT", *extra)
    assert locked.read_bytes() == before
    data = out.read_bytes()
    assert data.startswith(before)
    assert PdfFileReader(io.BytesIO(data)).encrypted  # still protected
    assert _valid_with_pyhanko(data, PDF_USER_PASSWORD, pki.root_pem) == [result["field"]]
    for secret in (PDF_USER_PASSWORD, PDF_OWNER_PASSWORD):
        assert secret not in audit_text(pki.home)


def test_verify_accepts_a_signed_password_protected_pdf(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    locked = _encrypted(dossier, dossier.with_name("khoa.pdf"))
    monkeypatch.setenv("KYSO_PDF_PASSWORD", PDF_USER_PASSWORD)
    out = dossier.with_name("khoa-ky.pdf")
    sign_ok(capsys, pki, locked, out)
    outcome = run_main(capsys, pki.home, "pdf", "verify", out)
    assert outcome.code == 0, outcome.text
    assert "Chữ ký hợp lệ" in outcome.out


def test_verify_batch_of_password_protected_pdfs_takes_the_password_file(
        capsys: pytest.CaptureFixture[str], pki: Pki, dossier: Path, tmp_path: Path) -> None:
    """``pdf verify`` has the password sources of ``pdf sign`` (--pdf-password-file here, and
    $KYSO_PDF_PASSWORD), also in the worker processes of a batch."""
    password_file = tmp_path / "pdf.pass"
    password_file.write_text(PDF_OWNER_PASSWORD + "\n", encoding="utf-8")
    locked = _encrypted(dossier, dossier.with_name("khoa.pdf"))
    folder = dossier.parent / "khoa"
    folder.mkdir()
    for name in ("a.pdf", "b.pdf"):
        sign_ok(capsys, pki, locked, folder / name, "--pdf-password-file", password_file)
    outcome = run_main(capsys, pki.home, "pdf", "verify", "--batch", folder, "--jobs", "2",
                       "--jsonl", "--pdf-password-file", password_file)
    assert outcome.code == 0, outcome.text
    reports = [json.loads(line) for line in outcome.out.splitlines()]
    assert [Path(r["file"]).name for r in reports] == ["a.pdf", "b.pdf"]
    assert {r["indication"] for r in reports} == {"TOTAL-PASSED"}
    assert PDF_OWNER_PASSWORD not in outcome.text
    assert PDF_OWNER_PASSWORD not in audit_text(pki.home)
    without = run_main(capsys, pki.home, "--format", "json", "pdf", "verify", folder / "a.pdf")
    assert without.code == 1, without.text
    assert "password" in " ".join(without.json()["reasons"])


# --- the signer's certificate status ------------------------------------------------------

@pytest.mark.parametrize(("command", "needle"), [("revoke", "revoked"), ("hold", "on hold")])
def test_revoked_or_held_signer_cannot_sign(capsys: pytest.CaptureFixture[str], pki: Pki,
                                            dossier: Path, command: str, needle: str) -> None:
    signer = _issue(dict(SECRET_ENV), pki.home, STAFF_ARGS, dossier.parent.parent / f"{command}.p12")
    ok = dossier.with_name("before.pdf")
    sign_ok(capsys, pki, dossier, ok, signer=signer)
    extra = ("--reason", "keyCompromise") if command == "revoke" else ()
    done = run_main(capsys, pki.home, "cert", command, signer.serial, *extra)
    assert done.code == 0, done.text

    before = files_in(dossier.parent)
    for level in ("B-B", "B-LTA"):
        outcome = sign(capsys, pki, dossier, dossier.with_name(f"after-{level}.pdf"),
                       "--level", level, signer=signer)
        assert_refused(outcome, 1, needle)
    assert files_in(dossier.parent) == before
    failures = [e for e in read_events(pki.home / "audit")
                if e["action"] == "DOCUMENT_SIGN" and e["outcome"] == "failure"
                and e["object"] == signer.serial]
    assert len(failures) == 2
    assert all(needle in e["details"]["reason"] for e in failures), failures


# --- sign-batch ---------------------------------------------------------------------------

def test_sign_batch_signs_every_pdf_and_a_garbage_file_fails_alone(
        capsys: pytest.CaptureFixture[str], pki: Pki, env: Path) -> None:
    inbox, outbox = env / "hoso", env / "hoso-ky"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"don-{i}.pdf").write_bytes(sample_pdf(pages=1 + i, title=f"Don so {i}"))
    (inbox / "hong.pdf").write_bytes(b"PK\x03\x04 a zip file named .pdf")
    (inbox / "ghi-chu.txt").write_text("not a pdf, not considered", encoding="utf-8")
    before = files_in(inbox)
    outcome = run_main(capsys, pki.home, "pdf", "sign-batch", inbox, "-o", outbox,
                       "--p12", pki.staff.p12, "--level", "B-T")
    assert outcome.code == 1, outcome.text
    assert "Traceback" not in outcome.text
    assert "signed 3 of 4" in outcome.out
    assert "hong.pdf" in outcome.err
    assert "not a PDF" in outcome.err
    assert sorted(p.name for p in outbox.iterdir()) == ["don-0.pdf", "don-1.pdf", "don-2.pdf"]
    assert files_in(inbox) == before

    verified = run_main(capsys, pki.home, "--format", "json", "pdf", "verify", "--batch", outbox,
                        "--jobs", "1")
    assert verified.code == 0, verified.text
    reports = verified.json()
    assert [Path(r["file"]).name for r in reports] == ["don-0.pdf", "don-1.pdf", "don-2.pdf"]
    assert all(r["signatures"][0]["pades_level"] == "B-T" for r in reports)


def test_sign_batch_json_lists_signed_and_failed(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                 env: Path) -> None:
    inbox, outbox = env / "hoso", env / "hoso-ky"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(sample_pdf(pages=1))
    (inbox / "b.pdf").write_bytes(b"%PDF-1.7\n1 0 obj")
    outcome = run_main(capsys, pki.home, "--format", "json", "pdf", "sign-batch", inbox, "-o",
                       outbox, "--p12", pki.staff.p12)
    assert outcome.code == 1
    data = outcome.json()
    assert [Path(r["input"]).name for r in data["signed"]] == ["a.pdf"]
    assert [Path(r["input"]).name for r in data["failed"]] == ["b.pdf"]
    assert "truncated" in data["failed"][0]["error"]
    assert data["signed"][0]["signer_serial"] == pki.staff.serial


def test_sign_batch_refuses_to_overwrite_and_an_empty_folder(
        capsys: pytest.CaptureFixture[str], pki: Pki, env: Path) -> None:
    inbox, outbox = env / "hoso", env / "hoso-ky"
    inbox.mkdir()
    outcome = run_main(capsys, pki.home, "pdf", "sign-batch", inbox, "-o", outbox, "--p12",
                       pki.staff.p12)
    assert_refused(outcome, 2, "no *.pdf")
    (inbox / "a.pdf").write_bytes(sample_pdf(pages=1))
    (inbox / "b.pdf").write_bytes(sample_pdf(pages=1))
    outbox.mkdir()
    (outbox / "b.pdf").write_bytes(b"already here")
    outcome = run_main(capsys, pki.home, "pdf", "sign-batch", inbox, "-o", outbox, "--p12",
                       pki.staff.p12)
    assert_refused(outcome, 2, "already exists")
    assert files_in(outbox) == {"b.pdf": hashlib.sha256(b"already here").hexdigest()}


# --- verify: exit codes and batches -------------------------------------------------------

@pytest.fixture
def signed_set(capsys: pytest.CaptureFixture[str], pki: Pki, env: Path) -> Path:
    """A folder of three signed dossiers."""
    folder = env / "da-ky"
    folder.mkdir()
    for i in range(3):
        src = env / f"don-{i}.pdf"
        src.write_bytes(sample_pdf(pages=2, title=f"Don so {i}"))
        sign_ok(capsys, pki, src, folder / src.name, "--level", "B-T")
    return folder


def test_verify_exit_code_is_1_when_any_file_fails(capsys: pytest.CaptureFixture[str], pki: Pki,
                                                   signed_set: Path) -> None:
    good = sorted(signed_set.glob("*.pdf"))
    outcome = run_main(capsys, pki.home, "pdf", "verify", *good)
    assert outcome.code == 0, outcome.text
    assert outcome.out.count("Chữ ký hợp lệ") == 3

    tampered = signed_set / "sua.pdf"
    tampered.write_bytes(tamper(good[1].read_bytes()))
    code, reports = verify_json(capsys, pki, good[0], tampered, good[2])
    assert code == 1
    assert [r["indication"] for r in reports] == ["TOTAL-PASSED", "TOTAL-FAILED", "TOTAL-PASSED"]
    assert reports[1]["sub_indication"] == "HASH_FAILURE"
    text = run_main(capsys, pki.home, "pdf", "verify", good[0], tampered)
    assert text.code == 1
    assert "Chữ ký hợp lệ" in text.out
    assert "TOTAL-FAILED" in text.out


@pytest.mark.parametrize(("args", "needle"), [
    ((), "at least one FILE"),
    (("--batch", "EMPTY"), "no *.pdf"),
    (("--batch", "SET", "FILE"), "not both"),
    (("--jobs", "0", "FILE"), "--jobs"),
])
def test_verify_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], pki: Pki,
                                    signed_set: Path, env: Path, args: tuple[str, ...],
                                    needle: str) -> None:
    (env / "trong").mkdir()
    names = {"EMPTY": str(env / "trong"), "SET": str(signed_set),
             "FILE": str(next(signed_set.glob("*.pdf")))}
    outcome = run_main(capsys, pki.home, "pdf", "verify", *(names.get(a, a) for a in args))
    assert_refused(outcome, 2, needle)


@pytest.mark.parametrize("content", [b"", b"garbage", b"%PDF-1.7\n%%EOF\n"])
def test_verify_of_a_non_pdf_or_unsigned_file_exits_1(capsys: pytest.CaptureFixture[str],
                                                      pki: Pki, env: Path,
                                                      content: bytes) -> None:
    path = env / "x.pdf"
    path.write_bytes(content)
    code, report = verify_json(capsys, pki, path)
    assert code == 1
    assert report["indication"] == "TOTAL-FAILED"
    assert report["reasons"]


def test_verify_of_an_unsigned_pdf_exits_1(capsys: pytest.CaptureFixture[str], pki: Pki,
                                           dossier: Path) -> None:
    code, report = verify_json(capsys, pki, dossier)
    assert code == 1
    assert report["sub_indication"] == "NO_SIGNATURE_FOUND"
    text = run_main(capsys, pki.home, "pdf", "verify", dossier)
    assert "Tệp không có chữ ký số" in text.out


def test_verify_batch_jsonl_one_object_per_file_and_garbage_fails_alone(
        capsys: pytest.CaptureFixture[str], pki: Pki, signed_set: Path) -> None:
    nested = signed_set / "phu-luc"
    nested.mkdir()
    (nested / "hong.pdf").write_bytes(b"\x00" * 64)
    shutil.copy(next(signed_set.glob("*.pdf")), nested / "ban-sao.pdf")
    outcome = run_main(capsys, pki.home, "pdf", "verify", "--batch", signed_set, "--jobs", "2",
                       "--jsonl")
    assert outcome.code == 1, outcome.text
    assert "Traceback" not in outcome.text
    lines = outcome.out.splitlines()
    reports = [json.loads(line) for line in lines]
    expected = sorted(str(p) for p in signed_set.rglob("*.pdf"))
    assert [r["file"] for r in reports] == expected
    assert all(set(r) == FILE_KEYS for r in reports)
    verdicts = {Path(r["file"]).name: r["indication"] for r in reports}
    assert verdicts.pop("hong.pdf") == "TOTAL-FAILED"
    assert set(verdicts.values()) == {"TOTAL-PASSED"}
    assert len(verdicts) == 4


def test_verify_batch_passes_with_exit_0(capsys: pytest.CaptureFixture[str], pki: Pki,
                                         signed_set: Path) -> None:
    outcome = run_main(capsys, pki.home, "pdf", "verify", "--batch", signed_set, "--jobs", "2",
                       "--jsonl")
    assert outcome.code == 0, outcome.text
    assert len(outcome.out.splitlines()) == 3


# --- audit --------------------------------------------------------------------------------

def audit_text(home: Path) -> str:
    segments = sorted((home / "audit" / "segments").glob("*.jsonl"))
    return "".join(p.read_text(encoding="utf-8") for p in segments)


def test_signing_is_audited_without_secrets(capsys: pytest.CaptureFixture[str], pki: Pki,
                                            dossier: Path) -> None:
    out = dossier.with_name("ky.pdf")
    result = sign_ok(capsys, pki, dossier, out, "--level", "B-LTA", "--visible",
                     "--field", "official")
    events = [e for e in read_events(pki.home / "audit") if e["action"] == "DOCUMENT_SIGN"
              and e["outcome"] == "success" and e["object"] == result["sha256"]]
    assert len(events) == 1
    (event,) = events
    assert event["layer"] == "signing"
    details = event["details"]
    assert details["signer_serial"] == pki.staff.serial
    assert details["input_sha256"] == hashlib.sha256(dossier.read_bytes()).hexdigest()
    assert details["field"] == "official"
    assert details["level"] == "B-LTA"
    assert details["visible"] is True
    assert event["object"] == hashlib.sha256(out.read_bytes()).hexdigest()

    run_main(capsys, pki.home, "pdf", "verify", out)
    verifications = [e for e in read_events(pki.home / "audit")
                     if e["action"] == "DOCUMENT_VERIFY"]
    assert verifications
    assert verifications[-1]["outcome"] == "success"

    raw = audit_text(pki.home)
    for secret in (P12_PASSPHRASE, PASSPHRASE, STAFF["id"]):
        assert secret not in raw
    assert os.environ["KYSO_P12_PASSPHRASE"] not in raw
