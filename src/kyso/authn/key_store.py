"""The token signing keys at rest: a key set stored in a directory, its index, and rotation of
the stored set.

On disk a key set is a directory: one encrypted PKCS#8 file per key (``<kid>.key.pem``, PBES2
with PBKDF2-HMAC-SHA-256, mode 0600, via :mod:`kyso.pki.keys`), ``token-keys.json`` (kid,
creation and retirement times, the current and next kids; no secret, still 0600) and ``jwks.json`` (the
public JWKS, for relying parties and ``kyso token verify``). Loading checks that every key file
holds exactly the key its kid names; the index alone (:func:`read_key_index`) tells each key's
state without the passphrase.

:func:`rotate_key_set` rotates the stored set under a lock (``kyso id keys rotate``); a running
provider follows it through :class:`kyso.authn.key_ring.KeyRing`. The keys themselves and the
rotation rule are in :mod:`kyso.authn.keys`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kyso.authn.keys import LONGEST_TOKEN_LIFETIME, MAX_LEEWAY, KeySet, SigningKey, jwk_thumbprint
from kyso.clock import Clock
from kyso.errors import KeyFileError
from kyso.files import atomic_write, ensure_private_dir, exclusive_lock
from kyso.pki.keys import load_private_key, save_private_key
from kyso.pki.pkcs8 import DEFAULT_ITERATIONS

KEYSET_FILE = "token-keys.json"
PUBLIC_JWKS_FILE = "jwks.json"  # the public half, for relying parties and `kyso token verify`
_FORMAT = "kyso-token-keys/2"  # 2 added the next key; a /1 index (no next key) still loads
_FORMATS = ("kyso-token-keys/1", _FORMAT)
_KID = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest, no padding


def _key_path(directory: Path, kid: str) -> Path:
    return directory / f"{kid}.key.pem"


def save_key_set(directory: Path, key_set: KeySet, passphrase: str, *,
                 iterations: int = DEFAULT_ITERATIONS) -> None:
    """Store ``key_set`` in ``directory`` (created 0700): new key files first (encrypted
    PKCS#8, 0600, never overwritten), then the index atomically, then the files of keys that
    left the set are deleted. A crash leaves the previous key set loadable."""
    ensure_private_dir(directory)
    for key in key_set:
        path = _key_path(directory, key.kid)
        if path.exists():
            if jwk_thumbprint(_load_p256(path, passphrase).public_key()) != key.kid:
                raise KeyFileError(f"key file {path.name} does not hold the key its name says")
            continue
        save_private_key(path, key.private_key, passphrase, iterations)
    index = {"format": _FORMAT, "current": key_set.current.kid,
             "next": key_set.next.kid if key_set.next is not None else None,
             "max_token_lifetime_seconds": int(key_set.max_token_lifetime.total_seconds()),
             "keys": [{"kid": k.kid, "created_at": k.created_at.isoformat(),
                       "retired_at": k.retired_at.isoformat() if k.retired_at else None}
                      for k in key_set]}
    atomic_write(directory / KEYSET_FILE, (json.dumps(index, indent=2) + "\n").encode("utf-8"),
                 mode=0o600)
    atomic_write(directory / PUBLIC_JWKS_FILE,
                 (json.dumps(key_set.public_jwks(), indent=2) + "\n").encode("utf-8"), mode=0o600)
    kept = {_key_path(directory, key.kid).name for key in key_set}
    for stale in directory.glob("*.key.pem"):
        if stale.name not in kept and _KID.fullmatch(stale.name.removesuffix(".key.pem")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _load_p256(path: Path, passphrase: str) -> ec.EllipticCurvePrivateKey:
    key = load_private_key(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"key file {path.name} does not hold an EC P-256 key")
    return key


def _time(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise KeyFileError(f"{where} is not a time")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise KeyFileError(f"{where} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise KeyFileError(f"{where} has no UTC offset")
    return moment


class KeyState(StrEnum):
    CURRENT = "current"  # signs every new token
    NEXT = "next"  # published in the JWKS; signs from the next rotation on
    RETIRING = "retiring"  # signs no more; verifies the tokens it signed until they expire
    RETIRED = "retired"  # its window is over: verifies nothing, dropped at the next rotation


@dataclass(frozen=True)
class KeyEntry:
    """One key as the index names it: no key material."""

    kid: str
    created_at: dt.datetime
    retired_at: dt.datetime | None


@dataclass(frozen=True)
class KeyStatus:
    """A key's state at a moment. ``verifies_until``: when it stops verifying and leaves the
    JWKS (its last token's expiry plus the largest clock-skew leeway); None while it signs."""

    kid: str
    created_at: dt.datetime
    state: KeyState
    retired_at: dt.datetime | None = None
    verifies_until: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kid": self.kid, "state": self.state.value,
                "created_at": self.created_at.isoformat(),
                "retired_at": self.retired_at.isoformat() if self.retired_at else None,
                "verifies_until": self.verifies_until.isoformat() if self.verifies_until else None}


@dataclass(frozen=True)
class KeyIndex:
    """A stored key set's index (``token-keys.json``), readable without the passphrase."""

    current: str
    keys: tuple[KeyEntry, ...]
    max_token_lifetime: dt.timedelta
    next: str | None = None

    def statuses(self, now: dt.datetime) -> tuple[KeyStatus, ...]:
        """Each key's state at ``now``, by the rule :meth:`KeySet.verification_key` applies."""
        found = []
        for key in self.keys:
            if key.retired_at is None:
                found.append(KeyStatus(key.kid, key.created_at, KeyState.CURRENT
                                       if key.kid == self.current else KeyState.NEXT))
                continue
            until = key.retired_at + self.max_token_lifetime + MAX_LEEWAY
            found.append(KeyStatus(key.kid, key.created_at,
                                   KeyState.RETIRING if now < until else KeyState.RETIRED,
                                   key.retired_at, until))
        return tuple(found)


def read_key_index(directory: Path) -> KeyIndex:
    """The index saved by :func:`save_key_set`, checked (KeyFileError naming the problem); the
    key files are not opened."""
    index_path = directory / KEYSET_FILE
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"no token key set in {directory}") from None
    except (OSError, ValueError):
        raise KeyFileError(f"token key index {index_path} is unreadable or not JSON") from None
    if not isinstance(index, dict) or index.get("format") not in _FORMATS:
        raise KeyFileError(f"{index_path} is not a kyso token key index")
    entries, current, lifetime = index.get("keys"), index.get("current"), index.get(
        "max_token_lifetime_seconds")
    following = index.get("next")
    if not isinstance(entries, list) or not entries or not isinstance(lifetime, int) or isinstance(
            lifetime, bool):
        raise KeyFileError(f"{index_path} is malformed")
    if not 0 < lifetime <= LONGEST_TOKEN_LIFETIME.total_seconds():
        raise KeyFileError(f"{index_path}: max_token_lifetime_seconds is out of range")
    keys: list[KeyEntry] = []
    for n, entry in enumerate(entries):
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise KeyFileError(f"{index_path}: key {n} has no valid kid")
        created = _time(entry.get("created_at"), f"key {n} created_at")
        retired = entry.get("retired_at")
        retired = None if retired is None else _time(retired, f"key {n} retired_at")
        if retired is not None and retired < created:
            raise KeyFileError(f"{index_path}: key {n} is retired before it was created")
        keys.append(KeyEntry(kid, created, retired))
    kids = [key.kid for key in keys]
    if len(set(kids)) != len(kids):
        raise KeyFileError(f"{index_path}: a key appears twice")
    if not isinstance(current, str) or current not in kids:
        raise KeyFileError(f"{index_path}: the current key is not in the set")
    if following is not None and (not isinstance(following, str) or following == current
                                  or following not in kids):
        raise KeyFileError(f"{index_path}: the next key is not in the set")
    if any((key.kid in (current, following)) != (key.retired_at is None) for key in keys):
        raise KeyFileError(f"{index_path}: the current and next keys, and only they, must be "
                           f"unretired")
    return KeyIndex(current, tuple(keys), dt.timedelta(seconds=lifetime), following)


