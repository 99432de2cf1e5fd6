"""Which audit-signer keys are trusted for which checkpoints (kyso.audit.trust): the chain to
the root, the audit-signer profile's usage, and the certificate's validity and revocation at
the checkpoint's signing time — each refusal naming its reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kyso.audit.proofs import AUDIT_SIGNER_POLICY
from kyso.audit.trust import (
    Revocation,
    SignerUsage,
    TrustedSigner,
    TrustError,
    certificate_signer,
    chain_to_root,
    check_signer_profile,
    shipped_usage,
)
from kyso.clock import vn_iso

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ORIGIN = "pki.thainguyen.gov.vn/kyso/audit"
USAGE = SignerUsage(frozenset({"digitalSignature"}), frozenset(), frozenset({AUDIT_SIGNER_POLICY}))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer: str, key: Any, signer: Any, *, ca: bool = False,
          path_length: int | None = None, valid: tuple[dt.datetime, dt.datetime] | None = None,
          key_usage: bool = True, policy: bool = True, eku: list[x509.ObjectIdentifier] | None = None
          ) -> x509.Certificate:
    not_before, not_after = valid or (T0 - 30 * DAY, T0 + 30 * DAY)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                              critical=True))
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
    if policy and not ca:
        builder = builder.add_extension(x509.CertificatePolicies([x509.PolicyInformation(
            x509.ObjectIdentifier(AUDIT_SIGNER_POLICY), None)]), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    algorithm = None if isinstance(signer, Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


class Hierarchy:
    """Root → services CA → audit signer, all Ed25519, valid T0 ± 30 days unless told."""

    def __init__(self, services_valid: tuple[dt.datetime, dt.datetime] | None = None) -> None:
        self.root_key, self.services_key, self.key = (Ed25519PrivateKey.generate()
                                                      for _ in range(3))
        self.root = _cert("Root CA G1", "Root CA G1", self.root_key, self.root_key, ca=True)
        self.services = _cert("Services CA G1", "Root CA G1", self.services_key, self.root_key,
                              ca=True, path_length=0, valid=services_valid)
        self.signer = _cert("Audit Log Signer G1", "Services CA G1", self.key, self.services_key)

    def trusted(self, revocation: Revocation | None = None) -> TrustedSigner:
        signer = certificate_signer(ORIGIN, self.signer, usage=USAGE, roots=[self.root],
                                    pool=[self.services], revocation=revocation)
        assert signer is not None
        return signer


# --- the usage the profile writes -------------------------------------------------------------

def test_the_shipped_profile_asks_for_digital_signature_and_the_audit_signer_policy() -> None:
    assert shipped_usage() == USAGE
    assert "1.3.6.1.4.1.32473.704.1.4.2" in shipped_usage().describe()


def test_a_certificate_issued_as_the_profile_says_is_an_audit_signer() -> None:
    h = Hierarchy()
    check_signer_profile(h.signer, USAGE)
    any_purpose = _cert("Audit", "Services CA G1", h.key, h.services_key,
                        eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    check_signer_profile(any_purpose, USAGE)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"ca": True}, "is a CA certificate, not an audit signer"),
    ({"key_usage": False}, "lacks the audit-signing usage: its key usage does not allow "
                           "digitalSignature"),
    ({"policy": False}, "lacks the audit-signing usage: it does not carry the audit-signer policy"),
    ({"eku": [ExtendedKeyUsageOID.TIME_STAMPING]}, "lacks the audit-signing usage: its extended "
                                                   "key usage limits it to 1.3.6.1.5.5.7.3.8"),
])
def test_a_certificate_outside_the_profile_lacks_the_audit_signing_usage(
        changes: dict[str, Any], reason: str) -> None:
    h = Hierarchy()
    cert = _cert("Audit Log Signer G1", "Services CA G1", h.key, h.services_key, **changes)
    with pytest.raises(TrustError, match=reason):
        check_signer_profile(cert, USAGE)


def test_a_profile_with_an_extended_key_usage_requires_it() -> None:
    h = Hierarchy()
    usage = SignerUsage(USAGE.key_usage, frozenset({ExtendedKeyUsageOID.CODE_SIGNING.dotted_string}),
                        USAGE.policies)
    with pytest.raises(TrustError, match=r"no extended key usage 1\.3\.6\.1\.5\.5\.7\.3\.3"):
        check_signer_profile(h.signer, usage)
    with_it = _cert("Audit", "Services CA G1", h.key, h.services_key,
                    eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    check_signer_profile(with_it, usage)


def test_a_signer_without_an_ed25519_key_is_not_a_checkpoint_signer() -> None:
    h = Hierarchy()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("Audit Log Signer G1", "Services CA G1", ec_key, h.services_key)
    with pytest.raises(TrustError, match="does not hold an Ed25519 key"):
        check_signer_profile(cert, USAGE)
    assert certificate_signer(ORIGIN, cert, usage=USAGE, roots=[h.root], pool=[h.services]) is None


# --- the chain ------------------------------------------------------------------------------------

def test_the_chain_runs_from_the_signer_to_the_root() -> None:
    h = Hierarchy()
    assert chain_to_root(h.signer, [h.services], [h.root]) == [h.signer, h.services, h.root]


def test_a_signer_from_another_root_is_not_issued_by_ours() -> None:
    h, other = Hierarchy(), Hierarchy()
    with pytest.raises(TrustError, match=r"audit-signer certificate Audit Log Signer G1 \(serial "
                       r"[0-9a-f]+\) is not issued by Root CA G1"):
        chain_to_root(other.signer, [other.services], [h.root])
    with pytest.raises(TrustError, match="is not issued by"):
        chain_to_root(h.signer, [], [h.root])  # the services CA missing
    with pytest.raises(TrustError, match=r"its chain ends at Root CA G1 \(serial "
                       f"{other.root.serial_number:x}\\), a root that is not trusted"):
        chain_to_root(other.signer, [other.services, other.root], [h.root])


def test_a_look_alike_issuer_with_another_key_is_caught_by_its_signature() -> None:
    h = Hierarchy()
    impostor_key = Ed25519PrivateKey.generate()
    impostor = _cert("Services CA G1", "Root CA G1", impostor_key, impostor_key, ca=True)
    with pytest.raises(TrustError, match=r"is not issued by Root CA G1 .*: Audit Log Signer G1 "
                       r"\(serial [0-9a-f]+\) is not signed by the Services CA G1"):
        chain_to_root(h.signer, [impostor], [h.root])


def test_a_ca_cannot_issue_below_its_path_length() -> None:
    h = Hierarchy()
    deeper_key = Ed25519PrivateKey.generate()
    deeper = _cert("Deeper CA", "Services CA G1", deeper_key, h.services_key, ca=True)
    signer = _cert("Audit Log Signer G1", "Deeper CA", h.key, deeper_key)
    with pytest.raises(TrustError, match="allows 0 CA certificate"):
        chain_to_root(signer, [deeper, h.services], [h.root])


def test_a_signer_failing_the_static_checks_carries_the_reason() -> None:
    h, other = Hierarchy(), Hierarchy()
    signer = certificate_signer(ORIGIN, other.signer, usage=USAGE, roots=[h.root],
                                pool=[other.services])
    assert signer is not None
    assert signer.problem is not None
    assert "is not issued by" in signer.problem
    assert signer.refusal(T0, T0) == signer.problem
    pinned = certificate_signer(ORIGIN, other.signer, usage=USAGE, pinned=True)
    assert pinned is not None
    assert (pinned.problem, pinned.chain) == (None, ())


# --- the time of the checkpoint ---------------------------------------------------------------

def test_a_pinned_key_without_certificate_is_trusted_at_any_time_but_the_future() -> None:
    signer = TrustedSigner(ORIGIN, Ed25519PrivateKey.generate().public_key())
    assert signer.refusal(T0 - 1000 * DAY, T0) is None
    assert signer.refusal(None, None) is None
    assert "after the time of verification" in (signer.refusal(T0 + DAY, T0) or "")
    assert signer.refusal(T0 + dt.timedelta(minutes=4), T0) is None  # clock skew allowed


def test_the_signer_must_be_valid_at_the_signing_time() -> None:
    h = Hierarchy()
    signer = h.trusted()
    assert signer.refusal(T0, T0) is None
    assert signer.refusal(T0 - 29 * DAY, T0 + 1000 * DAY) is None  # long expired now: still fine
    expired = signer.refusal(T0 + 31 * DAY, T0 + 31 * DAY)
    assert expired == (f"audit-signer certificate Audit Log Signer G1 (serial "
                       f"{h.signer.serial_number:x}) expired on {vn_iso(T0 + 30 * DAY)}; the "
                       f"checkpoint was signed at {vn_iso(T0 + 31 * DAY)}")
    early = signer.refusal(T0 - 31 * DAY, T0)
    assert early is not None
    assert f"was not yet valid ({vn_iso(T0 - 30 * DAY)})" in early


def test_every_ca_above_the_signer_must_be_valid_at_the_signing_time() -> None:
    h = Hierarchy(services_valid=(T0 - 30 * DAY, T0 - DAY))
    reason = h.trusted().refusal(T0, T0)
    assert reason is not None
    assert reason.startswith("CA certificate Services CA G1")
    assert f"expired on {vn_iso(T0 - DAY)}" in reason


def test_revocation_refuses_only_what_was_signed_from_its_time_on() -> None:
    h = Hierarchy()
    signer = h.trusted(Revocation(T0, "superseded"))
    assert signer.refusal(T0 - DAY, T0 + DAY) is None
    reason = signer.refusal(T0, T0 + DAY)
    assert reason is not None
    assert f"was revoked on {vn_iso(T0)} (superseded)" in reason
    assert signer.refusal(T0 + DAY, T0 + DAY) is not None


def test_an_invalidity_date_moves_the_refusal_earlier() -> None:
    h = Hierarchy()
    signer = h.trusted(Revocation(T0, "affiliationChanged", invalidity=T0 - 2 * DAY))
    assert signer.refusal(T0 - 3 * DAY, T0) is None
    reason = signer.refusal(T0 - DAY, T0)
    assert reason is not None
    assert f"invalidity date of {vn_iso(T0 - 2 * DAY)}" in reason


def test_a_key_compromise_refuses_every_checkpoint_whatever_its_date() -> None:
    h = Hierarchy()
    signer = h.trusted(Revocation(T0, "keyCompromise", invalidity=T0 - DAY))
    for when in (T0 - 20 * DAY, T0 - 2 * DAY, T0 + DAY, None):
        reason = signer.refusal(when, T0 + DAY)
        assert reason is not None
        assert "revoked for key compromise" in reason


def test_a_checkpoint_without_a_signing_time_is_judged_now() -> None:
    h = Hierarchy()
    signer = h.trusted()
    assert signer.refusal(None, T0) is None
    reason = signer.refusal(None, T0 + 31 * DAY)
    assert reason is not None
    assert "carries no signing time; judged at the time of verification" in reason
    assert "expired on" in reason
    assert "no verification time" in (signer.refusal(None, None) or "")
    held = h.trusted(Revocation(T0 - DAY, "certificateHold"))
    assert "was revoked on" in (held.refusal(None, T0) or "")
