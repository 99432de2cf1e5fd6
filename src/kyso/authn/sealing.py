"""Sealing small secrets at rest (TOTP seeds) with AES-256-GCM under a per-home key.

The key lives in ``<home>/secrets/eid-seal.key`` (32 random bytes, created 0600 on first use;
a key file readable by group or others is refused). A sealed value is::

    version (1 byte, 0x01) ‖ nonce (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes)

and its associated data binds it to the row it belongs to (the credential id), so a sealed
seed copied into another row, truncated or altered does not open: :class:`AuthnError`.

The same key derives other per-home secrets by purpose (:meth:`SecretSealer.derive_key`), for
instance the key of the SMS code hashes, so a home has one e-ID secret file to protect.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kyso.errors import AuthnError, ConfigError
from kyso.files import atomic_write, ensure_private_dir

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_V1 = 1
_AAD_PREFIX = b"kyso-eid-seal\x00"
_DERIVE_PREFIX = b"kyso-eid-derive\x00"
MAX_SECRET_BYTES = 4096


def seal_key_path(home: Path) -> Path:
    """Where a home keeps its e-ID sealing key."""
    return home / "secrets" / "eid-seal.key"


class SecretSealer:
    """AES-256-GCM sealing of small secrets, each bound to a context (its row id)."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigError(f"the e-ID sealing key must be exactly {KEY_BYTES} bytes")
        self._key = key
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretSealer(<key hidden>)"

    @classmethod
    def from_file(cls, path: Path) -> SecretSealer:
        """Load the key, creating it (0600) the first time; concurrent first uses agree."""
        if not path.exists():
            ensure_private_dir(path.parent)
            with contextlib.suppress(FileExistsError):
                atomic_write(path, secrets.token_bytes(KEY_BYTES), mode=0o600, exclusive=True)
        try:
            if os.stat(path).st_mode & 0o077:
                raise ConfigError(f"e-ID sealing key {path} is readable by others; chmod 600 it")
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read e-ID sealing key {path}: {exc.strerror}") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"e-ID sealing key {path} is damaged: it must hold exactly "
                              f"{KEY_BYTES} bytes")
        return cls(key)

    @classmethod
    def for_home(cls, home: Path) -> SecretSealer:
        return cls.from_file(seal_key_path(home))

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (``"sms-otp"``), independent of the sealing key."""
        return hmac.new(self._key, _DERIVE_PREFIX + purpose.encode("utf-8"),
                        hashlib.sha256).digest()

    @staticmethod
    def _aad(version: int, context: str) -> bytes:
        return _AAD_PREFIX + bytes([version]) + context.encode("utf-8")

    def seal(self, secret: bytes, *, context: str) -> bytes:
        """Encrypt ``secret`` for the row named ``context`` (a fresh random nonce each time)."""
        if not isinstance(secret, bytes) or len(secret) > MAX_SECRET_BYTES:
            raise AuthnError(f"only secrets of at most {MAX_SECRET_BYTES} bytes can be sealed")
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret, self._aad(FORMAT_V1, context))
        return bytes([FORMAT_V1]) + nonce + sealed

    def unseal(self, sealed: bytes, *, context: str) -> bytes:
        """The secret sealed for ``context``; :class:`AuthnError` if the value is truncated,
        altered, of an unknown format, sealed for another row or under another key."""
        if not isinstance(sealed, bytes | bytearray | memoryview):
            raise AuthnError("sealed secret is not bytes")
        data = bytes(sealed)
        if len(data) < 1 + NONCE_BYTES + TAG_BYTES:
            raise AuthnError("sealed secret is truncated")
        if data[0] != FORMAT_V1:
            raise AuthnError(f"sealed secret has unknown format version {data[0]}")
        nonce, body = data[1:1 + NONCE_BYTES], data[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, self._aad(data[0], context))
        except InvalidTag:
            raise AuthnError("sealed secret does not authenticate: it was altered, truncated, "
                             "moved from another credential or sealed under another key") from None
