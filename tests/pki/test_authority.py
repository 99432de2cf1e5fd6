from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from conftest import BASE_URL, PASSPHRASE, audit_text
from kyso.context import Kyso
from kyso.errors import CAExistsError, ConfigError, InvalidIdentifierError, PassphraseError, PkiError
from kyso.pki.authority import (
    CertificateAuthority,
    chain_pem,
    check_base_url,
    init_ca,
    list_authorities,
    list_services,
)
from kyso.pki.keys import KeyType


def test_hierarchy_has_root_three_issuing_cas_and_services(ca: CertificateAuthority, kyso: Kyso) -> None:
    auths = {a.name: a for a in list_authorities(kyso)}
    assert list(auths) == ["root", "staff", "citizen", "services"]
    root = auths["root"].certificate
    assert root.subject == root.issuer
    for name in ("staff", "citizen", "services"):
        cert = auths[name].certificate
        assert cert.issuer == root.subject
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical
        assert bc.value.ca
        assert bc.value.path_length == 0
        cert.verify_directly_issued_by(root)
    services = {s.name: s for s in list_services(kyso)}
    assert set(services) == {"ocsp-staff", "ocsp-citizen", "ocsp-services", "tsa", "audit-signer"}
    assert services["ocsp-staff"].parent == "staff"
    assert services["tsa"].parent == "services"


def test_only_the_staff_ca_carries_name_constraints(ca: CertificateAuthority) -> None:
    nc = ca.certificate("staff").extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    permitted = nc.value.permitted_subtrees or []
    emails = [g.value for g in permitted if isinstance(g, x509.RFC822Name)]
    assert emails == ["thainguyen.gov.vn", ".thainguyen.gov.vn"]
    dirs = [g.value.rfc4514_string() for g in permitted if isinstance(g, x509.DirectoryName)]
    assert dirs == ["O=UBND tỉnh Thái Nguyên,ST=Thái Nguyên,C=VN"]
    with pytest.raises(x509.ExtensionNotFound):
        ca.certificate("citizen").extensions.get_extension_for_class(x509.NameConstraints)


def test_ca_and_service_keys_are_encrypted_and_private(ca: CertificateAuthority, kyso: Kyso) -> None:
    keys = sorted(kyso.settings.ca_dir.glob("*.key.pem"))
    assert len(keys) == 9
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(kyso.settings.ca_dir.stat().st_mode) == 0o700


def test_init_over_an_existing_ca_is_refused_and_changes_nothing(
        ca: CertificateAuthority, kyso: Kyso) -> None:
    before = {p.name: p.read_bytes() for p in kyso.settings.ca_dir.iterdir()}
    with pytest.raises(CAExistsError):
        init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên", province="thai-nguyen",
                key_type=KeyType.EC_P384, base_url=BASE_URL)
    assert {p.name: p.read_bytes() for p in kyso.settings.ca_dir.iterdir()} == before


def test_init_refuses_leftover_key_files_without_a_database_row(kyso: Kyso) -> None:
    kyso.settings.ca_dir.mkdir(parents=True)
    (kyso.settings.ca_dir / "root.key.pem").write_text("left over")
    with pytest.raises(CAExistsError):
        init_ca(kyso, passphrase=PASSPHRASE, org="UBND", province="thai-nguyen",
                key_type=KeyType.EC_P384, base_url=BASE_URL)


def test_wrong_passphrase_is_refused_and_recorded(ca: CertificateAuthority, kyso: Kyso) -> None:
    wrong = CertificateAuthority(kyso, "not the passphrase")
    with pytest.raises(PassphraseError, match="wrong CA passphrase"):
        wrong.issuer("staff")
    text = audit_text(kyso)
    assert '"CA_KEYACTIVATE"' in text
    assert "not the passphrase" not in text


def test_key_file_swapped_for_another_key_is_detected(ca: CertificateAuthority, kyso: Kyso) -> None:
    d = kyso.settings.ca_dir
    (d / "staff.key.pem").write_bytes((d / "citizen.key.pem").read_bytes())
    with pytest.raises(PkiError, match="does not match"):
        CertificateAuthority(kyso, PASSPHRASE).issuer("staff")


def test_chain_export_goes_from_issuing_ca_to_root(ca: CertificateAuthority, kyso: Kyso) -> None:
    certs = x509.load_pem_x509_certificates(chain_pem(kyso, "staff"))
    assert [c.subject for c in certs] == [ca.certificate("staff").subject, ca.certificate("root").subject]


@pytest.mark.parametrize(("province", "error"), [("atlantis", InvalidIdentifierError)])
def test_unknown_province_is_refused(kyso: Kyso, province: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="unknown province"):
        init_ca(kyso, passphrase=PASSPHRASE, org="UBND", province=province,
                key_type=KeyType.EC_P384, base_url=BASE_URL)


def test_short_ca_passphrase_is_refused_before_anything_is_written(kyso: Kyso) -> None:
    with pytest.raises(ConfigError, match="at least"):
        init_ca(kyso, passphrase="short", org="UBND", province="thai-nguyen",
                key_type=KeyType.EC_P384, base_url=BASE_URL)
    assert not kyso.settings.ca_dir.exists()


@pytest.mark.parametrize("url", ["ftp://x", "pki.gov.vn", "http://", "http://h/x?y=1", ""])
def test_unusable_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        check_base_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost", "http://10.1.2.3"])
def test_internal_base_url_is_accepted_with_a_warning(url: str) -> None:
    cleaned, warnings = check_base_url(url + "/")
    assert cleaned == url
    assert any("internal name" in w for w in warnings)


def test_public_base_url_gives_no_warning() -> None:
    assert check_base_url("http://pki.thainguyen.gov.vn") == ("http://pki.thainguyen.gov.vn", [])


def test_rsa_4096_hierarchy_signs_with_sha256(tmp_path: Path) -> None:
    from conftest import T0
    from kyso.clock import FrozenClock
    from kyso.config import load_settings
    from kyso.context import open_kyso

    ctx = open_kyso(load_settings(home=tmp_path / "rsa", environ={}), clock=FrozenClock(T0))
    try:
        result = init_ca(ctx, passphrase=PASSPHRASE, org="UBND tỉnh Tây Ninh", province="tay-ninh",
                         key_type=KeyType.RSA_4096, base_url="http://pki.tayninh.gov.vn")
        root = result.authorities[0].certificate
        assert root.public_key().key_size == 4096  # type: ignore[union-attr]
        assert root.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"
        assert result.settings.email_domain == "tayninh.gov.vn"
        # The production default protects CA keys with 600 000 PBKDF2 iterations (0x927C0),
        # in a PKCS#8 file OpenSSL reads.
        key_file = ctx.settings.ca_dir / "root.key.pem"
        parsed = subprocess.run(["openssl", "asn1parse", "-in", str(key_file)],
                                capture_output=True, text=True, check=True).stdout
        assert "PBKDF2" in parsed
        assert ":0927C0" in parsed
        assert "hmacWithSHA256" in parsed
        assert "aes-256-cbc" in parsed
    finally:
        ctx.close()


@pytest.mark.parametrize("url", ["http://a b.vn/x", "http://pki.vn:99999", "http://[::1",
                                 "http://pki.thái.vn", 'http://pki.vn/"x"', "http://pki.vn/<x>"])
def test_base_url_that_would_write_junk_into_every_certificate_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        check_base_url(url)
