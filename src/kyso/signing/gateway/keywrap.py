"""Keys at rest in the signing gateway: the master secret, one key-encryption key per citizen,
and the wrapped private keys.

- **Master secret**: 32 random bytes in ``<home>/secrets/csc-master.key`` (mode 0600, refused
  when readable by others), encrypted with the CA passphrase: PBKDF2-HMAC-SHA-256 (the home's
  ``key_kdf_iterations``) → AES-256-GCM, the file's parameters bound as associated data. It is
  created on the first enrolment; concurrent first uses agree on one file.
- **Key-encryption key (KEK)** per citizen: HKDF-SHA-256 of the master secret with the owner's
  subject (the OIDC ``sub``) in ``info``. No KEK is ever stored.
- **Wrapped key**: ``0x01 ‖ nonce (12) ‖ AES-256-GCM(KEK, PKCS#8 DER)`` with associated data
  binding the credential id and the subject, so a blob moved to another row or another
  citizen, truncated or altered does not open (:class:`~kyso.errors.KeyFileError`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from kyso.errors import ConfigError, KeyFileError, PassphraseError
from kyso.files import atomic_write, ensure_private_dir
from kyso.pki.keys import PrivateKey, key_type_of

__all__ = ["MASTER_FORMAT", "MasterSecret", "master_secret_path", "unwrap_key", "wrap_key"]

MASTER_FORMAT = "kyso-csc-master/1"
SECRET_BYTES = 32
NONCE_BYTES = 12
WRAP_V1 = 1
_MIN_ITERATIONS, _MAX_ITERATIONS = 1_000, 10_000_000
_KEK_INFO = b"kyso-csc-kek/1\x00"
_WRAP_AAD = b"kyso-csc-key/1\x00"
_MAX_FILE = 4096


def master_secret_path(home: Path) -> Path:
    """Where a home keeps the gateway's encrypted master secret."""
    return home / "secrets" / "csc-master.key"


def _passphrase_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                      iterations=iterations).derive(passphrase.encode("utf-8"))


def _header_aad(iterations: int, salt: bytes) -> bytes:
    return f"{MASTER_FORMAT}|pbkdf2-sha256|{iterations}|{salt.hex()}".encode("ascii")


class MasterSecret:
    """The unlocked master secret; derives each citizen's KEK."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise ConfigError(f"the gateway master secret must be {SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "MasterSecret(<hidden>)"

    # -- the file --------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, passphrase: str, iterations: int) -> MasterSecret:
        """A new master secret written to ``path`` (0600, never replacing a file: a concurrent
        creator's file wins and is loaded instead)."""
        if not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
            raise ConfigError(f"PBKDF2 iterations must be {_MIN_ITERATIONS}-{_MAX_ITERATIONS}")
        secret = secrets.token_bytes(SECRET_BYTES)
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(_passphrase_key(passphrase, salt, iterations)).encrypt(
            nonce, secret, _header_aad(iterations, salt))
        document = {"format": MASTER_FORMAT, "kdf": "pbkdf2-sha256", "iterations": iterations,
                    "salt": base64.b64encode(salt).decode(), "nonce":
                    base64.b64encode(nonce).decode(), "sealed": base64.b64encode(sealed).decode()}
        ensure_private_dir(path.parent)
        try:
            atomic_write(path, (json.dumps(document, indent=1) + "\n").encode("ascii"),
                         mode=0o600, exclusive=True)
        except FileExistsError:
            return cls.load(path, passphrase)
        return cls(secret)

    @classmethod
    def load(cls, path: Path, passphrase: str) -> MasterSecret:
        """Unlock the master secret: :class:`ConfigError` when the file is missing, readable by
        others or damaged, :class:`PassphraseError` for a wrong passphrase."""
        try:
            if os.stat(path).st_mode & 0o077:
                raise ConfigError(f"gateway master secret {path} is readable by others; "
                                  "chmod 600 it")
            with path.open("rb") as fh:
                raw = fh.read(_MAX_FILE + 1)
        except FileNotFoundError:
            raise ConfigError(f"the signing gateway has no master secret yet ({path}); it is "
                              "created by the first enrolment") from None
        except OSError as exc:
            raise ConfigError(f"cannot read gateway master secret {path}: {exc.strerror}") \
                from None
        iterations, salt, nonce, sealed = _parse(raw, path)
        try:
            secret = AESGCM(_passphrase_key(passphrase, salt, iterations)).decrypt(
                nonce, sealed, _header_aad(iterations, salt))
        except InvalidTag:
            raise PassphraseError("wrong CA passphrase (cannot unlock the signing gateway's "
                                  "master secret), or the file was altered") from None
        return cls(secret)

    @classmethod
    def load_or_create(cls, path: Path, passphrase: str, iterations: int) -> MasterSecret:
        if path.exists():
            return cls.load(path, passphrase)
        return cls.create(path, passphrase, iterations)

    # -- keys --------------------------------------------------------------------------------

    def kek(self, subject: str) -> bytes:
        """The key-encryption key of one citizen (32 bytes)."""
        if not isinstance(subject, str) or not subject:
            raise KeyFileError("a key-encryption key needs the owner's subject")
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=_KEK_INFO + subject.encode("utf-8")).derive(self._secret)


