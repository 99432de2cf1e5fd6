"""``kyso token verify``: PASS with what the token says, or a clear reason and exit 1 (never a
traceback), with keys from the home's key set, a public JWKS file or a JWKS URL."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_refused, audit_lines, cli_env, run_main  # noqa: F401 - autouse
from click.testing import CliRunner

from kyso.authn.acr import ACR_LEVEL_1, ACR_LEVEL_2
from kyso.authn.key_store import PUBLIC_JWKS_FILE, save_key_set
from kyso.authn.keys import KeySet
from kyso.authn.tokens import TokenType, issue
from kyso.cli import cli
from kyso.clock import FrozenClock, SystemClock
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE
from kyso.context import Kyso

ISSUER = "https://id.thainguyen.gov.vn"
API = "hotich-api"
CLIENT = "dichvucong-portal"
SUBJECT = "u-Qm9uZ1RoYW5oTmdvYw"
KEY_PASSPHRASE = "token-key-passphrase"
NONE_HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()


def now() -> dt.datetime:
    return SystemClock().now()


@pytest.fixture
def keys() -> KeySet:
    # created three hours ago, so that expired tokens can be made with it
    return KeySet.create(FrozenClock(now() - dt.timedelta(hours=3)))


@pytest.fixture
def keys_dir(home: Path, keys: KeySet, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The home's encrypted key set, unlocked through the environment."""
    directory = home / "secrets" / "token-keys"
    save_key_set(directory, keys, KEY_PASSPHRASE, iterations=2000)
    monkeypatch.setenv(ENV_TOKEN_KEY_PASSPHRASE, KEY_PASSPHRASE)
    return directory


def token(keys: KeySet, *, acr: str = ACR_LEVEL_2, at: dt.datetime | None = None,
          typ: TokenType = TokenType.ACCESS, audience: str = API, issuer: str = ISSUER) -> str:
    clock = FrozenClock(at or now())
    claims: dict[str, Any] = {"acr": acr, "amr": ["pwd", "otp"],
                              "auth_time": int(clock.now().timestamp())}
    if typ is TokenType.ACCESS:
        claims.update(client_id=CLIENT, scope="openid hotich")
    return issue(keys, typ=typ, issuer=issuer, subject=SUBJECT, audience=audience,
                 lifetime=dt.timedelta(minutes=30), clock=clock, claims=claims)


# --- PASS -------------------------------------------------------------------------------------


def test_level2_token_passes_with_the_home_key_set(capsys: pytest.CaptureFixture[str],
                                                   home: Path, keys: KeySet,
                                                   keys_dir: Path) -> None:
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API,
                       "--min-level", "2", "--issuer", ISSUER)
    assert outcome.code == 0, outcome.text
    assert outcome.out.startswith("PASS")
    for needle in (SUBJECT, f"2 ({ACR_LEVEL_2})", "pwd, otp", "+07:00", CLIENT):
        assert needle in outcome.out


def test_the_public_jwks_saved_with_the_key_set_needs_no_passphrase(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet, keys_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN_KEY_PASSPHRASE)
    assert (keys_dir / PUBLIC_JWKS_FILE).exists()
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API)
    assert outcome.code == 0, outcome.text


def test_without_the_public_jwks_the_encrypted_set_needs_its_passphrase(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet, keys_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN_KEY_PASSPHRASE)
    (keys_dir / PUBLIC_JWKS_FILE).unlink()
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API)
    assert_refused(outcome, 2, ENV_TOKEN_KEY_PASSPHRASE)
    (keys_dir / PUBLIC_JWKS_FILE).write_text(json.dumps(keys.public_jwks()))
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API)
    assert outcome.code == 0, outcome.text


def test_json_output(capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet,
                     keys_dir: Path) -> None:
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API,
                       "--format", "json")
    assert outcome.code == 0, outcome.text
    data = json.loads(outcome.out)
    assert data["result"] == "PASS"
    assert (data["subject"], data["level"], data["acr"]) == (SUBJECT, 2, ACR_LEVEL_2)
    assert data["amr"] == ["pwd", "otp"]
    assert data["issuer"] == ISSUER


def test_token_from_stdin(home: Path, keys: KeySet, keys_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "token", "verify", "-",
                                      "--audience", API], input=token(keys) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PASS")


