"""``kyso ca init|show|export-chain`` and ``kyso profile list|show``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cli_support import (
    CA_NAMES,
    KNOWN_PROFILES,
    ORG,
    PROVINCE,
    SERVICE_ISSUERS,
    SERVICE_NAMES,
    assert_refused,
    audit_lines,
    ca_cert,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    mode,
    run_json,
    run_main,
    run_ok,
    tree,
    verifies,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from conftest import BASE_URL, PASSPHRASE

ALL_NAMES = CA_NAMES + SERVICE_NAMES


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


def fingerprint(home: Path, name: str) -> str:
    return ca_cert(home, name).fingerprint(hashes.SHA256()).hex()


# --- ca init ----------------------------------------------------------------------------------

def test_ca_init_creates_root_issuing_cas_and_service_certificates(home: Path) -> None:
    result = run_ok(home, "ca", "init", "--org", "UBND tỉnh Thái Nguyên", "--province",
                    "thai-nguyen", "--key-type", "ec-p384", "--base-url", BASE_URL)
    for name in ALL_NAMES:
        assert name in result.stdout
        assert (home / "ca" / f"{name}.crt.pem").is_file()
        assert (home / "ca" / f"{name}.key.pem").is_file()
    root = ca_cert(home, "root")
    assert root.issuer == root.subject
    assert verifies(root, root)
    for name in ("staff", "citizen", "services"):
        cert = ca_cert(home, name)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert verifies(cert, root), f"{name} is not signed by root"
    for name, issuer in SERVICE_ISSUERS.items():
        cert = ca_cert(home, name)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert verifies(cert, ca_cert(home, issuer)), f"{name} is not signed by {issuer}"
    for name in ALL_NAMES:
        org = ca_cert(home, name).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert [a.value for a in org] == [ORG]


def test_ca_init_key_files_are_private_encrypted_and_match_their_certificates(home: Path) -> None:
    init_ca(home)
    for name in ALL_NAMES:
        path = home / "ca" / f"{name}.key.pem"
        data = path.read_bytes()
        assert mode(path) == 0o600, f"{path} has mode {oct(mode(path))}"
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert b"-----BEGIN PRIVATE KEY-----" not in data
        with pytest.raises(TypeError):  # no passphrase: refused
            serialization.load_pem_private_key(data, None)
        # wrong passphrase: refused (AES-CBC padding survives ~1 in 256 wrong passphrases, then
        # the message is about deserialising instead)
        with pytest.raises(ValueError, match=r"(?i)password|decrypt|deserialize"):
            serialization.load_pem_private_key(data, b"not-the-passphrase")
        key = serialization.load_pem_private_key(data, PASSPHRASE.encode())
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
            ca_cert(home, name).public_key().public_bytes(serialization.Encoding.DER, spki)


def test_ca_init_over_an_existing_ca_fails_and_changes_nothing(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before_files = tree(ca_home / "ca")
    before_show = run_ok(ca_home, "ca", "show", "--format", "json").stdout
    before_events = len(audit_lines(ca_home))
    outcome = run_main(capsys, ca_home, "ca", "init", "--org", "UBND tỉnh Hưng Yên",
                       "--province", "hung-yen", "--key-type", "ec-p384", "--base-url", BASE_URL)
    assert_refused(outcome, 1, "already exists")
    assert tree(ca_home / "ca") == before_files  # same key files, byte for byte
    assert run_ok(ca_home, "ca", "show", "--format", "json").stdout == before_show
    assert not [e for e in audit_lines(ca_home)[before_events:] if e["outcome"] == "success"]


def test_ca_init_without_a_passphrase_and_without_a_terminal_is_a_usage_error(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_CA_PASSPHRASE")
    outcome = run_main(capsys, home, "ca", "init", "--org", ORG, "--province", PROVINCE,
                       "--key-type", "ec-p384")
    assert_refused(outcome, 2, "passphrase", "KYSO_CA_PASSPHRASE")
    assert not list((home / "ca").glob("*.pem"))


def test_ca_init_with_a_short_passphrase_is_refused_before_writing_keys(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", "short")
    outcome = run_main(capsys, home, "ca", "init", "--org", ORG, "--province", PROVINCE,
                       "--key-type", "ec-p384")
    assert outcome.code != 0
    assert_refused(outcome, outcome.code, "passphrase")
    assert not list((home / "ca").glob("*.pem"))


def test_ca_init_reads_the_passphrase_from_a_file(home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_CA_PASSPHRASE")
    secret = tmp_path / "ca.pass"
    secret.write_text("a-file-passphrase\n", encoding="utf-8")
    init_ca(home, "--passphrase-file", str(secret))
    data = (home / "ca" / "staff.key.pem").read_bytes()
    serialization.load_pem_private_key(data, b"a-file-passphrase")


def test_ca_init_creates_a_home_whose_parents_do_not_exist(tmp_path: Path) -> None:
    home = tmp_path / "not" / "yet" / "there" / "home"
    init_ca(home)
    assert (home / "ca" / "root.key.pem").is_file()
    assert run_json(home, "ca", "show", "--format", "json")["org"] == ORG


def test_a_home_that_is_a_file_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "home-file"
    not_a_dir.write_bytes(b"x")
    outcome = run_main(capsys, not_a_dir, "profile", "list")
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "home-file")
    assert not_a_dir.read_bytes() == b"x"


def test_ca_init_with_an_unknown_province_is_refused(home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, home, "ca", "init", "--org", ORG, "--province", "atlantis",
                       "--key-type", "ec-p384")
    assert_refused(outcome, 1, "province")
    assert not list((home / "ca").glob("*.pem"))


# --- ca show / export-chain -------------------------------------------------------------------

def test_ca_show_text_lists_the_hierarchy_with_sha256_fingerprints(ca_home: Path) -> None:
    out = run_ok(ca_home, "ca", "show").stdout
    assert ORG in out
    for name in ALL_NAMES:
        assert name in out
        assert fingerprint(ca_home, name) in out, f"sha256 of {name} missing"


def test_ca_show_json_lists_the_hierarchy_with_sha256_fingerprints(ca_home: Path) -> None:
    data = run_json(ca_home, "ca", "show", "--format", "json")
    assert data["org"] == ORG
    assert data["province"] == "Thái Nguyên"
    assert data["base_url"] == BASE_URL
    authorities = {a["name"]: a for a in data["authorities"]}
    services = {s["name"]: s for s in data["services"]}
    assert list(authorities) == list(CA_NAMES)
    assert set(services) == set(SERVICE_NAMES)
    assert authorities["root"]["parent"] is None
    for name in ("staff", "citizen", "services"):
        assert authorities[name]["parent"] == "root"
    for name, issuer in SERVICE_ISSUERS.items():
        assert services[name]["parent"] == issuer
    for name, entry in {**authorities, **services}.items():
        assert entry["sha256"] == fingerprint(ca_home, name)
        assert entry["serial"] == format(ca_cert(ca_home, name).serial_number, "x")


def test_global_format_option_gives_the_same_json(ca_home: Path) -> None:
    per_command = run_json(ca_home, "ca", "show", "--format", "json")
    assert run_json(ca_home, "--format", "json", "ca", "show") == per_command


def test_ca_show_without_a_ca_says_how_to_create_one(home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(run_main(capsys, home, "ca", "show"), 1, "ca init")


def test_ca_export_chain_writes_the_staff_ca_then_the_root(ca_home: Path) -> None:
    out = Path("staff-chain.pem")
    run_ok(ca_home, "ca", "export-chain", "--ca", "staff", "-o", str(out))
    chain = x509.load_pem_x509_certificates(out.read_bytes())
    assert chain == [ca_cert(ca_home, "staff"), ca_cert(ca_home, "root")]


def test_ca_export_chain_to_stdout(ca_home: Path) -> None:
    out = run_ok(ca_home, "ca", "export-chain", "--ca", "citizen").stdout
    chain = x509.load_pem_x509_certificates(out.encode())
    assert chain == [ca_cert(ca_home, "citizen"), ca_cert(ca_home, "root")]


# --- profiles ---------------------------------------------------------------------------------

def test_profile_list_text_names_every_profile(ca_home: Path) -> None:
    out = run_ok(ca_home, "profile", "list").stdout
    for name in KNOWN_PROFILES:
        assert name in out


def test_profile_list_json(ca_home: Path) -> None:
    data = run_json(ca_home, "profile", "list", "--format", "json")
    assert sorted(p["name"] for p in data) == sorted(KNOWN_PROFILES)
    staff = next(p for p in data if p["name"] == "staff")
    assert staff["validity"] == {"default_days": 1095, "max_days": 1826}


def test_profile_show_staff_text(ca_home: Path) -> None:
    out = run_ok(ca_home, "profile", "show", "staff").stdout
    assert out.splitlines()[0] == "staff"
    for needle in ("end-entity", "1826", "ec-p256", "nonRepudiation", "IDCVN-{id}"):
        assert needle in out


def test_profile_show_staff_json(ca_home: Path) -> None:
    data = run_json(ca_home, "profile", "show", "staff", "--format", "json")
    assert data["name"] == "staff"
    assert data["kind"] == "end-entity"
    assert data["issuers"] == ["staff"]
    assert data["key"]["default"] == "ec-p256"
    assert data["validity"]["max_days"] == 1826
    assert set(data["inputs"]["required"]) == {"name", "id", "title", "unit", "email"}


@pytest.mark.parametrize("argv", [("profile", "show", "no-such-profile"),
                                  ("profile", "show", "no-such-profile", "--format", "json")])
def test_unknown_profile_is_refused_with_the_known_profiles_listed(
        ca_home: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    outcome = run_main(capsys, ca_home, *argv)
    assert_refused(outcome, 1, "no-such-profile", *KNOWN_PROFILES)


@pytest.mark.parametrize(("args", "message"), [
    (("--province", "thai-ngyuen"), "unknown province"),
    (("--province", "thai-nguyen", "--base-url", "ftp://pki"), "base URL"),
    (("--province", "thai-nguyen", "--email-domain", "not a domain"), "not a domain name"),
])
def test_refused_ca_init_leaves_the_home_untouched(
        home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    outcome = run_main(capsys, home, "ca", "init", "--org", ORG, "--key-type", "ec-p384", *args)
    assert_refused(outcome, 1, message)
    assert not home.exists()


def test_published_crl_folder_is_readable_by_a_web_server(
        ca_home: Path) -> None:
    run_ok(ca_home, "crl", "publish", "--ca", "staff")
    assert stat.S_IMODE((ca_home / "crl").stat().st_mode) == 0o755
    assert stat.S_IMODE((ca_home / "crl" / "staff.crl").stat().st_mode) == 0o644
