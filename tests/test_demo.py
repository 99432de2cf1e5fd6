"""``kyso demo``: the whole dossier scenario, run once in-process on a frozen clock (the suite's
fast KDF settings), and once through the installed ``kyso`` command from a clean environment
(production settings), whose artifacts are then judged by separate ``kyso`` processes and by
``openssl``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from conftest import FAST_KDF, T0
from kyso.audit.signer import verify_with_store
from kyso.authn.chip import chip_from_json
from kyso.authn.csca import load_csca_certificate, load_csca_crl
from kyso.authn.passive_auth import check_passive_auth
from kyso.authn.registry import Level, Registry
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.demo import DEMO_ENTRIES, MARKER, DemoResult, prepare_home, run_demo
from kyso.errors import CAExistsError, ConfigError, KysoError
from kyso.pki.pkcs12 import load_pkcs12
from kyso.signing.pdfio import signature_fields
from kyso.signing.setup import build_verifier
from kyso.signing.verdict import Indication

KYSO = Path(sys.executable).with_name("kyso")
RAW_IDS = ("033301000123", "019099012345")  # the citizen's and the official's ID numbers
STEPS = ("1. Chứng thư số", "2. Định danh điện tử mức 2", "3. Đăng nhập", "4. Ký đơn",
         "5. Phê duyệt", "6. Đóng dấu", "7. Kiểm tra", "8. Nhật ký kiểm toán", "9. Cấp độ 3")


@dataclass(frozen=True)
class Demo:
    result: DemoResult
    story: list[str]

    @property
    def home(self) -> Path:
        return self.result.home

    def secrets(self) -> dict[str, str]:
        return read_secrets(self.home)

    def events(self) -> list[dict[str, Any]]:
        from kyso.audit import read_events

        return read_events(self.home / "audit")


def read_secrets(home: Path) -> dict[str, str]:
    lines = (home / "demo-secrets.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One demo for the module's tests (about 4 s): a frozen clock at T0, the fast KDF of the
    suite set in the environment, as the CLI would read it."""
    story: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAST_KDF.items():
            mp.setenv(name, value)
        mp.delenv("KYSO_DATABASE_URL", raising=False)
        result = run_demo(tmp_path_factory.mktemp("demo") / "home", FrozenClock(T0), story.append)
    return Demo(result, story)


# --- the story and the result --------------------------------------------------------------------

def test_the_story_tells_every_step_and_ends_with_the_timings(demo: Demo) -> None:
    text = "\n".join(demo.story)
    headers = [line for line in demo.story if line[:1].isdigit()]
    assert [h[:len(s)] for h, s in zip(headers, STEPS, strict=True)] == list(STEPS)
    for expected in ("xác thực thụ động (passive authentication): TOTAL-PASSED",
                     "acr urn:vn:vneid:loa:2 (level 2), amr pwd otp mfa",
                     "prompt=login, max_age=0, acr_values=urn:vn:vneid:loa:2",
                     "cổng ký số (the signing gateway) enrolled her signing credential "
                     f"{demo.result.citizen_credential}",
                     "(no PKCS#12: the key never leaves the gateway)",
                     f"credentials/authorize (her step-up token, credential "
                     f"{demo.result.citizen_credential}, the sha256 hash of the signed "
                     "attributes) → SAD bound to the hash",
                     "single use, expires in 300 s",
                     "signatures/signHash with that SAD → an ECDSA secp256r1 signature by her "
                     "key inside the gateway",
                     "4-dong-dau.pdf: TOTAL-PASSED — citizen TOTAL-PASSED, official "
                     "TOTAL-PASSED, seal TOTAL-PASSED, DocTimeStamp TOTAL-PASSED",
                     "4-dong-dau-bi-sua.pdf (one byte of the page text changed after signing): "
                     "TOTAL-FAILED", "kyso audit verify: PASS",
                     "Level 3 (current): 29 requirements", "Xong (done) in",
                     # the suite's fast settings, read from the environment, and said
                     "PBKDF2-SHA256 2000 iterations; passwords argon2id test-fast — weaker than "
                     "the production defaults"):
        assert expected in text
    assert str(demo.home / "demo-secrets.txt") in text


