"""Online validation end to end: a signer's machine without the CA signs B-LT against a running
server, fetching OCSP, CRLs, issuer certificates and the timestamp over HTTP from the URLs in
the certificates; `kyso pdf verify --online` fetches revocation the same way. A wrong or hostile
server makes signing fail with the URL named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from pki_server_support import LivePki, kyso_cli

from conftest import STAFF
from kyso.clock import SystemClock
from kyso.errors import SigningError
from kyso.pki import issuance
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.subjects import SubjectRequest
from kyso.signing.http_services import HttpServices, http_fetch
from kyso.signing.sample import sample_pdf
from kyso.signing.setup import load_signer
from kyso.signing.sign import Level, SignRequest

pytest_plugins = ("server_fixtures", "pki_server_fixtures")
P12_PASSPHRASE = "p12-passphrase-for-tests"


def signer_p12(live: LivePki, folder: Path, n: int = 7) -> tuple[Path, x509.Certificate]:
    values = {**STAFF, "id": f"019099012{n:03d}", "email": f"online{n}@thainguyen.gov.vn"}
    issued = issuance.issue(live.kyso, live.ca, "staff", SubjectRequest.of(**values))
    assert issued.private_key is not None
    cert = x509.load_pem_x509_certificate(issued.record.pem)
    path = folder / f"signer{n}.p12"
    path.write_bytes(build_pkcs12(issued.private_key, cert, issued.chain, P12_PASSPHRASE,
                                  "online signer"))
    return path, cert


def sign_online(live: LivePki, folder: Path, p12: Path, level: str = "B-LT",
                *extra: str) -> tuple[Path, object]:
    source, out = folder / "don.pdf", folder / f"don-{level}.pdf"
    source.write_bytes(sample_pdf(pages=1))
    (folder / "p12.pass").write_text(P12_PASSPHRASE)
    done = kyso_cli(folder / "signer-home", "--format", "json", "pdf", "sign", str(source),
                    "-o", str(out), "--p12", str(p12), "--p12-passphrase-file",
                    str(folder / "p12.pass"), "--level", level, "--online",
                    "--tsa-url", f"{live.url}/tsa", *extra)
    return out, done


def verify_online(live: LivePki, folder: Path, pdf: Path) -> dict:  # type: ignore[type-arg]
    done = kyso_cli(folder / "verifier-home", "--format", "json", "pdf", "verify", str(pdf),
                    "--trust", str(live.files["root"]), "--online")
    assert done.returncode in (0, 1), done.stderr
    report: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return report


def test_b_lt_signed_online_fetches_everything_from_the_urls_in_the_certificates(
        live_pki: LivePki, tmp_path: Path) -> None:
    p12, _ = signer_p12(live_pki, tmp_path)

    out, done = sign_online(live_pki, tmp_path, p12)
    report = verify_online(live_pki, tmp_path, out)

    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "signer-home" / "kyso.db").exists()  # no CA on the signer's side
    assert report["indication"] == "TOTAL-PASSED", report
    signature = report["signatures"][0]
    assert signature["pades_level"] == "B-LT", signature
    assert signature["revocation"]["status"] == "good", signature


def test_verify_online_sees_a_revocation_made_on_the_server(
        live_pki: LivePki, tmp_path: Path) -> None:
    p12, cert = signer_p12(live_pki, tmp_path, 8)
    out, done = sign_online(live_pki, tmp_path, p12, "B-B")
    assert done.returncode == 0, done.stderr
    before = verify_online(live_pki, tmp_path, out)

    revoked = kyso_cli(live_pki.home, "cert", "revoke", f"{cert.serial_number:x}",
                       "--reason", "keycompromise")
    after = verify_online(live_pki, tmp_path, out)

    assert revoked.returncode == 0, revoked.stderr
    assert before["indication"] == "TOTAL-PASSED"
    assert after["indication"] != "TOTAL-PASSED"
    assert "revoked" in json.dumps(after).lower()


def test_online_signing_with_a_revoked_certificate_is_refused(
        live_pki: LivePki, tmp_path: Path) -> None:
    p12, cert = signer_p12(live_pki, tmp_path, 9)
    kyso_cli(live_pki.home, "cert", "revoke", f"{cert.serial_number:x}")

    out, done = sign_online(live_pki, tmp_path, p12)

    assert done.returncode == 1
    assert "is revoked" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_online_signing_names_an_unreachable_tsa(live_pki: LivePki, tmp_path: Path) -> None:
    p12, _ = signer_p12(live_pki, tmp_path, 10)
    source, out = tmp_path / "don.pdf", tmp_path / "out.pdf"
    source.write_bytes(sample_pdf(pages=1))
    (tmp_path / "p12.pass").write_text(P12_PASSPHRASE)

    done = kyso_cli(tmp_path / "h", "pdf", "sign", str(source), "-o", str(out), "--p12", str(p12),
                    "--p12-passphrase-file", str(tmp_path / "p12.pass"), "--level", "B-T",
                    "--online", "--tsa-url", f"{live_pki.url}/no-tsa-here")

    assert done.returncode == 1
    assert f"{live_pki.url}/no-tsa-here: the server answered HTTP 404" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--tsa-url", "http://127.0.0.1:1/tsa"], "--tsa-url goes with --online"),
    (["--online", "--level", "B-T"], "needs --tsa-url outside a CA home"),
])
def test_online_options_are_checked(live_pki: LivePki, tmp_path: Path, args: list[str],
                                    message: str) -> None:
    p12, _ = signer_p12(live_pki, tmp_path, 11)
    source = tmp_path / "don.pdf"
    source.write_bytes(sample_pdf(pages=1))
    (tmp_path / "p12.pass").write_text(P12_PASSPHRASE)

    done = kyso_cli(tmp_path / "h", "pdf", "sign", str(source), "-o", str(tmp_path / "o.pdf"),
                    "--p12", str(p12), "--p12-passphrase-file", str(tmp_path / "p12.pass"),
                    *args)

    assert done.returncode == 2
    assert message in done.stderr


# --- a hostile or broken server: the real answers, altered on the way -----------------------

def _services(live: LivePki, alter: object) -> HttpServices:
    def fetch(url: str, body: bytes | None, content_type: str | None) -> bytes:
        return alter(url, http_fetch(url, body, content_type))  # type: ignore[operator, no-any-return]
    return HttpServices(f"{live.url}/tsa", SystemClock(), fetch=fetch)


def _chain(live: LivePki, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
    return (cert, live.ca.certificate("staff"))


def test_an_ocsp_answer_replayed_without_our_nonce_is_refused(live_pki: LivePki) -> None:
    cert = live_pki.ca.certificate("staff")
    leaf = x509.load_pem_x509_certificate(live_pki.leaf.pem)
    stale: dict[str, bytes] = {}

    def replay(url: str, data: bytes) -> bytes:
        if "/ocsp/" in url:
            return stale.setdefault("answer", data)  # the first answer, served again
        return data

    services = _services(live_pki, replay)
    services.revocation((leaf, cert))

    with pytest.raises(SigningError, match="does not echo our nonce"):
        services.revocation((leaf, cert))


def test_an_ocsp_answer_about_another_certificate_is_refused(
        live_pki: LivePki, tmp_path: Path) -> None:
    _, other = signer_p12(live_pki, tmp_path, 12)
    leaf = x509.load_pem_x509_certificate(live_pki.leaf.pem)
    other_answer = _services(live_pki, lambda _u, d: d)._ocsp(other, live_pki.ca.certificate("staff"))[0]

    services = _services(live_pki, lambda url, d: other_answer if "/ocsp/" in url else d)

    with pytest.raises(SigningError, match="about another certificate"):
        services.revocation(_chain(live_pki, leaf))


def test_a_forged_ocsp_signature_is_refused(live_pki: LivePki) -> None:
    leaf = x509.load_pem_x509_certificate(live_pki.leaf.pem)

    def forge(url: str, data: bytes) -> bytes:
        if "/ocsp/" not in url:
            return data
        forged = bytearray(data)
        forged[-80] ^= 0x01  # inside the signature value, after the tbsResponseData
        return bytes(forged)

    with pytest.raises(SigningError, match=r"not signed by the issuer|not an OCSP response"):
        _services(live_pki, forge).revocation(_chain(live_pki, leaf))


def test_a_crl_signed_by_someone_else_is_refused(live_pki: LivePki) -> None:
    staff_ca = live_pki.ca.certificate("staff")
    other_crl = http_fetch(f"{live_pki.url}/crl/citizen.crl")

    services = _services(live_pki, lambda url, d: other_crl if url.endswith("/root.crl") else d)

    with pytest.raises(SigningError, match="the CRL is not signed by"):
        services.revocation((staff_ca, live_pki.ca.certificate("root")))


def test_garbage_from_the_tsa_is_refused(live_pki: LivePki) -> None:
    services = _services(live_pki, lambda url, d: b"<html>oops</html>" if url.endswith("/tsa") else d)

    with pytest.raises(SigningError, match="not an RFC 3161 TimeStampResp"):
        services.timestamp_token(bytes(32), "sha256")


def test_a_timestamp_over_another_digest_is_refused(live_pki: LivePki) -> None:
    real = HttpServices(f"{live_pki.url}/tsa", SystemClock())
    other = {}

    def swap(url: str, data: bytes) -> bytes:
        if url.endswith("/tsa"):
            other.setdefault("reply", data)
            return other["reply"]
        return data

    services = _services(live_pki, swap)
    services.timestamp_token(bytes(32), "sha256")

    with pytest.raises(SigningError, match="does not cover our digest"):
        services.timestamp_token(b"\x01" * 32, "sha256")
    assert real.tsa_chain()[0].extensions  # the TSA chain is fetched from a real token


def test_signing_in_process_with_http_services_gives_b_lt(live_pki: LivePki, tmp_path: Path) -> None:
    p12, _ = signer_p12(live_pki, tmp_path, 13)
    signer = load_signer(p12.read_bytes(), P12_PASSPHRASE, SystemClock(),
                         services=HttpServices(f"{live_pki.url}/tsa", SystemClock()))

    signed = signer.sign(sample_pdf(pages=1), SignRequest(level=Level.B_LT)).data

    assert b"/DSS" in signed
    assert b"/OCSPs" in signed