def load_key_set(directory: Path, passphrase: str, *, known: KeySet | None = None) -> KeySet:
    """Load the key set saved by :func:`save_key_set`; every key file must hold the key its
    kid names (KeyFileError), a wrong passphrase raises PassphraseError. Keys of ``known`` (the
    set already in use) are reused, not decrypted again."""
    index = read_key_index(directory)
    loaded = {key.kid: key for key in known} if known is not None else {}
    keys: list[SigningKey] = []
    for entry in index.keys:
        old = loaded.get(entry.kid)
        if old is not None and (old.created_at, old.retired_at) == (entry.created_at,
                                                                    entry.retired_at):
            keys.append(old)  # the same object: its prepared verification key stays cached
            continue
        private = old.private_key if old is not None else _load_p256(
            _key_path(directory, entry.kid), passphrase)
        key = SigningKey(private, created_at=entry.created_at, retired_at=entry.retired_at)
        if key.kid != entry.kid:
            raise KeyFileError(f"key file {entry.kid}.key.pem does not hold the key its name says")
        keys.append(key)
    by_kid = {key.kid: key for key in keys}
    try:
        return KeySet(by_kid[index.current],
                      tuple(k for k in keys if k.kid not in (index.current, index.next)),
                      index.max_token_lifetime,
                      next=by_kid[index.next] if index.next is not None else None)
    except ValueError as exc:
        raise KeyFileError(f"{directory / KEYSET_FILE}: {exc}") from None


