"""The repository routes of ``kyso serve``: CA certificates (``/crt/<ca>.crt``) and CRLs
(``/crl/<ca>.crl``) at the addresses inside the certificates, published when due and never
served past their nextUpdate; and OpenSSL fetching them from a live server."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from pki_server_support import OCSP_TYPE, LivePki, fetch, make_app, ocsp_request, run
from server_support import ISSUER, TestClient

from conftest import T0, audit_events
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CA_NAMES, CertificateAuthority
from kyso.pki.crl import CRL_VALIDITY, publish_crl
from kyso.pki.lifecycle import revoke
from kyso.pki.records import CertificateRecord

pytest_plugins = ("pki_server_fixtures",)


def crl_of(answer: httpx.Response) -> x509.CertificateRevocationList:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(answer.content)


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def crl_events(kyso: Kyso) -> list[str]:
    return [e["object"] for e in audit_events(kyso) if e["action"] == "CRL_CREATION"]


# --- CA certificates ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", CA_NAMES)
def test_each_ca_certificate_is_served_in_der(
    pki_http: TestClient, ca: CertificateAuthority, name: str,
) -> None:
    answer = pki_http.get(f"/crt/{name}.crt")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(answer.content) == ca.certificate(name)
    assert answer.headers["cache-control"] == "max-age=86400, public, no-transform"
    again = pki_http.get(f"/crt/{name}.crt", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/crt/nope.crt", "/crt/ocsp-staff.crt", "/crl/nope.crl",
                                  "/crl/...crl", "/crl/staff%00.crl", "/crt/" + "x" * 500 + ".crt"])
def test_unknown_names_are_404(pki_http: TestClient, path: str) -> None:
    answer = pki_http.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_ca"
    assert answer.json()["error_description"].endswith("CAs: root, staff, citizen, services")
    assert len(answer.json()["error_description"]) < 200


def test_other_paths_are_not_found(pki_http: TestClient) -> None:
    assert pki_http.get("/crt/root.pem").status_code == 404
    assert pki_http.get("/crl/staff.crl.pem").status_code == 404


def test_head_gives_the_headers_only(pki_http: TestClient) -> None:
    answer = pki_http.head("/crt/root.crt")
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-type"] == "application/pkix-cert"


# --- CRLs --------------------------------------------------------------------------------------

def test_first_request_publishes_and_later_ones_serve_that_file(
    pki_http: TestClient, kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock,
) -> None:
    first = crl_of(pki_http.get("/crl/staff.crl"))
    assert number(first) == 1
    assert first.issuer == ca.certificate("staff").subject
    assert first.is_signature_valid(ca.certificate("staff").public_key())  # type: ignore[arg-type]
    assert (kyso.settings.crl_dir / "staff.crl").read_bytes() == \
        first.public_bytes(serialization.Encoding.DER)
    clock.advance(dt.timedelta(hours=23))
    assert number(crl_of(pki_http.get("/crl/staff.crl"))) == 1
    assert crl_events(kyso) == ["staff"]


def test_crl_headers_let_caches_keep_it_until_next_update(
    pki_http: TestClient, clock: FrozenClock,
) -> None:
    first = pki_http.get("/crl/citizen.crl")
    assert first.headers["cache-control"] == \
        f"max-age={int(CRL_VALIDITY.total_seconds())}, public, no-transform, must-revalidate"
    assert first.headers["last-modified"] == "Mon, 23 Nov 2026 02:00:00 GMT"
    assert first.headers["expires"] == "Mon, 30 Nov 2026 02:00:00 GMT"
    clock.advance(dt.timedelta(hours=1))
    again = pki_http.get("/crl/citizen.crl", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"].startswith(
        f"max-age={int((CRL_VALIDITY - dt.timedelta(hours=1)).total_seconds())},")


def test_root_crl_is_served_for_the_issuing_ca_certificates(
    pki_http: TestClient, ca: CertificateAuthority,
) -> None:
    crl = crl_of(pki_http.get("/crl/root.crl"))
    assert crl.issuer == ca.certificate("root").subject
    cdp = ca.certificate("staff").extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert cdp.value[0].full_name[0].value.endswith("/crl/root.crl")  # type: ignore[index, union-attr]


def test_a_crl_published_by_the_admin_is_served_as_it_is(
    pki_http: TestClient, kyso: Kyso, ca: CertificateAuthority, staff_cert: CertificateRecord,
) -> None:
    revoke(kyso, staff_cert.serial, reason="superseded")
    published = publish_crl(kyso, ca, "staff")
    answer = pki_http.get("/crl/staff.crl")
    assert answer.content == published.der
    entry = crl_of(answer).get_revoked_certificate_by_serial_number(
        staff_cert.certificate.serial_number)
    assert entry is not None
    assert crl_events(kyso) == ["staff"]  # nothing published by the server


def test_a_crl_past_the_publication_interval_is_replaced(
    pki_http: TestClient, kyso: Kyso, ca: CertificateAuthority, staff_cert: CertificateRecord,
    clock: FrozenClock,
) -> None:
    publish_crl(kyso, ca, "staff")
    clock.advance(dt.timedelta(hours=12))
    revoke(kyso, staff_cert.serial, reason="keyCompromise")
    clock.advance(dt.timedelta(hours=12))  # 24 h: due for the next publication
    crl = crl_of(pki_http.get("/crl/staff.crl"))
    assert number(crl) == 2
    assert crl.last_update_utc == T0 + dt.timedelta(hours=24)
    assert crl.get_revoked_certificate_by_serial_number(staff_cert.certificate.serial_number)
    events = [e for e in audit_events(kyso) if e["action"] == "CRL_CREATION"]
    assert events[-1]["actor"] == "admin:test"  # the app shares the test's Kyso context
    assert events[-1]["details"]["crl_number"] == 2


def test_concurrent_requests_publish_one_crl(
    pki_http: TestClient, kyso: Kyso,
) -> None:
    numbers: list[int] = []

    def worker() -> None:
        numbers.append(number(crl_of(pki_http.get("/crl/services.crl"))))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert numbers == [1] * 6
    assert crl_events(kyso) == ["services"]


def test_without_the_passphrase_a_valid_crl_is_served_and_an_expired_one_is_503(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock,
) -> None:
    with TestClient(make_app(kyso, ca_passphrase=None), base_url=ISSUER) as http:
        none = http.get("/crl/staff.crl")
        assert none.status_code == 503
        assert none.json()["error"] == "crl_unavailable"
        assert "no valid CRL of the staff CA has been published" in \
            none.json()["error_description"]
        assert "kyso crl publish --ca staff" in none.json()["error_description"]
        published = publish_crl(kyso, ca, "staff")
        clock.advance(dt.timedelta(days=3))  # past the publication interval, not the nextUpdate
        assert http.get("/crl/staff.crl").content == published.der
        clock.advance(dt.timedelta(days=4))
        expired = http.get("/crl/staff.crl")
        assert expired.status_code == 503
        assert "the CRL of the staff CA expired at 2026-11-30T09:00:00+07:00" in \
            expired.json()["error_description"]


def test_a_file_that_is_not_the_cas_crl_is_never_served(
    pki_http: TestClient, kyso: Kyso, ca: CertificateAuthority,
) -> None:
    publish_crl(kyso, ca, "citizen")
    folder = kyso.settings.crl_dir
    (folder / "staff.crl").write_bytes((folder / "citizen.crl").read_bytes())  # another CA's
    crl = crl_of(pki_http.get("/crl/staff.crl"))
    assert crl.issuer == ca.certificate("staff").subject
    (folder / "root.crl").write_bytes(b"garbage")
    assert crl_of(pki_http.get("/crl/root.crl")).issuer == ca.certificate("root").subject


def test_a_publication_failure_is_503_naming_it(
    kyso: Kyso, ca: CertificateAuthority, pki_http: TestClient,
) -> None:
    folder = kyso.settings.crl_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")
    answer = pki_http.get("/crl/staff.crl")
    assert answer.status_code == 503
    assert "exists and is not a directory" in answer.json()["error_description"]


# --- the addresses inside the certificates, on a live server -----------------------------------

def urls_of(cert: x509.Certificate) -> dict[str, str]:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    found = {"crl": str(cdp[0].full_name[0].value)}  # type: ignore[index]
    for description in aia:
        kind = "ocsp" if description.access_method == AuthorityInformationAccessOID.OCSP \
            else "ca_issuers"
        found[kind] = str(description.access_location.value)
    return found


@pytest.mark.external
def test_the_urls_inside_an_issued_certificate_resolve(live_pki: LivePki) -> None:
    urls = urls_of(live_pki.leaf.certificate)
    assert urls == {"crl": f"{live_pki.url}/crl/staff.crl", "ocsp": f"{live_pki.url}/ocsp/staff",
                    "ca_issuers": f"{live_pki.url}/crt/staff.crt"}
    staff = live_pki.ca.certificate("staff")
    issuer = fetch(urls["ca_issuers"])
    assert x509.load_der_x509_certificate(issuer.content) == staff
    crl = x509.load_der_x509_crl(fetch(urls["crl"]).content)
    assert crl.is_signature_valid(staff.public_key())  # type: ignore[arg-type]
    answer = httpx.post(urls["ocsp"], content=ocsp_request(live_pki.leaf.certificate, staff),
                        headers=OCSP_TYPE, timeout=30)
    assert answer.status_code == 200
    # and the issuing CA's own addresses, up to the root
    upper = urls_of(staff)
    assert x509.load_der_x509_certificate(fetch(upper["ca_issuers"]).content) == \
        live_pki.ca.certificate("root")
    assert x509.load_der_x509_crl(fetch(upper["crl"]).content).issuer == \
        live_pki.ca.certificate("root").subject


@pytest.mark.external
def test_openssl_reads_the_crl_and_the_certificate(
    openssl: str, live_pki: LivePki, tmp_path: Path,
) -> None:
    crl_file, crt_file = tmp_path / "staff.crl", tmp_path / "staff.crt"
    crl_file.write_bytes(fetch(f"{live_pki.url}/crl/staff.crl").content)
    crt_file.write_bytes(fetch(f"{live_pki.url}/crt/staff.crt").content)
    crl = run(openssl, "crl", "-inform", "DER", "-in", str(crl_file), "-noout", "-text",
              "-CAfile", str(live_pki.files["staff"]))
    assert crl.returncode == 0, crl.stderr
    assert "verify OK" in crl.stderr + crl.stdout
    assert "X509v3 CRL Number: \n                1" in crl.stdout
    crt = run(openssl, "x509", "-inform", "DER", "-in", str(crt_file), "-noout", "-subject")
    assert crt.returncode == 0, crt.stderr
    assert "Staff CA G1" in crt.stdout


@pytest.mark.external
def test_openssl_verify_downloads_the_crls_from_the_certificates(
    openssl: str, live_pki: LivePki, tmp_path: Path,
) -> None:
    """``openssl verify -crl_download`` fetches each CRL from the CRL distribution point inside
    the certificate: the leaf's from /crl/staff.crl, the staff CA's from /crl/root.crl."""
    files = live_pki.files
    root_crl = tmp_path / "root.crl"  # the root itself has no CRL distribution point
    root_crl.write_bytes(fetch(f"{live_pki.url}/crl/root.crl").content)
    args = [openssl, "verify", "-crl_download", "-crl_check_all", "-CAfile", str(files["root"]),
            "-CRLfile", str(root_crl), "-untrusted", str(files["staff"]), str(files["leaf"])]
    good = run(*args)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"{files['leaf']}: OK" in good.stdout
    revoke(live_pki.kyso, live_pki.leaf.serial, reason="keyCompromise")
    publish_crl(live_pki.kyso, live_pki.ca, "staff")
    revoked = run(*args)
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
