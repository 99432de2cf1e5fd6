"""Which audit-signer keys a verifier trusts, and for which checkpoints.

A checkpoint counts only when the certificate of the key that signed it

1. **chains to the CA's root**: each certificate is signed by the next, every issuer is a CA
   allowed to issue at that depth (basic constraints, keyCertSign, path length);
2. **is an audit-signer certificate**: an end entity with the key usage, extended key usage
   and certificate policy that the ``audit-signer`` profile writes (:class:`SignerUsage`), and
   an Ed25519 key;
3. **was valid when the checkpoint was signed**: the time in the checkpoint's signed
   ``Timestamp:`` line lies within the validity of the certificate and of every CA above it,
   before the certificate's revocation (and before its invalidity date). A checkpoint signed
   while the certificate was valid stays valid after it expires or is superseded. A
   certificate revoked for ``keyCompromise`` vouches for nothing: the times its key signed
   are the key's own claim.

A checkpoint without a ``Timestamp:`` line (written before kyso signed one) is judged at the
time of verification. Pure logic: the caller gives the certificates, the revocation facts from
the store (if any) and the clock's ``now``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from kyso.clock import vn_iso
from kyso.pki.chains import signed_by
from kyso.pki.profiles import EXTENDED_KEY_USAGES, Profile, load_catalogue
from kyso.pki.serials import serial_hex

SIGNER_PROFILE = "audit-signer"
# A checkpoint dated later than this after the verifier's clock is refused (clock skew).
FUTURE_SLACK = dt.timedelta(minutes=5)
KEY_COMPROMISE = "keyCompromise"

_KEY_USAGE_ATTRIBUTES = {
    "digitalSignature": "digital_signature", "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment", "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement", "keyCertSign": "key_cert_sign", "cRLSign": "crl_sign",
}


class TrustError(Exception):
    """A certificate that cannot vouch for an audit-signer key (the message says why)."""


@dataclass(frozen=True)
class SignerUsage:
    """What the audit-signer profile writes into its certificates."""

    key_usage: frozenset[str]  # profile names: digitalSignature, …
    extended_key_usage: frozenset[str]  # dotted OIDs
    policies: frozenset[str]  # dotted OIDs

    @classmethod
    def of_profile(cls, profile: Profile) -> SignerUsage:
        return cls(frozenset(profile.key_usage),
                   frozenset(EXTENDED_KEY_USAGES[e].dotted_string
                             for e in profile.extended_key_usage),
                   frozenset(profile.policy_oids))

    def describe(self) -> str:
        parts = [f"key usage {', '.join(sorted(self.key_usage))}"]
        if self.extended_key_usage:
            parts.append(f"extended key usage {', '.join(sorted(self.extended_key_usage))}")
        if self.policies:
            parts.append(f"certificate policy {', '.join(sorted(self.policies))}")
        return "; ".join(parts)


@lru_cache(maxsize=1)
def shipped_usage() -> SignerUsage:
    """The usage of the shipped ``audit-signer`` profile: what an auditor without a kyso home
    checks (``kyso audit verify-proof``)."""
    return SignerUsage.of_profile(load_catalogue().get(SIGNER_PROFILE))


def label(cert: x509.Certificate) -> str:
    """``CN=… (serial …)``: how refusals name a certificate."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string() or "(no subject)"
    return f"{name} (serial {serial_hex(cert.serial_number)})"


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return isinstance(constraints, x509.BasicConstraints) and constraints.ca


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # a duplicated or malformed extension
        raise TrustError(f"certificate {label(cert)} has a malformed extension ({exc})") from None