# --- rotation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_key_set` did: ``key_set`` is the saved result."""

    key_set: KeySet = field(repr=False)
    previous_kid: str
    dropped: tuple[str, ...]
    fresh: bool = False  # the new key was not published before (compromise, or an old set)
    compromised: bool = False  # every old key was dropped

    @property
    def current_kid(self) -> str:
        return self.key_set.current.kid

    @property
    def next_kid(self) -> str:
        assert self.key_set.next is not None  # a rotation always makes one
        return self.key_set.next.kid

    @property
    def previous_verifies_until(self) -> dt.datetime | None:
        """When the previous key stops verifying (and leaves the JWKS); None: it was dropped."""
        previous = next((k for k in self.key_set if k.kid == self.previous_kid), None)
        until = previous.verifies_until(self.key_set.max_token_lifetime) if previous else None
        return until + MAX_LEEWAY if until is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current_kid, "next": self.next_kid, "previous": self.previous_kid,
                "fresh": self.fresh,
                "previous_verifies_until": (self.previous_verifies_until.isoformat()
                                            if self.previous_verifies_until else None),
                "compromised": self.compromised,
                "dropped": list(self.dropped), **self.key_set.to_dict()}


@contextlib.contextmanager
def _rotation_lock(directory: Path) -> Iterator[None]:
    with exclusive_lock(directory / ".rotate.lock",
                        lambda why: KeyFileError(f"cannot write into {directory}: {why}")):
        yield


def create_key_set(directory: Path, passphrase: str, clock: Clock, *,
                   iterations: int = DEFAULT_ITERATIONS) -> bool:
    """Create and save a new key set unless ``directory`` holds one, under the rotation lock:
    two nodes starting at once on a new home make one set, not two that delete each other's
    key files. True when this call made it."""
    try:
        ensure_private_dir(directory)
    except OSError as exc:
        raise KeyFileError(f"cannot create {directory}: {exc.strerror or exc}") from None
    with _rotation_lock(directory):
        if (directory / KEYSET_FILE).exists():
            return False
        try:
            save_key_set(directory, KeySet.create(clock), passphrase, iterations=iterations)
        except OSError as exc:
            raise KeyFileError(f"cannot write the token key set in {directory}: "
                               f"{exc.strerror or exc}") from None
    return True


def rotate_key_set(directory: Path, passphrase: str, clock: Clock, *, compromised: bool = False,
                   iterations: int = DEFAULT_ITERATIONS) -> Rotation:
    """Rotate the stored key set, under a lock so that two rotations never interleave: load
    it, let the next key sign from now on, with a new next key (the old current key verifies
    its tokens until they expire, keys past their window are dropped; ``compromised``: a key
    never published signs and every other key is dropped: :meth:`KeySet.rotate`) and save it
    (:func:`save_key_set`: new key files encrypted, 0600; index and ``jwks.json`` replaced
    atomically)."""
    if not (directory / KEYSET_FILE).is_file():
        raise KeyFileError(f"no token key set in {directory}")
    with _rotation_lock(directory):
        old = load_key_set(directory, passphrase)
        new = old.rotate(clock, compromised=compromised)
        try:
            save_key_set(directory, new, passphrase, iterations=iterations)
        except OSError as exc:
            raise KeyFileError(f"cannot write the token key set in {directory}: "
                               f"{exc.strerror or exc}") from None
    kept = {key.kid for key in new}
    return Rotation(new, old.current.kid, tuple(k.kid for k in old if k.kid not in kept),
                    fresh=old.next is None or new.current.kid != old.next.kid,
                    compromised=compromised)
