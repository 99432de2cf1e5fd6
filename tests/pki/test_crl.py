"""CRL publication: numbering, entries, reason codes, validity, signature, files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from conftest import CITIZEN, STAFF, T0, audit_events
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import PassphraseError, PkiError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.crl import CRL_VALIDITY, publish_crl
from kyso.pki.lifecycle import hold, release, revoke
from kyso.pki.subjects import SubjectRequest


def issue_citizen(kyso: Kyso, ca: CertificateAuthority, n: int) -> str:
    values = {**CITIZEN, "id": f"033301000{n:03d}"}
    return issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**values)).record.serial


def publish(kyso: Kyso, ca: CertificateAuthority, name: str = "citizen"
            ) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(publish_crl(kyso, ca, name).der)


def entry(crl: x509.CertificateRevocationList, serial: str) -> x509.RevokedCertificate:
    found = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert found is not None, f"{serial} is not on the CRL"
    return found


def reason_of(revoked: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


def number_of(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# --- numbering and validity -------------------------------------------------------------------

def test_crl_number_increases_with_each_publication(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    results = [publish_crl(kyso, ca, "citizen") for _ in range(3)]
    assert [r.number for r in results] == [1, 2, 3]
    assert number_of(x509.load_der_x509_crl(results[-1].der)) == 3


def test_each_ca_has_its_own_crl_number(kyso: Kyso, ca: CertificateAuthority) -> None:
    publish_crl(kyso, ca, "staff")
    publish_crl(kyso, ca, "staff")
    assert publish_crl(kyso, ca, "citizen").number == 1
    assert publish_crl(kyso, ca, "staff").number == 3


def test_crl_is_valid_for_seven_days_from_now(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    clock.advance(dt.timedelta(hours=30))
    result = publish_crl(kyso, ca, "citizen")
    crl = x509.load_der_x509_crl(result.der)
    now = T0 + dt.timedelta(hours=30)
    assert crl.last_update_utc == now
    assert crl.next_update_utc == now + dt.timedelta(days=7)
    assert dt.timedelta(days=7) == CRL_VALIDITY
    assert (result.this_update, result.next_update) == (now, now + dt.timedelta(days=7))


def test_empty_crl_names_its_issuer_and_has_no_entries(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    crl = publish(kyso, ca, "staff")
    assert len(crl) == 0
    assert crl.issuer == ca.certificate("staff").subject
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate("staff").extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_crl_signature_verifies_with_the_issuing_cas_key_only(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial, reason="keyCompromise")
    crl = publish(kyso, ca, "citizen")
    assert crl.is_signature_valid(ca.certificate("citizen").public_key())  # type: ignore[arg-type]
    assert not crl.is_signature_valid(ca.certificate("staff").public_key())  # type: ignore[arg-type]
    assert not crl.is_signature_valid(ca.certificate("root").public_key())  # type: ignore[arg-type]
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA384)


def test_root_crl_can_be_published(kyso: Kyso, ca: CertificateAuthority) -> None:
    crl = publish(kyso, ca, "root")
    assert crl.issuer == ca.certificate("root").subject
    assert crl.is_signature_valid(ca.certificate("root").public_key())  # type: ignore[arg-type]


def test_unknown_ca_is_refused(kyso: Kyso, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="unknown CA 'tsa'"):
        publish_crl(kyso, ca, "tsa")


def test_wrong_passphrase_does_not_burn_a_crl_number(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    with pytest.raises(PassphraseError):
        publish_crl(kyso, CertificateAuthority(kyso, "not-the-passphrase"), "citizen")
    assert publish_crl(kyso, ca, "citizen").number == 1


# --- entries ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("reason", "flag"),
    [
        ("keyCompromise", x509.ReasonFlags.key_compromise),
        ("cACompromise", x509.ReasonFlags.ca_compromise),
        ("affiliationChanged", x509.ReasonFlags.affiliation_changed),
        ("superseded", x509.ReasonFlags.superseded),
        ("cessationOfOperation", x509.ReasonFlags.cessation_of_operation),
        ("privilegeWithdrawn", x509.ReasonFlags.privilege_withdrawn),
    ],
)
def test_revoked_certificate_is_listed_with_its_reason_code(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock, reason: str,
    flag: x509.ReasonFlags
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    clock.advance(dt.timedelta(hours=2))
    revoke(kyso, serial, reason=reason)
    clock.advance(dt.timedelta(hours=1))
    revoked = entry(publish(kyso, ca), serial)
    assert reason_of(revoked) is flag
    assert revoked.revocation_date_utc == T0 + dt.timedelta(hours=2)


def test_unspecified_reason_has_no_crl_reason_extension(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial, reason="unspecified")
    revoked = entry(publish(kyso, ca), serial)
    with pytest.raises(x509.ExtensionNotFound):
        revoked.extensions.get_extension_for_class(x509.CRLReason)


def test_invalidity_date_is_listed(kyso: Kyso, ca: CertificateAuthority) -> None:
    serial = issue_citizen(kyso, ca, 1)
    when = T0 - dt.timedelta(days=3)
    revoke(kyso, serial, reason="keyCompromise", invalidity_date=when)
    revoked = entry(publish(kyso, ca), serial)
    value = revoked.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert value.invalidity_date_utc == when


def test_no_invalidity_date_extension_when_none_was_given(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial, reason="keyCompromise")
    with pytest.raises(x509.ExtensionNotFound):
        entry(publish(kyso, ca), serial).extensions.get_extension_for_class(x509.InvalidityDate)


def test_held_certificate_is_listed_with_certificate_hold(
    kyso: Kyso, ca: CertificateAuthority
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    hold(kyso, serial)
    assert reason_of(entry(publish(kyso, ca), serial)) is x509.ReasonFlags.certificate_hold


def test_released_certificate_leaves_the_next_crl(kyso: Kyso, ca: CertificateAuthority) -> None:
    serial = issue_citizen(kyso, ca, 1)
    hold(kyso, serial)
    assert len(publish(kyso, ca)) == 1
    release(kyso, serial)
    crl = publish(kyso, ca)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is None
    assert len(crl) == 0


def test_valid_certificates_are_not_listed(kyso: Kyso, ca: CertificateAuthority) -> None:
    kept = issue_citizen(kyso, ca, 1)
    gone = issue_citizen(kyso, ca, 2)
    revoke(kyso, gone, reason="superseded")
    crl = publish(kyso, ca)
    assert [r.serial_number for r in crl] == [int(gone, 16)]
    assert crl.get_revoked_certificate_by_serial_number(int(kept, 16)) is None


def test_crl_lists_only_certificates_of_its_own_ca(kyso: Kyso, ca: CertificateAuthority) -> None:
    citizen = issue_citizen(kyso, ca, 1)
    staff = issuance.issue(kyso, ca, "staff", SubjectRequest.of(**STAFF)).record.serial
    revoke(kyso, citizen)
    revoke(kyso, staff)
    citizen_crl, staff_crl = publish(kyso, ca, "citizen"), publish(kyso, ca, "staff")
    assert [r.serial_number for r in citizen_crl] == [int(citizen, 16)]
    assert [r.serial_number for r in staff_crl] == [int(staff, 16)]
    assert len(publish(kyso, ca, "root")) == 0


def test_expired_revoked_certificate_leaves_the_crl(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial, reason="keyCompromise")
    clock.advance(dt.timedelta(days=365))  # exactly at notAfter: still listed
    assert len(publish(kyso, ca)) == 1
    clock.advance(dt.timedelta(seconds=1))
    assert len(publish(kyso, ca)) == 0


def test_several_entries_each_keep_their_own_details(
    kyso: Kyso, ca: CertificateAuthority, clock: FrozenClock
) -> None:
    a, b, c = (issue_citizen(kyso, ca, n) for n in (1, 2, 3))
    revoke(kyso, a, reason="keyCompromise")
    clock.advance(dt.timedelta(minutes=10))
    hold(kyso, b)
    clock.advance(dt.timedelta(minutes=10))
    revoke(kyso, c)
    crl = publish(kyso, ca)
    assert len(crl) == 3
    assert reason_of(entry(crl, a)) is x509.ReasonFlags.key_compromise
    assert reason_of(entry(crl, b)) is x509.ReasonFlags.certificate_hold
    assert reason_of(entry(crl, c)) is None
    assert entry(crl, b).revocation_date_utc == T0 + dt.timedelta(minutes=10)


# --- files and audit --------------------------------------------------------------------------

def test_crl_files_are_written_as_der_and_pem(kyso: Kyso, ca: CertificateAuthority) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial)
    result = publish_crl(kyso, ca, "citizen")
    assert result.der_path == kyso.settings.crl_dir / "citizen.crl"
    assert result.pem_path == kyso.settings.crl_dir / "citizen.crl.pem"
    assert result.der_path.read_bytes() == result.der
    pem_crl = x509.load_pem_x509_crl(result.pem_path.read_bytes())
    assert pem_crl == x509.load_der_x509_crl(result.der)
    assert result.entries == 1
    leftovers = [p.name for p in kyso.settings.crl_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_republishing_replaces_the_files(kyso: Kyso, ca: CertificateAuthority) -> None:
    publish_crl(kyso, ca, "citizen")
    second = publish_crl(kyso, ca, "citizen")
    on_disk = x509.load_der_x509_crl(second.der_path.read_bytes())
    assert number_of(on_disk) == 2


def test_crl_can_be_written_to_another_folder(
    kyso: Kyso, ca: CertificateAuthority, tmp_path: Path
) -> None:
    out = tmp_path / "public" / "crl"
    result = publish_crl(kyso, ca, "staff", out_dir=out)
    assert result.der_path == out / "staff.crl"
    assert (out / "staff.crl.pem").exists()
    assert not (kyso.settings.crl_dir / "staff.crl").exists()


def test_crl_result_to_dict_uses_vietnam_time(kyso: Kyso, ca: CertificateAuthority) -> None:
    data = publish_crl(kyso, ca, "citizen").to_dict()
    assert data["crl_number"] == 1
    assert data["this_update"] == "2026-11-23T09:00:00+07:00"
    assert data["next_update"] == "2026-11-30T09:00:00+07:00"
    assert data["entries"] == 0


def test_crl_publication_is_audited(kyso: Kyso, ca: CertificateAuthority) -> None:
    serial = issue_citizen(kyso, ca, 1)
    revoke(kyso, serial)
    publish_crl(kyso, ca, "citizen")
    event = audit_events(kyso)[-1]
    assert (event["action"], event["outcome"], event["object"]) == (
        "CRL_CREATION", "success", "citizen")
    assert event["details"]["crl_number"] == 1
    assert event["details"]["entries"] == 1
    assert event["details"]["next_update"] == (T0 + dt.timedelta(days=7)).isoformat()
