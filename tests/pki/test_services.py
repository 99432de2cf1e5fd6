"""Unlocking service keys: current certificate, key match, validity, chain, clear errors."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import PASSPHRASE, audit_events
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import PassphraseError, PkiError
from kyso.pki.authority import CertificateAuthority, list_services
from kyso.pki.keys import KeyType, generate_key, save_private_key, spki_sha256
from kyso.pki.lifecycle import revoke
from kyso.pki.serials import serial_hex
from kyso.pki.services import SERVICE_NAMES, unlock_service


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_service_names_are_the_ones_init_creates() -> None:
    assert SERVICE_NAMES == ("ocsp-staff", "ocsp-citizen", "ocsp-services", "tsa", "audit-signer")


def test_unlock_tsa_gives_certificate_matching_key_and_chain(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    service = unlock_service(kyso, PASSPHRASE, "tsa")
    assert service.name == "tsa"
    assert common_name(service.certificate).endswith("Time Stamping Authority G1")
    assert spki_sha256(service.key.public_key()) == spki_sha256(service.certificate.public_key())
    assert service.chain == (ca.certificate("services"), ca.certificate("root"))
    assert service.certificate.issuer == service.chain[0].subject


@pytest.mark.parametrize("ca_name", ["staff", "citizen", "services"])
def test_unlock_each_ocsp_responder(kyso: Kyso, ca: CertificateAuthority, ca_name: str) -> None:
    service = unlock_service(kyso, PASSPHRASE, f"ocsp-{ca_name}")
    assert service.chain == (ca.certificate(ca_name), ca.certificate("root"))
    assert common_name(service.certificate).endswith("OCSP Responder")


def test_repr_never_shows_the_key(kyso: Kyso, ca: CertificateAuthority) -> None:
    text = repr(unlock_service(kyso, PASSPHRASE, "tsa"))
    assert "key=" not in text
    assert "PrivateKey" not in text
    assert "name='tsa'" in text


def test_wrong_passphrase_names_the_service_and_is_audited(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(PassphraseError, match="cannot unlock the tsa service key"):
        unlock_service(kyso, "not-the-passphrase", "tsa")
    last = audit_events(kyso)[-1]
    assert (last["action"], last["outcome"], last["object"]) == ("CA_KEYACTIVATE", "failure", "tsa")
    assert "not-the-passphrase" not in str(last)


def test_unknown_service_is_refused_with_the_list(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="unknown service 'ocsp-root'; services: ocsp-staff"):
        unlock_service(kyso, PASSPHRASE, "ocsp-root")


def test_no_ca_means_no_service(kyso: Kyso) -> None:
    with pytest.raises(PkiError, match="no valid tsa certificate"):
        unlock_service(kyso, PASSPHRASE, "tsa")


def test_revoked_service_certificate_is_not_used(kyso: Kyso, ca: CertificateAuthority) -> None:
    tsa = next(s for s in list_services(kyso) if s.name == "tsa")
    revoke(kyso, serial_hex(tsa.certificate.serial_number), reason="superseded")
    with pytest.raises(PkiError, match="no valid tsa certificate"):
        unlock_service(kyso, PASSPHRASE, "tsa")


def test_expired_service_certificate_is_refused(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    clock.advance(dt.timedelta(days=31))  # OCSP responder certificates live 30 days
    with pytest.raises(PkiError, match="the ocsp-staff certificate is not valid now"):
        unlock_service(kyso, PASSPHRASE, "ocsp-staff")
    assert unlock_service(kyso, PASSPHRASE, "tsa").name == "tsa"  # six years


def test_key_file_not_matching_the_certificate_is_refused(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    info = next(s for s in list_services(kyso) if s.name == "tsa")
    info.key_file.unlink()
    save_private_key(info.key_file, generate_key(KeyType.EC_P256), PASSPHRASE, 2000)
    with pytest.raises(PkiError, match="does not match the tsa certificate"):
        unlock_service(kyso, PASSPHRASE, "tsa")