def test_id_token_with_type_id(capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet,
                               keys_dir: Path) -> None:
    id_token = token(keys, typ=TokenType.ID, audience=CLIENT, acr=ACR_LEVEL_1)
    outcome = run_main(capsys, home, "token", "verify", id_token, "--type", "id",
                       "--audience", CLIENT)
    assert outcome.code == 0, outcome.text
    assert "ID token" in outcome.out


def test_jwks_file_without_a_home(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  keys: KeySet) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.public_jwks()))
    outcome = run_main(capsys, tmp_path / "no-home", "token", "verify", token(keys),
                       "--audience", API, "--jwks", str(jwks), "--issuer", ISSUER)
    assert outcome.code == 0, outcome.text
    assert not (tmp_path / "no-home").exists()


@pytest.fixture
def jwks_url(keys: KeySet) -> Iterator[str]:
    body = json.dumps(keys.public_jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()


def test_jwks_url_gives_keys_and_issuer(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        keys: KeySet, jwks_url: str) -> None:
    issuer = jwks_url.removesuffix("/jwks")
    outcome = run_main(capsys, tmp_path / "no-home", "token", "verify",
                       token(keys, issuer=issuer), "--audience", API, "--jwks", jwks_url)
    assert outcome.code == 0, outcome.text
    assert issuer in outcome.out
    outcome = run_main(capsys, tmp_path / "no-home", "token", "verify", token(keys),
                       "--audience", API, "--jwks", jwks_url)
    assert_refused(outcome, 1, "issuer")


# --- refusals -------------------------------------------------------------------------------


def test_level1_token_for_a_level2_api_is_refused_with_the_acr_to_ask(
        capsys: pytest.CaptureFixture[str], home: Path, keys: KeySet, keys_dir: Path) -> None:
    level1 = token(keys, acr=ACR_LEVEL_1)
    outcome = run_main(capsys, home, "token", "verify", level1, "--audience", API,
                       "--min-level", "2")
    assert_refused(outcome, 1, "level 1; level 2 is required", ACR_LEVEL_2)
    assert "PASS" not in outcome.out
    outcome = run_main(capsys, home, "token", "verify", level1, "--audience", API,
                       "--min-level", "2", "--format", "json")
    assert outcome.code == 1
    data = json.loads(outcome.out)
    assert (data["result"], data["required_acr"]) == ("FAIL", ACR_LEVEL_2)


@pytest.mark.parametrize(("make", "options", "reason"), [
    (lambda k: token(k, at=now() - dt.timedelta(hours=2)), (), "expired"),
    (lambda k: token(k), ("--audience", "another-api"), "audience"),
    (lambda k: token(k), ("--issuer", "https://evil.example"), "issuer"),
    (lambda k: token(KeySet.create(SystemClock())), (), "unknown or retired key"),
    (lambda k: token(k, typ=TokenType.ID), (), "token type"),
    (lambda k: token(k, acr="urn:vn:vneid:loa:9"), (), "acr"),
    (lambda k: NONE_HEADER + "." + token(k).split(".")[1] + ".", (), "alg none"),
    (lambda k: token(k)[:-5], (), "signature"),
    (lambda k: "not-a-token", (), "compact JWS"),
    (lambda k: "A" * 9000, (), "larger than"),
    (lambda k: token(k, at=now() - dt.timedelta(minutes=10)), ("--max-age", "60"), "recent login"),
])
def test_bad_tokens_are_refused_with_the_reason(capsys: pytest.CaptureFixture[str], home: Path,
                                                keys: KeySet, keys_dir: Path, make: Any,
                                                options: tuple[str, ...], reason: str) -> None:
    bad = make(keys)
    args = ["token", "verify", bad, "--issuer", ISSUER, "--audience", API, *options]
    if "--audience" in options:
        args[5:7] = []
    if "--issuer" in options:
        args[3:5] = []
    outcome = run_main(capsys, home, *args)
    assert_refused(outcome, 1, "token refused", reason)
    assert bad not in outcome.text


@pytest.mark.parametrize(("jwks", "reason"), [
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}, "key type RSA refused"),
    ({"keys": []}, "no keys"),
    ("{not json", "not valid JSON"),
])
def test_untrusted_jwks_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        keys: KeySet, jwks: Any, reason: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(jwks if isinstance(jwks, str) else json.dumps(jwks))
    outcome = run_main(capsys, None, "token", "verify", token(keys), "--audience", API,
                       "--jwks", str(path), "--issuer", ISSUER)
    assert_refused(outcome, 1, reason)