def test_the_result_names_the_artifacts_and_the_verdicts(demo: Demo) -> None:
    r = demo.result
    assert (r.final_verdict, r.tampered_verdict) == ("TOTAL-PASSED", "TOTAL-FAILED")
    assert (r.passive_auth, r.login_acr, r.step_up_acr) == (
        "TOTAL-PASSED", "urn:vn:vneid:loa:2", "urn:vn:vneid:loa:2")
    assert r.citizen == "033******123"
    assert [c.role for c in r.certificates] == ["staff", "seal", "citizen"]
    citizen = r.certificates[2]
    assert citizen.pkcs12 is None  # her key never leaves the gateway
    assert citizen.credential_id == r.citizen_credential
    assert r.citizen_credential.startswith("csc-")
    assert [name for name, _ in r.documents] == ["application", "signed-by-citizen", "approved",
                                                 "sealed"]
    for path in [r.trust_anchor, r.chip, r.final_pdf, r.tampered_pdf, r.checkpoint,
                 *(p for _, p in r.documents), *(c.certificate for c in r.certificates),
                 *(c.pkcs12 for c in r.certificates if c.pkcs12 is not None)]:
        assert path.is_file(), path
        assert path.is_relative_to(r.home), path
    assert r.audit_ok
    assert r.audit_entries > 30
    assert sum(n for _, n in r.policy_counts) == 29
    data = json.loads(json.dumps(r.to_dict()))
    assert data["final"] == {"file": str(r.final_pdf), "indication": "TOTAL-PASSED"}
    assert data["timings"]["total"] >= data["timings"]["1-ca"] > 0
    assert "secret" not in json.dumps(data["certificates"])
    assert data["citizen_credential"] == r.citizen_credential
    assert data["certificates"][2]["pkcs12"] is None
    assert data["certificates"][2]["credential_id"] == r.citizen_credential


# --- the artifacts, judged again ---------------------------------------------------------------------

def test_an_independent_verifier_passes_the_final_dossier_and_fails_the_changed_copy(
        demo: Demo) -> None:
    r = demo.result
    verifier = build_verifier(FrozenClock(T0), kyso=None, trust=[r.trust_anchor])
    good = verifier.verify_file(r.final_pdf)
    assert good.indication is Indication.TOTAL_PASSED, good.reasons
    kinds = {s.field: (s.kind, s.indication) for s in good.signatures}
    assert kinds == {"citizen": ("signature", Indication.TOTAL_PASSED),
                     "official": ("signature", Indication.TOTAL_PASSED),
                     "seal": ("signature", Indication.TOTAL_PASSED),
                     "DocTimeStamp": ("document-timestamp", Indication.TOTAL_PASSED)}
    seal = next(s for s in good.signatures if s.field == "seal")
    assert seal.pades_level == "B-LTA"
    assert seal.fieldmdp is not None
    assert seal.fieldmdp.startswith("ALL")
    final, changed = r.final_pdf.read_bytes(), r.tampered_pdf.read_bytes()
    assert len(final) == len(changed)
    assert sum(a != b for a, b in zip(final, changed, strict=True)) == 1
    bad = verifier.verify_file(r.tampered_pdf)
    assert bad.indication is Indication.TOTAL_FAILED


def test_the_official_and_the_seal_stamps_are_visible_on_the_last_page(demo: Demo) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(demo.result.final_pdf, "rb") as fh:
        fields = {f.name: f for f in signature_fields(PdfFileReader(fh))}
    assert fields["citizen"].rect is None  # invisible
    official, seal = fields["official"].rect, fields["seal"].rect
    assert official is not None
    assert seal is not None
    assert seal[0] < official[0] < seal[2]  # the seal overlaps the official's stamp (Decree 30)