def _parse(raw: bytes, path: Path) -> tuple[int, bytes, bytes, bytes]:
    damaged = f"gateway master secret {path} is damaged"
    if len(raw) > _MAX_FILE:
        raise ConfigError(f"{damaged}: too large")
    try:
        document: Any = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != MASTER_FORMAT \
                or document.get("kdf") != "pbkdf2-sha256":
            raise ConfigError(f"{damaged}: not a {MASTER_FORMAT} file")
        iterations = document["iterations"]
        if isinstance(iterations, bool) or not isinstance(iterations, int) \
                or not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
            raise ConfigError(f"{damaged}: bad iteration count")
        fields = [base64.b64decode(document[name], validate=True)
                  for name in ("salt", "nonce", "sealed")]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ConfigError(f"{damaged}: not a {MASTER_FORMAT} file") from None
    salt, nonce, sealed = fields
    if len(nonce) != NONCE_BYTES or len(sealed) != SECRET_BYTES + 16 or not salt:
        raise ConfigError(f"{damaged}: wrong field sizes")
    return iterations, salt, nonce, sealed


def _wrap_aad(credential_id: str, subject: str) -> bytes:
    return _WRAP_AAD + credential_id.encode("utf-8") + b"\x00" + subject.encode("utf-8")


def wrap_key(master: MasterSecret, key: PrivateKey, *, credential_id: str, subject: str) -> bytes:
    """The private key encrypted for its owner and its credential."""
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(master.kek(subject)).encrypt(nonce, plain, _wrap_aad(credential_id, subject))
    return bytes([WRAP_V1]) + nonce + sealed


def unwrap_key(master: MasterSecret, blob: bytes, *, credential_id: str,
               subject: str) -> PrivateKey:
    """The private key of a wrapped blob; :class:`KeyFileError` when it does not open."""
    data = bytes(blob)
    if len(data) < 1 + NONCE_BYTES + 16 or data[0] != WRAP_V1:
        raise KeyFileError(f"the wrapped key of credential {credential_id} is damaged")
    try:
        plain = AESGCM(master.kek(subject)).decrypt(
            data[1:1 + NONCE_BYTES], data[1 + NONCE_BYTES:], _wrap_aad(credential_id, subject))
    except InvalidTag:
        raise KeyFileError(f"the wrapped key of credential {credential_id} does not open: "
                           "altered, moved from another credential or citizen, or wrapped "
                           "under another master secret") from None
    key: Any = None
    with contextlib.suppress(ValueError, TypeError):
        key = serialization.load_der_private_key(plain, password=None)
    if key is None:
        raise KeyFileError(f"the wrapped key of credential {credential_id} is not a key")
    key_type_of(key.public_key())  # only the key types kyso allows
    result: PrivateKey = key
    return result
