"""``kyso id client add|list`` and ``kyso serve``'s refusals, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kyso.audit import read_events
from kyso.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_client_add_prints_the_secret_once_and_list_never_shows_it(
        capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = _run(capsys, "--home", str(home), "id", "client", "add", "--client-id", "dvc",
                        "--name", "Cổng DVC", "--redirect-uri", "https://dvc.example.gov.vn/cb",
                        "--redirect-uri", "http://127.0.0.1:9000/cb", "--confidential",
                        "--format", "json")
    assert code == 0
    added = json.loads(out)
    secret = added["client_secret"]
    assert added["redirect_uris"] == ["https://dvc.example.gov.vn/cb", "http://127.0.0.1:9000/cb"]
    code, out, _ = _run(capsys, "--home", str(home), "id", "client", "list", "--format", "json")
    assert code == 0
    assert [c["client_id"] for c in json.loads(out)] == ["dvc"]
    assert secret not in out
    events = read_events(home / "audit")
    assert any(e["action"] == "CLIENT_REGISTER" for e in events)
    assert all(secret not in json.dumps(e) for e in events)


@pytest.mark.parametrize(("uri", "needle"), [
    ("http://dvc.example.gov.vn/cb", "https"), ("https://dvc.example.gov.vn/cb#x", "fragment"),
    ("dvc/cb", "absolute"),
])
def test_client_add_refuses_bad_redirect_uris(capsys: pytest.CaptureFixture[str], home: Path,
                                             uri: str, needle: str) -> None:
    code, _, err = _run(capsys, "--home", str(home), "id", "client", "add", "--client-id", "dvc",
                        "--name", "DVC", "--redirect-uri", uri)
    assert code == 1
    assert needle in err
    assert "Traceback" not in err


def test_serve_refuses_half_a_tls_configuration(capsys: pytest.CaptureFixture[str], home: Path,
                                               tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    code, _, err = _run(capsys, "--home", str(home), "serve", "--tls-cert", str(cert))
    assert code == 2
    assert "--tls-key" in err


def test_serve_without_a_token_key_passphrase_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYSO_TOKEN_KEY_PASSPHRASE", raising=False)
    code, _, err = _run(capsys, "--home", str(home), "serve", "--port", "1")
    assert code == 2
    assert "KYSO_TOKEN_KEY_PASSPHRASE" in err