def test_the_chip_passes_passive_authentication_and_the_citizen_is_level_2(demo: Demo) -> None:
    kyso = open_kyso(load_settings(home=demo.home, environ=FAST_KDF), clock=FrozenClock(T0))
    try:
        chip = chip_from_json(demo.result.chip.read_bytes())
        crl = load_csca_crl(kyso)
        assert crl is not None
        report = check_passive_auth(chip, csca=[load_csca_certificate(kyso)], crls=[crl],
                                    now=kyso.now())
        assert report.passed, report.failures
        identity = Registry(kyso.store, kyso.clock).get("033301000123")
        assert identity.level is Level.TWO
    finally:
        kyso.close()


def test_each_pkcs12_opens_with_its_own_passphrase_only_and_the_citizen_has_none(
        demo: Demo) -> None:
    secrets = demo.secrets()
    names = {"staff": "DEMO_STAFF_P12_PASSPHRASE", "seal": "DEMO_SEAL_P12_PASSPHRASE"}
    assert not any("CITIZEN_P12" in name for name in secrets)
    assert not [p for p in demo.home.rglob("*.p12") if p.name not in ("can-bo.p12", "con-dau.p12")]
    for cert in demo.result.certificates:
        if cert.role == "citizen":
            assert cert.pkcs12 is None
            continue
        assert cert.pkcs12 is not None
        assert cert.pkcs12.stat().st_mode & 0o777 == 0o600
        bundle = load_pkcs12(cert.pkcs12.read_bytes(), secrets[names[cert.role]])
        assert bundle.cert is not None
        assert f"{bundle.cert.certificate.serial_number:x}" == cert.serial
        other = next(v for k, v in names.items() if k != cert.role)
        with pytest.raises(KysoError, match="wrong passphrase"):
            load_pkcs12(cert.pkcs12.read_bytes(), secrets[other])


# --- the audit trail ------------------------------------------------------------------------------

def test_the_citizen_signs_only_after_a_second_fresh_login(demo: Demo) -> None:
    events = demo.events()
    actions = [e["action"] for e in events]
    logins = [i for i, a in enumerate(actions) if a == "LOGIN"]
    assert len(logins) == 2
    citizen_sign = next(i for i, e in enumerate(events) if e["action"] == "DOCUMENT_SIGN")
    assert logins[1] < citizen_sign
    # between the two logins: a code redeemed and the portal's token checks
    assert "CODE_TO_TOKEN" in actions[logins[0]:logins[1]]
    assert "CSC_CREDENTIAL_ENROL" in actions[logins[0]:logins[1]]  # after the first login
    assert actions[logins[1] - 1] == "LOGIN_PASSWORD"  # the step-up asked for the password
    signed = events[citizen_sign]
    assert signed["actor"] == events[logins[1]]["actor"]  # the citizen's pseudonym
    assert signed["details"]["acr"] == "urn:vn:vneid:loa:2"
    assert signed["details"]["field"] == "citizen"
    assert [e["details"]["field"] for e in events if e["action"] == "DOCUMENT_SIGN"] == [
        "citizen", "official", "seal"]
    verdicts = [e["outcome"] for e in events if e["action"] == "DOCUMENT_VERIFY"]
    assert verdicts == ["success", "failure"]