def check_signer_profile(cert: x509.Certificate, usage: SignerUsage) -> None:
    """``cert`` must be what the audit-signer profile issues: an end entity with its key
    usage, no extended key usage that excludes checkpoint signing, and its policy."""
    name = label(cert)
    if _is_ca(cert):
        raise TrustError(f"certificate {name} is a CA certificate, not an audit signer")
    key_usage = _extension(cert, x509.KeyUsage)
    assert key_usage is None or isinstance(key_usage, x509.KeyUsage)
    missing = sorted(u for u in usage.key_usage
                     if key_usage is None or not getattr(key_usage, _KEY_USAGE_ATTRIBUTES[u]))
    if missing:
        raise TrustError(f"certificate {name} lacks the audit-signing usage: its key usage does "
                         f"not allow {', '.join(missing)}")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        assert isinstance(eku, x509.ExtendedKeyUsage)
        have = {o.dotted_string for o in eku}
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string not in have:
            if not usage.extended_key_usage:
                raise TrustError(f"certificate {name} lacks the audit-signing usage: its extended "
                                 f"key usage limits it to {', '.join(sorted(have))}")
            if not usage.extended_key_usage <= have:
                raise TrustError(f"certificate {name} lacks the audit-signing usage: extended key "
                                 f"usage {', '.join(sorted(usage.extended_key_usage - have))}")
    elif usage.extended_key_usage:
        raise TrustError(f"certificate {name} lacks the audit-signing usage: no extended key "
                         f"usage {', '.join(sorted(usage.extended_key_usage))}")
    policies = _extension(cert, x509.CertificatePolicies)
    held = {p.policy_identifier.dotted_string for p in policies} \
        if isinstance(policies, x509.CertificatePolicies) else set()
    if not usage.policies <= held:
        raise TrustError(f"certificate {name} lacks the audit-signing usage: it does not carry the "
                         f"audit-signer policy {', '.join(sorted(usage.policies - held))}")
    if not isinstance(cert.public_key(), Ed25519PublicKey):
        raise TrustError(f"certificate {name} does not hold an Ed25519 key (checkpoints are "
                         "signed with Ed25519)")


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """``issuer`` signs with ``below`` CA certificates under it: it must be a CA allowed to
    sign certificates at that depth."""
    name = label(issuer)
    if not _is_ca(issuer):
        raise TrustError(f"certificate {name} issued another certificate but is not a CA")
    usage = _extension(issuer, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise TrustError(f"CA certificate {name} may not sign certificates (key usage)")
    constraints = _extension(issuer, x509.BasicConstraints)
    limit = constraints.path_length if isinstance(constraints, x509.BasicConstraints) else None
    if limit is not None and below > limit:
        raise TrustError(f"CA certificate {name} allows {limit} CA certificate(s) below it, "
                         f"the chain has {below}")


def chain_to_root(cert: x509.Certificate, pool: Sequence[x509.Certificate],
                  roots: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The path from ``cert`` (first) up to one of ``roots`` (last), through ``pool``, each
    certificate signed by the next; raise TrustError naming where it breaks."""
    if not roots:
        raise TrustError("no trusted root to check the audit-signer certificate against")
    not_ours = f"audit-signer certificate {label(cert)} is not issued by " \
               f"{', '.join(label(r) for r in roots)}"
    path = [cert]
    candidates = list(pool) + list(roots)
    current = cert
    for depth in range(len(candidates) + 1):
        if current in roots:
            return path
        if current.issuer == current.subject and signed_by(current, current):
            raise TrustError(f"{not_ours}: its chain ends at {label(current)}, a root that is "
                             "not trusted")
        named = [c for c in candidates if c.subject == current.issuer and c not in path]
        issuer = next((c for c in named if signed_by(current, c)), None)
        if issuer is None:
            if named:  # a certificate of that name, but not the key that signed
                raise TrustError(f"{not_ours}: {label(current)} is not signed by the "
                                 f"{label(named[0])} it names as issuer")
            break
        _check_issuer(issuer, depth)
        path.append(issuer)
        current = issuer
    raise TrustError(f"{not_ours} (it does not chain to a trusted root)")


@dataclass(frozen=True)
class Revocation:
    """What the CA's store records about a revoked (or held) certificate."""

    time: dt.datetime
    reason: str
    invalidity: dt.datetime | None = None


@dataclass(frozen=True)
class TrustedSigner:
    """A key trusted to sign checkpoints of the log ``name``, and the certificates that vouch
    for it. Without a ``certificate`` the key itself is pinned (a verifier key, a test key):
    no dates apply. ``problem`` is set when the certificate can never vouch for the key."""

    name: str
    key: Ed25519PublicKey
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()  # the CAs above it, up to the root
    revocation: Revocation | None = None
    problem: str | None = None
    what: str = field(default="audit-signer certificate")

    def refusal(self, signed_at: dt.datetime | None, now: dt.datetime | None) -> str | None:
        """Why a checkpoint signed at ``signed_at`` (None: it carries no time) must not be
        trusted on this signer's word, or None when it may."""
        if self.problem is not None:
            return self.problem
        if signed_at is not None and now is not None and signed_at > now + FUTURE_SLACK:
            return (f"the checkpoint claims to be signed at {vn_iso(signed_at)}, after the time "
                    f"of verification ({vn_iso(now)})")
        if self.certificate is None:
            return None
        cert = self.certificate
        name = label(cert)
        revoked = self.revocation
        if revoked is not None and revoked.reason == KEY_COMPROMISE:
            return (f"{self.what} {name} was revoked for key compromise on "
                    f"{vn_iso(revoked.time)}: no checkpoint signed with its key can be trusted "
                    "(the signing times are the key's own claim)")
        when, how = signed_at, "the checkpoint was signed at"
        if when is None:
            if now is None:
                return ("the checkpoint carries no signing time (no Timestamp line), and no "
                        "verification time was given to judge it by")
            when, how = now, "the checkpoint carries no signing time; judged at the time of verification,"
        for i, c in enumerate((cert, *self.chain)):
            what = self.what if i == 0 else "CA certificate"
            if when > c.not_valid_after_utc:
                return (f"{what} {label(c)} expired on {vn_iso(c.not_valid_after_utc)}; "
                        f"{how} {vn_iso(when)}")
            if when < c.not_valid_before_utc:
                return (f"{what} {label(c)} was not yet valid ({vn_iso(c.not_valid_before_utc)}); "
                        f"{how} {vn_iso(when)}")
        if revoked is not None:
            if signed_at is None or signed_at >= revoked.time:
                return (f"{self.what} {name} was revoked on {vn_iso(revoked.time)} "
                        f"({revoked.reason}); {how} {vn_iso(when)}")
            if revoked.invalidity is not None and signed_at >= revoked.invalidity:
                return (f"{self.what} {name} was revoked ({revoked.reason}) with an invalidity "
                        f"date of {vn_iso(revoked.invalidity)}; {how} {vn_iso(when)}")
        return None


TrustAnchor = TrustedSigner | tuple[str, Ed25519PublicKey]
"""What verifiers accept as trust: a :class:`TrustedSigner`, or a bare ``(name, key)`` pair
whose key the caller pins."""


def as_signers(trusted: Sequence[TrustAnchor]) -> list[TrustedSigner]:
    return [t if isinstance(t, TrustedSigner) else TrustedSigner(t[0], t[1]) for t in trusted]


def certificate_signer(name: str, cert: x509.Certificate, *, usage: SignerUsage,
                       roots: Sequence[x509.Certificate] = (),
                       pool: Sequence[x509.Certificate] = (), pinned: bool = False,
                       revocation: Revocation | None = None) -> TrustedSigner | None:
    """The signer ``cert`` vouches for, after the checks that do not depend on time (chain to
    one of ``roots`` through ``pool`` unless the auditor ``pinned`` this very certificate, and
    the profile's usage). A certificate that fails them becomes a signer with a ``problem``,
    so that its checkpoints are refused by name; None when it holds no Ed25519 key at all."""
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    chain: list[x509.Certificate] = []
    problem = None
    try:
        if not pinned:
            chain = chain_to_root(cert, pool, roots)[1:]
        check_signer_profile(cert, usage)
    except TrustError as exc:
        problem = str(exc)
    except ValueError as exc:  # a certificate cryptography cannot fully read
        problem = f"audit-signer certificate (serial {serial_hex(cert.serial_number)}) cannot be " \
                  f"read: {exc}"
    return TrustedSigner(name, key, cert, tuple(chain), revocation, problem)
