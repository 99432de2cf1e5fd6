"""``kyso pdf sign --remote URL --credential ID --token-file FILE``: the key stays with the
signing gateway (a real ``kyso serve`` app on loopback, see ``remote_signing_support``); kyso
builds the signature and the gateway signs its hash after the token's fresh level-2 login
authorized it. Each test runs ``kyso.cli.main`` in-process, as the console script does, so exit
codes and messages are the real ones. Refusals exit 1 (domain) or 2 (usage), say why, never
show the token and never leave an output file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from remote_signing_support import (  # noqa: F401 - live_gateway: a fixture
    BINH,
    CUONG,
    LiveGateway,
    TlsGateway,
    live_gateway,
    tls_gateway,
)

from conftest import FAST_KDF, PASSPHRASE, audit_events
from kyso.audit import read_events
from kyso.signing.sample import sample_pdf
from main_support import Outcome, run_main

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"  # JWT-shaped, for refusals only


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray settings, the fast KDF, a scratch working directory."""
    for name in ("KYSO_HOME", "KYSO_DATABASE_URL", "KYSO_PDF_PASSWORD", "KYSO_CA_PASSPHRASE",
                 "KYSO_P12_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAST_KDF.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "don.pdf").write_bytes(sample_pdf(pages=2))
    return work


def token_file(folder: Path, token: str, mode: int = 0o600) -> Path:
    path = folder / "token.txt"
    path.write_text(token + "\n", encoding="ascii")
    path.chmod(mode)
    return path


def refused(outcome: Outcome, code: int, *needles: str) -> None:
    assert outcome.code == code, f"expected exit {code}, got {outcome.code}\n{outcome.text}"
    assert "Traceback" not in outcome.text, outcome.text
    assert outcome.err.startswith(("error:", "Error:", "Usage:")), outcome.err
    for needle in needles:
        assert needle in outcome.err, f"{needle!r} not in {outcome.err!r}"
    assert TOKEN not in outcome.text


def dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- signing through the gateway -------------------------------------------------------------

def test_sign_remote_b_lt_online_without_a_ca_then_verify_passes(
        capsys: pytest.CaptureFixture[str], live_gateway: LiveGateway, env: Path) -> None:
    """A citizen's machine: no CA, no key; the timestamp and the revocation data come from the
    URLs in the certificates, the signature from the gateway."""
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    tokens = token_file(env, live_gateway.login(binh, step_up=True))
    home = env / "citizen-home"

    signed = run_main(capsys, home, "--format", "json", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                      "--remote", live_gateway.url, "--credential", enrolled.credential_id,
                      "--token-file", tokens, "--level", "B-LT", "--online",
                      "--tsa-url", f"{live_gateway.url}/tsa", "--field", "citizen")
    verified = run_main(capsys, home, "--format", "json", "pdf", "verify", "don-ky.pdf",
                        "--trust", live_gateway.root)

    assert signed.code == 0, signed.text
    result = signed.json()
    assert result["level"] == "B-LT"
    assert result["credential_id"] == enrolled.credential_id
    assert result["gateway"] == live_gateway.url
    assert result["signer_serial"] == f"{enrolled.certificate.serial_number:x}"
    assert not (home / "kyso.db").exists()  # nothing of a CA on the citizen's side
    assert verified.code == 0, verified.text
    report = verified.json()
    assert report["indication"] == "TOTAL-PASSED", report
    (signature,) = report["signatures"]
    assert signature["pades_level"] == "B-LT"
    assert signature["field"] == "citizen"
    # the digest kyso asked the gateway to sign is the one the gateway recorded
    (event,) = [e for e in audit_events(live_gateway.kyso) if e["action"] == "CSC_SIGN_HASH"]
    assert event["details"]["hashes"] == [result["signed_digest"]]
    assert tokens.read_text(encoding="ascii").strip() not in signed.text + verified.text


def test_sign_remote_in_a_home_records_document_sign_linked_to_the_gateways_events(
        capsys: pytest.CaptureFixture[str], live_gateway: LiveGateway, env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed in the gateway's own home (B-T with the home's TSA): ``DOCUMENT_SIGN`` is recorded
    as for a local key, with the credential and the digest the gateway signed."""
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", PASSPHRASE)
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    tokens = token_file(env, live_gateway.login(binh, step_up=True))

    signed = run_main(capsys, live_gateway.home, "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                      "--remote", f"{live_gateway.url}/csc/v2/", "--credential",
                      enrolled.credential_id, "--token-file", tokens, "--level", "B-T")

    assert signed.code == 0, signed.text
    assert "signed don.pdf → don-ky.pdf" in signed.out
    events = read_events(live_gateway.home / "audit")
    (sign_hash,) = [e for e in events if e["action"] == "CSC_SIGN_HASH"]
    (document,) = [e for e in events if e["action"] == "DOCUMENT_SIGN"]
    assert document["outcome"] == "success"
    assert document["details"]["level"] == "B-T"
    assert document["details"]["cred_id"] == enrolled.credential_id
    assert document["details"]["signer_serial"] == f"{enrolled.certificate.serial_number:x}"
    assert [document["details"]["signed_digest"]] == sign_hash["details"]["hashes"]
    assert events.index(sign_hash) < events.index(document)
    verified = run_main(capsys, live_gateway.home, "pdf", "verify", "don-ky.pdf", "--online")
    assert verified.code == 0, verified.text
    assert "TOTAL-PASSED" in verified.out
    audit = run_main(capsys, live_gateway.home, "audit", "verify")  # the server's and the CLI's
    assert audit.code == 0, audit.text


def test_an_https_gateway_is_trusted_through_remote_ca_only(
        capsys: pytest.CaptureFixture[str], live_gateway: LiveGateway, tls_gateway: TlsGateway,
        env: Path) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    tokens = token_file(env, live_gateway.login(binh, step_up=True))
    args = ("--remote", tls_gateway.url, "--credential", enrolled.credential_id,
            "--token-file", tokens)

    untrusted = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf", *args)
    trusted = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf", *args,
                       "--remote-ca", tls_gateway.ca_file)

    refused(untrusted, 1, f"{tls_gateway.url}/csc/v2/info: cannot reach the signing gateway",
            "CERTIFICATE_VERIFY_FAILED")
    assert trusted.code == 0, trusted.text
    assert (env / "don-ky.pdf").is_file()


def test_a_used_step_up_token_cannot_sign_a_second_document(
        capsys: pytest.CaptureFixture[str], live_gateway: LiveGateway, env: Path) -> None:
    binh = live_gateway.citizen(BINH)
    enrolled = live_gateway.enrol(binh)
    tokens = token_file(env, live_gateway.login(binh, step_up=True))
    args = ("--remote", live_gateway.url, "--credential", enrolled.credential_id,
            "--token-file", tokens)
    first = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "one.pdf", *args)
    assert first.code == 0, first.text

    again = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "two.pdf", *args)

    refused(again, 1, f"{live_gateway.url}/csc/v2/credentials/authorize",
            "the signing gateway refused (HTTP 4")
    assert not (env / "two.pdf").exists()


def test_an_unknown_credential_exits_1_with_the_gateways_reason_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], live_gateway: LiveGateway, env: Path) -> None:
    binh, cuong = live_gateway.citizen(BINH), live_gateway.citizen(CUONG)
    hers = live_gateway.enrol(binh)
    tokens = token_file(env, live_gateway.login(cuong, step_up=True))

    outcome = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                       "--remote", live_gateway.url, "--credential", hers.credential_id,
                       "--token-file", tokens)

    refused(outcome, 1, f"{live_gateway.url}/csc/v2/credentials/info",
            "(HTTP 400): invalid_request", "credentialID")
    assert {p.name for p in env.iterdir()} <= {"don.pdf", "h", "token.txt"}


def test_a_gateway_that_is_down_exits_1_naming_it(capsys: pytest.CaptureFixture[str],
                                                  env: Path) -> None:
    url = dead_url()
    outcome = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                       "--remote", url, "--credential", "csc-x", "--token-file",
                       token_file(env, TOKEN))
    refused(outcome, 1, f"{url}/csc/v2/info: cannot reach the signing gateway")
    assert not (env / "don-ky.pdf").exists()


# --- the token file ------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "mode", "needle"), [
    (TOKEN, 0o644, "is readable by group or others (mode 644)"),
    (TOKEN, 0o640, "is readable by group or others (mode 640)"),
    ("", 0o600, "the access token is empty"),
    ("not a token", 0o600, "the access token is not a JWT"),
    ("Bearer " + TOKEN, 0o600, "the access token is not a JWT"),
    ("đây không phải token", 0o600, "is not ASCII text"),
    ("x" * 20_000, 0o600, "is larger than 16 KiB"),
])
def test_a_bad_token_file_exits_1_before_any_request_and_never_shows_the_token(
        capsys: pytest.CaptureFixture[str], env: Path, content: str, mode: int,
        needle: str) -> None:
    path = env / "token.txt"
    path.write_bytes(content.encode("utf-8"))
    path.chmod(mode)
    outcome = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                       "--remote", dead_url(), "--credential", "csc-x", "--token-file", path)
    refused(outcome, 1, f"token file {path}", needle)
    assert "cannot reach" not in outcome.err  # refused before the network
    assert not (env / "don-ky.pdf").exists()
    if content.strip():
        assert content.strip()[:40] not in outcome.text


def test_a_missing_token_file_exits_1(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    outcome = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                       "--remote", dead_url(), "--credential", "csc-x", "--token-file", "nope.txt")
    refused(outcome, 1, "token file nope.txt does not exist")


# --- usage ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "needle"), [
    (("--remote", "URL", "--token-file", "token.txt"), "--remote needs --credential"),
    (("--remote", "URL", "--credential", "c"), "--remote needs --token-file"),
    (("--remote", "URL", "--credential", "c", "--token-file", "token.txt", "--p12", "a.p12"),
     "give --p12 or --remote, not both"),
    (("--credential", "c", "--p12", "a.p12"), "go with --remote"),
    ((), "give --p12 FILE (the signer's PKCS#12) or --remote URL"),
    (("--remote", "http://kyso.thainguyen.gov.vn", "--credential", "c", "--token-file",
      "token.txt"), "would travel in clear"),
    (("--remote", "ftp://127.0.0.1", "--credential", "c", "--token-file", "token.txt"),
     "must be https"),
])
def test_remote_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], env: Path,
                                    args: tuple[str, ...], needle: str) -> None:
    token_file(env, TOKEN)
    url = dead_url()
    outcome = run_main(capsys, env / "h", "pdf", "sign", "don.pdf", "-o", "don-ky.pdf",
                       *(url if a == "URL" else a for a in args))
    refused(outcome, 2, needle)
    assert not (env / "don-ky.pdf").exists()


def test_sign_batch_does_not_take_remote(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    outcome = run_main(capsys, env / "h", "pdf", "sign-batch", ".", "-o", "out", "--remote",
                       dead_url())
    refused(outcome, 2, "No such option '--remote'")


def test_the_help_shows_remote_signing_examples(capsys: pytest.CaptureFixture[str],
                                                env: Path) -> None:
    outcome = run_main(capsys, env / "h", "pdf", "sign", "--help")
    assert outcome.code == 0
    assert "--remote https://" in outcome.out
    assert "--token-file token.txt" in outcome.out
    for option in ("--remote URL", "--credential ID", "--token-file FILE", "--remote-ca FILE"):
        assert option in outcome.out
    assert os.environ.get("KYSO_CA_PASSPHRASE") is None