def citizen_signature(pdf: Path) -> tuple[bytes, bytes, x509.Certificate]:
    """The citizen signature of ``pdf``: its DER signed attributes (as signed: a SET), its
    signature value and its signer's certificate."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(pdf, "rb") as fh:
        sig = next(s for s in PdfFileReader(fh).embedded_regular_signatures
                   if s.field_name == "citizen")
        attrs = sig.signer_info["signed_attrs"].dump()
        value = sig.signer_info["signature"].native
        cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
    return b"\x31" + attrs[1:], value, cert  # [0] IMPLICIT in the CMS, a SET when signed


def test_the_citizens_signature_was_made_by_the_key_the_gateway_holds(demo: Demo) -> None:
    """The hash of the signed attributes in the final dossier is the one hash the gateway
    authorized and signed for her credential (CSC_AUTHORIZE, CSC_SIGN_HASH), with her step-up
    token, and the signature verifies with the certificate it enrolled for her."""
    r = demo.result
    attrs, value, cert = citizen_signature(r.final_pdf)
    digest = hashlib.sha256(attrs).hexdigest()
    events = demo.events()
    by_action = {e["action"]: e for e in events if e["action"].startswith("CSC_")}
    assert set(by_action) == {"CSC_CREDENTIAL_ENROL", "CSC_AUTHORIZE", "CSC_SIGN_HASH"}
    assert [e["action"] for e in events if e["action"].startswith("CSC_")] == [
        "CSC_CREDENTIAL_ENROL", "CSC_AUTHORIZE", "CSC_SIGN_HASH"]  # one of each
    enrol, authorize, sign = (by_action[a] for a in ("CSC_CREDENTIAL_ENROL", "CSC_AUTHORIZE",
                                                     "CSC_SIGN_HASH"))
    citizen = next(e for e in events if e["action"] == "LOGIN")["actor"]
    for event in (enrol, authorize, sign):
        assert event["outcome"] == "success"
        assert event["object"] == r.citizen_credential
        assert event["actor"] == citizen
    assert authorize["details"]["hashes"] == sign["details"]["hashes"] == [digest]
    assert authorize["details"]["expires_in"] == 300
    assert authorize["details"]["jti"] == sign["details"]["jti"] != enrol["details"]["jti"]
    serial = f"{cert.serial_number:x}"
    assert enrol["details"]["serial"] == sign["details"]["serial"] == serial
    assert r.certificates[2].serial == serial
    signed = next(e for e in events if e["action"] == "DOCUMENT_SIGN")
    assert signed["details"]["signed_digest"] == digest
    assert signed["details"]["cred_id"] == r.citizen_credential
    assert signed["details"]["signer_serial"] == serial
    # an independent check of the signature value over that digest, with her certificate
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(value, bytes.fromhex(digest), ec.ECDSA(Prehashed(hashes.SHA256())))
    enrolled = x509.load_pem_x509_certificate(r.certificates[2].certificate.read_bytes())
    assert enrolled == cert
    assert "Citizen CA" in enrolled.issuer.rfc4514_string()


def test_the_citizen_sets_her_password_and_enrols_her_app_as_herself(demo: Demo) -> None:
    events = demo.events()
    citizen = next(e for e in events if e["action"] == "LOGIN")["actor"]  # her pseudonym
    assert citizen.startswith("psn:")
    own = [(e["action"], e["details"].get("stage")) for e in events
           if e["action"] in ("UPDATE_PASSWORD", "UPDATE_CREDENTIAL")]
    assert own == [("UPDATE_PASSWORD", None), ("UPDATE_CREDENTIAL", "pending"),
                   ("UPDATE_CREDENTIAL", "active")]
    assert {e["actor"] for e in events
            if e["action"] in ("UPDATE_PASSWORD", "UPDATE_CREDENTIAL")} == {citizen}
    # the CA's acts stay the demo administrator's
    assert {e["actor"] for e in events if e["action"] == "CERT_CREATION"} == {"admin:kyso-demo"}


def test_the_audit_log_verifies_and_holds_no_secret(demo: Demo) -> None:
    kyso = open_kyso(load_settings(home=demo.home, environ=FAST_KDF), clock=FrozenClock(T0))
    try:
        report = verify_with_store(kyso)
    finally:
        kyso.close()
    assert report.ok, report.to_dict()
    assert report.size == demo.result.audit_entries + 1  # + the policy check after it
    text = "".join(p.read_text(encoding="utf-8")
                   for p in sorted((demo.home / "audit" / "segments").glob("*.jsonl")))
    for name, value in demo.secrets().items():
        assert value not in text, name
    for raw in RAW_IDS:
        assert raw not in text


def test_the_secrets_file_is_private_and_no_secret_is_printed(demo: Demo) -> None:
    path = demo.home / "demo-secrets.txt"
    assert path.stat().st_mode & 0o777 == 0o600
    secrets = demo.secrets()
    assert set(secrets) >= {"KYSO_CA_PASSPHRASE", "KYSO_TOKEN_KEY_PASSPHRASE",
                            "DEMO_CITIZEN_PASSWORD", "DEMO_CITIZEN_TOTP_SECRET"}
    story = "\n".join(demo.story)
    for name, value in secrets.items():
        assert value not in story, name
    for raw in RAW_IDS:
        assert raw not in story


# --- the home ------------------------------------------------------------------------------------

def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_home_with_a_ca_is_refused_and_left_as_it_was(ca: Any, home: Path) -> None:
    before = listing(home)
    with pytest.raises(CAExistsError, match="already holds a kyso home"):
        run_demo(home, FrozenClock(T0), lambda _line: None)
    assert listing(home) == before


def test_kyso_home_naming_a_ca_home_is_refused_by_the_command_with_exit_1(
        ca: Any, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kyso.cli import main

    before = listing(home)
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(home), "demo"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "already holds a kyso home" in captured.err
    assert "Traceback" not in captured.err
    assert listing(home) == before


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CAExistsError, match="other files"):
        prepare_home(tmp_path)
    assert listing(tmp_path) == ["notes.txt"]
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_home(tmp_path / "notes.txt")


def test_a_previous_demos_home_is_replaced_but_its_config_is_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("ca", "crl", "audit", "secrets", "csca", "demo"):
        (home / name).mkdir(parents=True, exist_ok=True)
        (home / name / "file").write_text("x")
    for name in (MARKER, "demo-secrets.txt", "kyso.db", "kyso.db-wal"):
        (home / name).write_text("x")
    assert {p.name for p in home.iterdir()} <= DEMO_ENTRIES
    (home / "config.toml").write_text('[authn]\npassword_policy = "nist-aal2"\n')
    prepare_home(home)
    assert listing(home) == ["config.toml"]


def test_a_previous_demos_home_holding_other_files_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "ca").mkdir(parents=True)
    (home / MARKER).write_text("{}")
    (home / "issued").mkdir()
    before = listing(home)
    with pytest.raises(CAExistsError, match="issued"):
        prepare_home(home)
    assert listing(home) == before


# --- the command, from a clean environment ----------------------------------------------------

def clean_env(tmp_path: Path) -> dict[str, str]:
    """No KYSO_* variable (so no fast KDF), no proxy, a HOME of its own."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "LANG": "C.UTF-8"}


