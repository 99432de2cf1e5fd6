"""What a bound device signs and how its signature is checked.

Keys: only EC P-256 SubjectPublicKeyInfo DER (``cryptography`` rejects points not on the curve
while loading). Signatures: ECDSA P-256 with SHA-256, either exactly 64 bytes ``r || s`` (as
JOSE ES256 and the app send) or strict DER ``Ecdsa-Sig-Value`` (as WebAuthn sends); anything
else (BER, trailing bytes, r or s out of range) is refused. High-s signatures are accepted: the
signed nonce is single use, so malleability gains nothing. A device signs a domain-separated
canonical message (:func:`approval_message`, :func:`login_message`) naming the purpose, the
nonce and what is approved, so a signature for one purpose, nonce, account, relying party or
device never counts for another.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from kyso.errors import AuthenticationFailedError, AuthnError

__all__ = ["MAX_KEY_BYTES", "ChallengePurpose", "approval_message", "load_device_key",
           "login_message", "public_key_der", "signature_from_base64", "spki_der",
           "verify_device_signature"]

MAX_KEY_BYTES = 512  # a P-256 SPKI is 91 bytes (59 compressed)
_RAW_SIGNATURE_BYTES = 64
_MAX_DER_SIGNATURE_BYTES = 72
_MIN_DER_SIGNATURE_BYTES = 8
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_DOMAIN = b"kyso/device-signature/v1\x00"
_MAX_SIGNATURE_TEXT = 1024
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")


class ChallengePurpose(StrEnum):
    LOGIN = "login"  # QR cross-device login (kyso.authn.qr_login)
    APPROVE_DEVICE = "approve-device"  # the active device approves a pending one


def load_device_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    """An EC P-256 public key from SubjectPublicKeyInfo DER; :class:`AuthnError` otherwise."""
    if not isinstance(spki, bytes | bytearray | memoryview):
        raise AuthnError("the device public key must be DER bytes (SubjectPublicKeyInfo)")
    data = bytes(spki)
    if not data or len(data) > MAX_KEY_BYTES:
        raise AuthnError(f"the device public key must be 1-{MAX_KEY_BYTES} bytes of DER")
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuthnError(
            "the device public key is not a valid DER SubjectPublicKeyInfo (or its point is not "
            "on the curve)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise AuthnError(f"the device key must be EC P-256 (secp256r1), not {kind}")
    return key


def public_key_der(data: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of a key file's content: PEM ``PUBLIC KEY`` (decoded
    here) or DER (passed on; :func:`load_device_key` judges it). A private key or another PEM
    object is refused with :class:`AuthnError`, its content never echoed."""
    label = _PEM_LABEL.search(data[:4096])
    if label is None:
        if not data.startswith(b"\x30"):  # a DER SEQUENCE
            raise AuthnError("the key file is neither a PEM public key (BEGIN PUBLIC KEY) nor "
                             "DER (SubjectPublicKeyInfo)")
        return bytes(data)
    kind = label.group(1).decode("ascii")
    if "PRIVATE" in kind:
        raise AuthnError("the key file holds a private key; give the device's public key "
                         "(openssl pkey -in key.pem -pubout)")
    if kind != "PUBLIC KEY":
        raise AuthnError(f"the key file holds a PEM {kind}, not a PUBLIC KEY "
                         "(SubjectPublicKeyInfo)")
    try:
        key = serialization.load_pem_public_key(bytes(data))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuthnError("the key file is not a valid PEM public key (or its point is not on "
                         "the curve)") from None
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def signature_from_base64(text: bytes) -> bytes:
    """A signature written as base64 (standard or URL-safe alphabet, padding optional,
    whitespace and line breaks ignored); :class:`AuthnError` if it is not base64 text. What
    the bytes are is judged when the signature is verified."""
    if len(text) > _MAX_SIGNATURE_TEXT:
        raise AuthnError(f"the signature must be at most {_MAX_SIGNATURE_TEXT} characters of "
                         "base64")
    try:
        compact = "".join(bytes(text).decode("ascii").split())
    except UnicodeDecodeError:
        raise AuthnError("the signature is not base64 text (encode a binary signature with "
                         "base64)") from None
    compact = compact.rstrip("=").translate(str.maketrans("-_", "+/"))
    if not compact:
        raise AuthnError("the signature is empty")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AuthnError("the signature is not base64 text (encode a binary signature with "
                         "base64)") from None


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _message(purpose: ChallengePurpose, fields: dict[str, str]) -> bytes:
    body = json.dumps({"purpose": purpose.value, **fields}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return _DOMAIN + body.encode("ascii")


def approval_message(*, nonce: str, subject: str, thumbprint: str) -> bytes:
    """What the active device signs to approve the pending device ``thumbprint`` of
    ``subject``: ``kyso/device-signature/v1`` NUL, then canonical JSON (sorted keys, no
    spaces, ASCII) of purpose ``approve-device``, nonce, subject and thumbprint."""
    return _message(ChallengePurpose.APPROVE_DEVICE,
                    {"nonce": nonce, "subject": subject, "thumbprint": thumbprint})


def login_message(*, nonce: str, subject: str, client_id: str) -> bytes:
    """What the bound device signs to approve QR login ``nonce`` for its account ``subject``
    at relying party ``client_id`` ("" for the portal itself); same framing as
    :func:`approval_message`, purpose ``login``."""
    return _message(ChallengePurpose.LOGIN,
                    {"client_id": client_id, "nonce": nonce, "subject": subject})


def _signature_der(signature: object) -> bytes:
    """The DER form of a well-formed P-256 ECDSA signature; :class:`AuthenticationFailedError`
    for anything else."""
    if not isinstance(signature, bytes | bytearray | memoryview):
        raise AuthenticationFailedError("the signature must be bytes")
    sig = bytes(signature)
    bad = AuthenticationFailedError(
        "the signature is not an ECDSA P-256 signature (64 bytes r||s, or DER)")
    if len(sig) == _RAW_SIGNATURE_BYTES:
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    elif _MIN_DER_SIGNATURE_BYTES <= len(sig) <= _MAX_DER_SIGNATURE_BYTES:
        try:
            r, s = decode_dss_signature(sig)
        except ValueError:
            raise bad from None
        if encode_dss_signature(r, s) != sig:  # BER, padding, trailing bytes
            raise bad
    else:
        raise bad
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        raise bad
    return encode_dss_signature(r, s)


def verify_device_signature(public_key: ec.EllipticCurvePublicKey, signature: object,
                            message: bytes) -> None:
    """Check an ECDSA P-256 / SHA-256 signature; :class:`AuthenticationFailedError` if it is
    malformed or does not verify."""
    der = _signature_der(signature)
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AuthenticationFailedError("the device signature does not verify") from None
