"""Keyed pseudonyms of personal ID numbers: HMAC-SHA-256 under a per-home key."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from kyso.errors import ConfigError
from kyso.files import atomic_write, ensure_private_dir


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ConfigError("pseudonym key must be at least 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"

    def pseudonym(self, identifier: str) -> str:
        mac = hmac.new(self._key, identifier.encode("utf-8"), hashlib.sha256)
        return "psn:" + mac.hexdigest()[:32]

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymizer:
        """Load the key, creating it (0600) the first time; concurrent first uses agree."""
        if not path.exists():
            ensure_private_dir(path.parent)
            with contextlib.suppress(FileExistsError):
                atomic_write(path, secrets.token_bytes(32), mode=0o600, exclusive=True)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read pseudonym key {path}: {exc.strerror}") from None
        if os.stat(path).st_mode & 0o077:
            raise ConfigError(f"pseudonym key {path} is readable by others; chmod 600 it")
        return cls(key)
