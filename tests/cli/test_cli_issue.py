"""``kyso cert issue``: what it writes, and how it refuses bad input (clear message, exit code,
no traceback, nothing written, no raw ID number in messages or the audit log)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_support import (
    CITIZEN_ARGS,
    P12_PASSPHRASE,
    PROFILE_ISSUER,
    STAFF_ARGS,
    assert_refused,
    audit_lines,
    ca_cert,
    cli_env,  # noqa: F401 - autouse fixture
    csr_with_bad_signature,
    init_ca,
    issue,
    make_csr,
    mode,
    pem,
    rsa_1024_csr,
    run_main,
    serials,
    tree,
    verifies,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conftest import CITIZEN, STAFF


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


def spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# --- what a good request writes ---------------------------------------------------------------

@pytest.mark.parametrize("profile", ["staff", "seal", "citizen"])
def test_issue_without_csr_writes_private_p12_certificate_and_chain(ca_home: Path,
                                                                    profile: str) -> None:
    before = serials(ca_home)
    record = issue(ca_home, profile)
    files = {k: Path(v) for k, v in record["files"].items()}
    assert set(files) == {"pkcs12", "certificate", "chain"}
    assert files["pkcs12"].name.endswith(".p12")
    assert files["certificate"].name.endswith(".crt.pem")
    assert files["chain"].name.endswith(".chain.pem")
    assert mode(files["pkcs12"]) == 0o600

    cert = x509.load_pem_x509_certificate(files["certificate"].read_bytes())
    assert format(cert.serial_number, "x") == record["serial"]
    issuer = ca_cert(ca_home, PROFILE_ISSUER[profile])
    assert verifies(cert, issuer)
    assert x509.load_pem_x509_certificates(files["chain"].read_bytes()) == [
        issuer, ca_cert(ca_home, "root")]

    key, p12_cert, extra = pkcs12.load_key_and_certificates(
        files["pkcs12"].read_bytes(), P12_PASSPHRASE.encode())
    assert p12_cert == cert
    assert key is not None
    assert spki(key.public_key()) == spki(cert.public_key())
    assert issuer in extra
    with pytest.raises(ValueError, match=r"(?i)password|mac|decrypt"):
        pkcs12.load_key_and_certificates(files["pkcs12"].read_bytes(), b"wrong-passphrase")

    assert serials(ca_home) == before | {record["serial"]}


def test_issue_with_csr_writes_the_certificate_and_no_p12(ca_home: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    Path("req.pem").write_bytes(pem(make_csr(key)))
    record = issue(ca_home, "citizen", "--csr", "req.pem")
    assert "pkcs12" not in record["files"]
    cert = x509.load_pem_x509_certificate(Path(record["files"]["certificate"]).read_bytes())
    assert spki(cert.public_key()) == spki(key.public_key())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CITIZEN["name"]
    assert Path(record["files"]["chain"]).is_file()
    assert not list((ca_home / "issued").glob("*.p12"))


def test_issue_to_explicit_paths(ca_home: Path) -> None:
    record = issue(ca_home, "staff", "--out", "an.crt.pem", "--p12", "an.p12")
    assert Path(record["files"]["certificate"]).resolve() == Path("an.crt.pem").resolve()
    assert Path(record["files"]["chain"]).resolve() == Path("an.chain.pem").resolve()
    assert Path(record["files"]["pkcs12"]).resolve() == Path("an.p12").resolve()
    assert mode(Path("an.p12")) == 0o600


def test_issue_reads_both_passphrases_from_files(ca_home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_CA_PASSPHRASE")
    monkeypatch.delenv("KYSO_P12_PASSPHRASE")
    ca_pass, p12_pass = tmp_path / "ca.pass", tmp_path / "p12.pass"
    ca_pass.write_text("test-ca-passphrase\n", encoding="utf-8")
    p12_pass.write_text("another-p12-pass\n", encoding="utf-8")
    record = issue(ca_home, "staff", "--passphrase-file", str(ca_pass),
                   "--p12-passphrase-file", str(p12_pass))
    data = Path(record["files"]["pkcs12"]).read_bytes()
    assert pkcs12.load_key_and_certificates(data, b"another-p12-pass")[0] is not None


# --- bad input: refused, clearly, and nothing written ----------------------------------------

@dataclass
class Case:
    argv: Callable[[Path], list[str]]
    code: int
    needles: tuple[str, ...]
    env: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, bytes | None] = field(default_factory=dict)  # None: made by _CSR_MAKERS


def citizen_csr(name: str) -> Callable[[Path], list[str]]:
    return lambda _home: [*CITIZEN_ARGS, "--csr", name]


def staff_with(**changes: str) -> Callable[[Path], list[str]]:
    def argv(_home: Path) -> list[str]:
        args = list(STAFF_ARGS)
        for opt, value in changes.items():
            flag = "--" + opt.replace("_", "-")
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        return args
    return argv


def _good_csr_pem() -> bytes:
    return pem(make_csr())


def _truncated_csr() -> bytes:
    data = _good_csr_pem()
    return data[: len(data) // 2]


CASES: dict[str, Case] = {
    "malformed CSR (garbage bytes)": Case(
        citizen_csr("garbage.csr"), 1, ("not a valid", "signing request"),
        files={"garbage.csr": bytes(range(256)) * 3}),
    "truncated CSR": Case(citizen_csr("truncated.csr"), 1, ("not a valid",),
                          files={"truncated.csr": None}),
    "empty CSR": Case(citizen_csr("empty.csr"), 1, ("empty",), files={"empty.csr": b""}),
    "CSR with a bad signature": Case(citizen_csr("badsig.csr"), 1, ("signature",),
                                     files={"badsig.csr": None}),
    "CSR asking CA:TRUE": Case(citizen_csr("ca.csr"), 1, ("CA:TRUE",), files={"ca.csr": None}),
    "RSA-1024 CSR": Case(citizen_csr("rsa1024.csr"), 1, ("1024",), files={"rsa1024.csr": None}),
    "missing CSR file": Case(citizen_csr("nowhere.csr"), 1, ("nowhere.csr",)),
    "ID with a wrong province code": Case(staff_with(id="999099012345", dob="1999-04-02"), 1,
                                          ("province code",)),
    "ID inconsistent with the date of birth": Case(staff_with(dob="1990-04-02"), 1,
                                                   ("birth year",)),
    "ID of 11 digits": Case(staff_with(id="01909901234"), 1, ("12 digits",)),
    "e-mail outside the CA's domain": Case(staff_with(email="an@gmail.com"), 1, ("domain",)),
    "unknown profile": Case(lambda _h: ["--profile", "no-such-profile", "--name", "A B"], 1,
                            ("no-such-profile", "staff", "citizen", "seal")),
    "--days over the profile maximum": Case(staff_with(days="1827"), 1, ("1826", "maximum")),
    "--days zero": Case(staff_with(days="0"), 1, ("day",)),
    "key type the profile does not allow": Case(staff_with(key_type="ed25519"), 1,
                                                ("ed25519",)),
    "wrong CA passphrase": Case(staff_with(), 1, ("wrong CA passphrase",),
                                env={"KYSO_CA_PASSPHRASE": "not-the-ca-passphrase"}),
    "missing CA passphrase, no TTY": Case(staff_with(), 2, ("passphrase", "KYSO_CA_PASSPHRASE"),
                                          env={"KYSO_CA_PASSPHRASE": None}),
    "missing PKCS#12 passphrase, no TTY": Case(staff_with(), 2,
                                               ("passphrase", "KYSO_P12_PASSPHRASE"),
                                               env={"KYSO_P12_PASSPHRASE": None}),
    "--p12 together with --csr": Case(lambda _h: [*CITIZEN_ARGS, "--csr", "good.csr",
                                                  "--p12", "x.p12"], 2, ("--p12", "--csr"),
                                      files={"good.csr": None}),
    "--out into a missing directory": Case(staff_with(out="no/such/dir/x.crt.pem"), 2,
                                           ("does not exist",)),
}
_CSR_MAKERS: dict[str, Callable[[], bytes]] = {
    "truncated.csr": _truncated_csr, "badsig.csr": csr_with_bad_signature,
    "ca.csr": lambda: pem(make_csr(ca=True)), "rsa1024.csr": rsa_1024_csr,
    "good.csr": _good_csr_pem,
}


def _materialise(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, data in case.files.items():
        Path(name).write_bytes(_CSR_MAKERS[name]() if data is None else data)
    for var, value in case.env.items():
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)


@pytest.mark.parametrize("case_name", list(CASES))
def test_bad_input_is_refused_clearly_and_nothing_is_written(
        ca_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        case_name: str) -> None:
    case = CASES[case_name]
    before_rows = serials(ca_home)
    before_issued = tree(ca_home / "issued")
    _materialise(case, monkeypatch)
    before_cwd = tree(Path.cwd())
    outcome = run_main(capsys, ca_home, "cert", "issue", *case.argv(ca_home))
    assert_refused(outcome, case.code, *case.needles)
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", "test-ca-passphrase")
    assert tree(ca_home / "issued") == before_issued
    assert tree(Path.cwd()) == before_cwd
    assert serials(ca_home) == before_rows


@pytest.mark.parametrize("which", ["--out", "--p12"])
def test_an_existing_output_file_is_never_overwritten(
        ca_home: Path, capsys: pytest.CaptureFixture[str], which: str) -> None:
    Path("taken").write_bytes(b"precious")
    before_rows = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "issue", *STAFF_ARGS, which, "taken")
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "taken", "already exists")
    assert Path("taken").read_bytes() == b"precious"
    assert serials(ca_home) == before_rows
    assert not list((ca_home / "issued").glob("*"))


def test_an_existing_chain_file_next_to_out_is_never_overwritten(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("an.chain.pem").write_bytes(b"precious")
    before_rows = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "issue", *STAFF_ARGS, "--out", "an.crt.pem")
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "an.chain.pem")
    assert Path("an.chain.pem").read_bytes() == b"precious"
    assert not Path("an.crt.pem").exists()
    assert serials(ca_home) == before_rows


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a key\n" * 20)


def _armoured_junk(path: Path) -> None:
    path.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAAAAAA\n"
                     b"-----END ENCRYPTED PRIVATE KEY-----\n")


def _truncated(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3] + lines[-1:]))


def _another_key(path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"test-ca-passphrase")))


@pytest.mark.parametrize(("damage", "needle"), [
    (_garbage, "staff.key.pem"), (_armoured_junk, "staff.key.pem"),
    (_truncated, "staff.key.pem"), (_another_key, "does not match"),
])
def test_a_corrupted_ca_key_file_gives_a_clear_error(
        ca_home: Path, capsys: pytest.CaptureFixture[str],
        damage: Callable[[Path], None], needle: str) -> None:
    before_rows = serials(ca_home)
    damage(ca_home / "ca" / "staff.key.pem")
    outcome = run_main(capsys, ca_home, "cert", "issue", *STAFF_ARGS)
    assert_refused(outcome, 1, needle)
    assert serials(ca_home) == before_rows
    assert not list((ca_home / "issued").glob("*"))


def test_non_existent_home_parents_are_created(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b" / "c" / "home"
    init_ca(home)
    record = issue(home, "citizen")
    assert Path(record["files"]["certificate"]).parent == home / "issued"


# --- the raw ID number stays out of messages and the audit log -------------------------------

ID_CASES = {
    "wrong province code": ("999099012345", staff_with(id="999099012345", dob="1999-04-02")),
    "dob inconsistent": (STAFF["id"], staff_with(dob="1990-04-02")),
    "wrong CA passphrase": (STAFF["id"], staff_with()),
    "CSR serialNumber with a bad ID": (
        "999301000123", lambda _h: ["--profile", "citizen", "--name", CITIZEN["name"],
                                    "--csr", "idcsr.pem"]),
}


@pytest.mark.parametrize("case_name", list(ID_CASES))
def test_a_refused_request_never_shows_or_logs_the_raw_id_number(
        ca_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        case_name: str) -> None:
    raw, argv = ID_CASES[case_name]
    if case_name == "wrong CA passphrase":
        monkeypatch.setenv("KYSO_CA_PASSPHRASE", "not-the-ca-passphrase")
    if case_name.startswith("CSR"):
        Path("idcsr.pem").write_bytes(pem(make_csr(extra_attributes=(
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IDCVN-{raw}"),))))
    events_before = len(audit_lines(ca_home))
    outcome = run_main(capsys, ca_home, "cert", "issue", *argv(ca_home))
    assert outcome.code == 1
    assert "Traceback" not in outcome.text
    assert raw not in outcome.text
    log = "".join(p.read_text(encoding="utf-8")
                  for p in (ca_home / "audit" / "segments").glob("*.jsonl"))
    assert raw not in log
    new = audit_lines(ca_home)[events_before:]
    assert any(e["outcome"] == "failure" for e in new), "the refusal was not audited"
    assert raw not in json.dumps(new, ensure_ascii=False)


def test_an_audit_failure_after_storing_still_delivers_the_key(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = ca_home / "audit" / ".lock"
    lock.unlink()
    lock.mkdir()  # the audit write will fail after the database commit
    before = serials(ca_home)
    outcome = run_main(capsys, ca_home, "cert", "issue", *CITIZEN_ARGS)
    assert_refused(outcome, 1, "cannot write the audit log")
    new = serials(ca_home) - before
    assert len(new) == 1  # stored before the audit write failed…
    (serial,) = new  # …and its PKCS#12 is on disk: no valid certificate without its key
    assert (ca_home / "issued" / f"{serial}.p12").exists()
    assert not list((ca_home / "issued").glob(".*staged"))


def test_same_path_for_certificate_and_pkcs12_is_a_usage_error_before_issuing(
        ca_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = serials(ca_home)
    same = str(tmp_path / "same.pem")
    outcome = run_main(capsys, ca_home, "cert", "issue", *CITIZEN_ARGS, "--out", same,
                       "--p12", same)
    assert_refused(outcome, 2, "different files")
    assert serials(ca_home) == before
