"""Small certificate-chain facts shared by the verifiers (audit trust, online validation)."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature

__all__ = ["signed_by"]


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` and its subject is ``cert``'s issuer name;
    never raises for a mismatched key type or a bad signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