@pytest.mark.parametrize("url", ["http://id.thainguyen.gov.vn/jwks", "ftp://id.example/jwks"])
def test_jwks_url_over_plain_http_to_another_host_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeySet, url: str) -> None:
    outcome = run_main(capsys, tmp_path, "token", "verify", token(keys), "--audience", API,
                       "--jwks", url, "--issuer", ISSUER)
    assert_refused(outcome, 1, "JWKS URL")


def test_missing_jwks_file_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, keys: KeySet) -> None:
    outcome = run_main(capsys, tmp_path, "token", "verify", token(keys), "--audience", API,
                       "--jwks", str(tmp_path / "absent.json"), "--issuer", ISSUER)
    assert_refused(outcome, 1, "cannot be read")


def test_no_keys_at_all_is_a_usage_error(capsys: pytest.CaptureFixture[str], home: Path,
                                         keys: KeySet) -> None:
    outcome = run_main(capsys, home, "token", "verify", token(keys), "--audience", API)
    assert_refused(outcome, 2, "--jwks")


@pytest.mark.parametrize("args", [("--min-level", "3"), ("--type", "refresh"), ()])
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], home: Path,
                                      keys: KeySet, args: tuple[str, ...]) -> None:
    extra = ("--audience", API) if args else ()
    outcome = run_main(capsys, home, "token", "verify", token(keys), *extra, *args)
    assert outcome.code == 2, outcome.text
    assert "Traceback" not in outcome.text


def test_empty_token_is_a_usage_error(capsys: pytest.CaptureFixture[str], home: Path,
                                      keys_dir: Path) -> None:
    outcome = run_main(capsys, home, "token", "verify", "  ", "--audience", API)
    assert_refused(outcome, 2, "no token")


def test_decision_is_audited_in_an_initialised_home(capsys: pytest.CaptureFixture[str],
                                                    kyso: Kyso, home: Path, keys: KeySet,
                                                    keys_dir: Path) -> None:
    outcome = run_main(capsys, home, "token", "verify", token(keys, acr=ACR_LEVEL_1),
                       "--audience", API, "--min-level", "2")
    assert outcome.code == 1
    events = [e for e in audit_lines(home) if e["action"] == "VERIFY_TOKEN_ERROR"]
    assert len(events) == 1
    assert SUBJECT not in json.dumps(events)


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, None, "token", "verify", "--help")
    assert outcome.code == 0
    assert "Examples:" in outcome.out
    assert "--min-level 2" in outcome.out


@pytest.mark.parametrize(("bad", "reason"), [("not-a-token", "compact JWS"),
                                             ("a.%%%.c", "base64url"), ("a.e30.c", "base64url")])
def test_garbage_without_issuer_names_the_real_problem(capsys: pytest.CaptureFixture[str],
                                                       home: Path, keys_dir: Path, bad: str,
                                                       reason: str) -> None:
    outcome = run_main(capsys, home, "token", "verify", bad, "--audience", API)
    assert_refused(outcome, 1, reason)


def test_id_token_with_at_hash_needs_its_access_token(capsys: pytest.CaptureFixture[str],
                                                      home: Path, keys: KeySet,
                                                      keys_dir: Path) -> None:
    import hashlib

    at = token(keys)
    at_hash = base64.urlsafe_b64encode(hashlib.sha256(at.encode()).digest()[:16]).rstrip(b"=")
    clock = FrozenClock(now())
    id_token = issue(keys, typ=TokenType.ID, issuer=ISSUER, subject=SUBJECT, audience=CLIENT,
                     lifetime=dt.timedelta(minutes=5), clock=clock,
                     claims={"acr": ACR_LEVEL_2, "at_hash": at_hash.decode(), "azp": CLIENT})
    args = ("token", "verify", id_token, "--type", "id", "--audience", CLIENT)
    assert_refused(run_main(capsys, home, *args), 1, "at_hash")
    outcome = run_main(capsys, home, *args, "--access-token", at)
    assert outcome.code == 0, outcome.text