def kyso_cmd(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KYSO), *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False, env=env)


@pytest.mark.slow
def test_kyso_demo_runs_from_a_clean_environment_with_production_settings(
        tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    home = tmp_path / "demo-home"
    run = kyso_cmd(env, "demo", "--home", home)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    for step in STEPS:
        assert step in run.stdout
    assert "PBKDF2-SHA256 600000 iterations; passwords argon2id owasp" in run.stdout
    assert "weaker than the production defaults" not in run.stdout
    assert "4-dong-dau.pdf: TOTAL-PASSED" in run.stdout
    assert "single use, expires in 300 s" in run.stdout
    assert not (home / "demo" / "cong-dan.p12").exists()
    assert "4-dong-dau-bi-sua.pdf (one byte of the page text changed after signing): " \
           "TOTAL-FAILED" in run.stdout
    assert "kyso audit verify: PASS" in run.stdout
    secrets = read_secrets(home)
    for name, value in secrets.items():
        assert value not in run.stdout, name

    # A backend service elsewhere: only the root certificate, an empty home of its own.
    elsewhere = tmp_path / "backend"
    elsewhere.mkdir()
    demo_dir = home / "demo"
    good = kyso_cmd(env, "--home", elsewhere, "pdf", "verify", demo_dir / "4-dong-dau.pdf",
                    "--trust", demo_dir / "root.pem", "--format", "json")
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    assert report["indication"] == "TOTAL-PASSED"
    assert [s["field"] for s in report["signatures"]] == ["citizen", "official", "seal",
                                                          "DocTimeStamp"]
    bad = kyso_cmd(env, "--home", elsewhere, "pdf", "verify", demo_dir / "4-dong-dau-bi-sua.pdf",
                   "--trust", demo_dir / "root.pem", "--format", "json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["indication"] == "TOTAL-FAILED"

    audit = kyso_cmd(env, "--home", home, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "Result: PASS" in audit.stdout

    # Production settings, as stored: PBKDF2 600 000 (0x0927C0) in the CA key files, argon2id
    # with the OWASP parameters for the citizen's password.
    if shutil.which("openssl"):
        parsed = subprocess.run(["openssl", "asn1parse", "-in", str(home / "ca" / "root.key.pem")],
                                capture_output=True, text=True, timeout=60, check=True)
        assert ":PBKDF2" in parsed.stdout
        assert "INTEGER           :0927C0" in parsed.stdout
    with sqlite3.connect(home / "kyso.db") as db:
        (hashed,) = db.execute("SELECT password_hash FROM identities").fetchone()
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


@pytest.mark.external
def test_openssl_opens_the_demos_pkcs12_with_the_passphrase_from_the_secrets_file(
        demo: Demo, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("external tool not installed: openssl")
    secrets = demo.secrets()
    cert = next(c for c in demo.result.certificates if c.role == "staff")
    env = {**clean_env(tmp_path), "P12PASS": secrets["DEMO_STAFF_P12_PASSPHRASE"]}
    proc = subprocess.run(["openssl", "pkcs12", "-in", str(cert.pkcs12), "-nokeys", "-clcerts",
                           "-passin", "env:P12PASS"], capture_output=True, timeout=60,
                          check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    (found,) = x509.load_pem_x509_certificates(proc.stdout)
    assert f"{found.serial_number:x}" == cert.serial
    wrong = subprocess.run(["openssl", "pkcs12", "-in", str(cert.pkcs12), "-nokeys",
                            "-passin", "pass:not-the-passphrase"], capture_output=True,
                           timeout=60, check=False, env=env)
    assert wrong.returncode != 0


@pytest.mark.external
def test_qpdf_and_pdftotext_read_the_final_dossier_and_its_two_stamps(demo: Demo) -> None:
    missing = [t for t in ("qpdf", "pdftotext") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"external tool not installed: {', '.join(missing)} (qpdf, poppler-utils)")
    for path in (demo.result.final_pdf, demo.result.tampered_pdf):  # both well-formed PDFs
        check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True,
                               timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    text = subprocess.run(["pdftotext", "-f", "2", "-l", "2", str(demo.result.final_pdf), "-"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    flat = " ".join(text.split())
    assert "Ký bởi: Nguyễn Văn An" in flat  # the official's stamp, on the last page
    assert "Chức vụ: Chuyên viên" in flat
    assert "Ký bởi: UBND xã Phú Đình" in flat  # the seal's


def test_kyso_demo_format_json_prints_the_result_and_tells_the_story_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kyso.cli import main

    monkeypatch.delenv("KYSO_HOME", raising=False)
    home = tmp_path / "home"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--home", str(home), "--format", "json"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["home"] == str(home)
    assert data["settings"] == {"key_kdf_iterations": 2000, "password_hash": "test-fast"}
    assert data["final"]["indication"] == "TOTAL-PASSED"
    assert data["tampered"]["indication"] == "TOTAL-FAILED"
    assert "1. Chứng thư số" in captured.err
    # a second run replaces the first demo's home
    with pytest.raises(SystemExit) as again:
        main(["demo", "--home", str(home), "--format", "json"])
    assert again.value.code == 0
    assert json.loads(capsys.readouterr().out)["audit"]["ok"] is True
