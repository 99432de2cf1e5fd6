"""The e-ID service's token signing keys: ES256 (EC P-256) keys named by their RFC 7638
thumbprint, a rotating key set, its public JWKS (RFC 7517) and encrypted storage at rest.

A :class:`KeySet` holds one *current* key, which signs every new token, and the *previous*
keys, which only verify: a key retired at ``t`` signed no token after ``t``, and no token lives
longer than ``max_token_lifetime``, so it is kept until ``t + max_token_lifetime`` (plus the
largest clock-skew leeway a verifier may allow) and then dropped. Nothing here imports
python-jose; :mod:`kyso.authn.tokens` signs and verifies with these keys.

On disk a key set is a directory: one encrypted PKCS#8 file per key (``<kid>.key.pem``, PBES2
with PBKDF2-HMAC-SHA-256, mode 0600, via :mod:`kyso.pki.keys`) and ``token-keys.json``
(kid, creation and retirement times, the current kid; no secret, still 0600). Loading checks
that every key file holds exactly the key its kid names; the index alone
(:func:`read_key_index`) tells each key's state without the passphrase.

:func:`rotate_key_set` rotates the stored set under a lock (``kyso id keys rotate``). A running
provider holds a :class:`KeyRing`: the stored set, reloaded when its index changes on disk, so
that a rotation made by the CLI or another node reaches it without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.clock import Clock
from kyso.errors import KeyFileError, KysoError
from kyso.files import atomic_write, ensure_private_dir
from kyso.pki.keys import load_private_key, save_private_key
from kyso.pki.pkcs8 import DEFAULT_ITERATIONS

ALGORITHM = "ES256"
CURVE = "P-256"
DEFAULT_MAX_TOKEN_LIFETIME = dt.timedelta(hours=1)
LONGEST_TOKEN_LIFETIME = dt.timedelta(hours=24)  # NIST SP 800-63B-4: a session lasts ≤ 24 h
MAX_LEEWAY = dt.timedelta(seconds=60)  # the largest clock skew a verifier may allow
KEYSET_FILE = "token-keys.json"
PUBLIC_JWKS_FILE = "jwks.json"  # the public half, for relying parties and `kyso token verify`
_FORMAT = "kyso-token-keys/1"
_KID = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest, no padding
_COORDINATE_BYTES = 32


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _coordinates(public_key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    numbers = public_key.public_numbers()
    # RFC 7518 §6.2.1.2: x and y are the full 32 octets, leading zeros kept.
    return (b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")))


def _require_p256(key: object) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1):
        raise ValueError(f"ES256 needs an EC P-256 key, not {type(key).__name__}")


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint: base64url SHA-256 of the required members (crv, kty, x, y)
    in lexicographic order, without whitespace."""
    _require_p256(public_key)
    x, y = _coordinates(public_key)
    canonical = json.dumps({"crv": CURVE, "kty": "EC", "x": x, "y": y},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7517 JWK of a P-256 verification key: public members only."""
    x, y = _coordinates(public_key)
    return {"kty": "EC", "crv": CURVE, "x": x, "y": y, "kid": jwk_thumbprint(public_key),
            "use": "sig", "alg": ALGORITHM}


def _aware(moment: dt.datetime, what: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")


@dataclass(frozen=True, eq=False)
class SigningKey:
    """One ES256 key. ``kid`` is its RFC 7638 thumbprint; ``retired_at`` is set once a newer
    key has taken over signing (from then on it only verifies)."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    created_at: dt.datetime
    retired_at: dt.datetime | None = None
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        _require_p256(self.private_key)
        _aware(self.created_at, "created_at")
        if self.retired_at is not None:
            _aware(self.retired_at, "retired_at")
            if self.retired_at < self.created_at:
                raise ValueError("a key cannot be retired before it was created")
        object.__setattr__(self, "kid", jwk_thumbprint(self.private_key.public_key()))

    @classmethod
    def generate(cls, clock: Clock) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), created_at=clock.now())

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)

    def retire(self, at: dt.datetime) -> SigningKey:
        return replace(self, retired_at=at)

    def verifies_until(self, max_token_lifetime: dt.timedelta) -> dt.datetime | None:
        """When the last token this key may have signed expires; ``None`` while it signs."""
        return None if self.retired_at is None else self.retired_at + max_token_lifetime

    def to_dict(self) -> dict[str, Any]:
        return {"kid": self.kid, "alg": ALGORITHM, "created_at": self.created_at.isoformat(),
                "retired_at": self.retired_at.isoformat() if self.retired_at else None}


@dataclass(frozen=True, eq=False)
class KeySet:
    """The current signing key and the retired keys still needed to verify."""

    current: SigningKey
    previous: tuple[SigningKey, ...] = ()
    max_token_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_LIFETIME

    def __post_init__(self) -> None:
        if not dt.timedelta(0) < self.max_token_lifetime <= LONGEST_TOKEN_LIFETIME:
            raise ValueError(f"max_token_lifetime must be positive and at most "
                             f"{LONGEST_TOKEN_LIFETIME}")
        if self.current.retired_at is not None:
            raise ValueError("the current signing key is retired")
        if any(key.retired_at is None for key in self.previous):
            raise ValueError("a previous key must have a retirement time")
        kids = [key.kid for key in self]
        if len(set(kids)) != len(kids):
            raise ValueError("a key appears twice in the key set")

    @classmethod
    def create(cls, clock: Clock, *,
               max_token_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_LIFETIME) -> KeySet:
        return cls(SigningKey.generate(clock), max_token_lifetime=max_token_lifetime)

    def __iter__(self) -> Iterator[SigningKey]:
        yield self.current
        yield from self.previous

    def __len__(self) -> int:
        return 1 + len(self.previous)

    def rotate(self, clock: Clock) -> KeySet:
        """A new key set whose fresh key signs from now on; the old current key verifies the
        tokens it signed until they expire. Keys past their window are dropped."""
        now = clock.now()
        retired = (self.current.retire(now), *self.previous)
        return KeySet(SigningKey.generate(clock), tuple(k for k in retired if self._usable(k, now)),
                      self.max_token_lifetime)

    def pruned(self, clock: Clock) -> KeySet:
        """This key set without the retired keys no token can need any more."""
        now = clock.now()
        return replace(self, previous=tuple(k for k in self.previous if self._usable(k, now)))

    def _usable(self, key: SigningKey, now: dt.datetime, leeway: dt.timedelta = MAX_LEEWAY) -> bool:
        until = key.verifies_until(self.max_token_lifetime)
        return until is None or now < until + leeway

    def verification_key(self, kid: str, now: dt.datetime,
                         leeway: dt.timedelta = MAX_LEEWAY) -> SigningKey | None:
        """The key named ``kid`` if it may still verify at ``now``, else ``None``."""
        for key in self:
            if key.kid == kid:
                return key if self._usable(key, now, leeway) else None
        return None

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The RFC 7517 JWK Set served at the jwks_uri: every key that may verify, public
        members only."""
        return {"keys": [key.public_jwk() for key in self]}

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current.kid, "keys": [key.to_dict() for key in self],
                "max_token_lifetime_seconds": int(self.max_token_lifetime.total_seconds())}


# --- storage ------------------------------------------------------------------------------


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

    def statuses(self, now: dt.datetime) -> tuple[KeyStatus, ...]:
        """Each key's state at ``now``, by the rule :meth:`KeySet.verification_key` applies."""
        found = []
        for key in self.keys:
            if key.retired_at is None:
                found.append(KeyStatus(key.kid, key.created_at, KeyState.CURRENT))
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
    if not isinstance(index, dict) or index.get("format") != _FORMAT:
        raise KeyFileError(f"{index_path} is not a kyso token key index")
    entries, current, lifetime = index.get("keys"), index.get("current"), index.get(
        "max_token_lifetime_seconds")
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
    if any((key.kid == current) != (key.retired_at is None) for key in keys):
        raise KeyFileError(f"{index_path}: the current key, and only it, must be unretired")
    return KeyIndex(current, tuple(keys), dt.timedelta(seconds=lifetime))


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
        return KeySet(by_kid[index.current], tuple(k for k in keys if k.kid != index.current),
                      index.max_token_lifetime)
    except ValueError as exc:
        raise KeyFileError(f"{directory / KEYSET_FILE}: {exc}") from None


# --- rotation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_key_set` did: ``key_set`` is the saved result."""

    key_set: KeySet = field(repr=False)
    previous_kid: str
    dropped: tuple[str, ...]

    @property
    def current_kid(self) -> str:
        return self.key_set.current.kid

    @property
    def previous_verifies_until(self) -> dt.datetime:
        """When the previous key stops verifying (and leaves the JWKS)."""
        until = next(k for k in self.key_set if k.kid == self.previous_kid).verifies_until(
            self.key_set.max_token_lifetime)
        assert until is not None
        return until + MAX_LEEWAY

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current_kid, "previous": self.previous_kid,
                "previous_verifies_until": self.previous_verifies_until.isoformat(),
                "dropped": list(self.dropped), **self.key_set.to_dict()}


@contextlib.contextmanager
def _rotation_lock(directory: Path) -> Iterator[None]:
    try:
        fd = os.open(directory / ".rotate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write into {directory}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rotate_key_set(directory: Path, passphrase: str, clock: Clock, *,
                   iterations: int = DEFAULT_ITERATIONS) -> Rotation:
    """Rotate the stored key set, under a lock so that two rotations never interleave: load
    it, let a fresh key sign from now on (the old one verifies its tokens until they expire,
    keys past their window are dropped: :meth:`KeySet.rotate`) and save it
    (:func:`save_key_set`: the new key file encrypted, 0600; index and ``jwks.json``
    replaced atomically)."""
    if not (directory / KEYSET_FILE).is_file():
        raise KeyFileError(f"no token key set in {directory}")
    with _rotation_lock(directory):
        old = load_key_set(directory, passphrase)
        new = old.rotate(clock)
        try:
            save_key_set(directory, new, passphrase, iterations=iterations)
        except OSError as exc:
            raise KeyFileError(f"cannot write the token key set in {directory}: "
                               f"{exc.strerror or exc}") from None
    kept = {key.kid for key in new}
    return Rotation(new, old.current.kid, tuple(k.kid for k in old if k.kid not in kept))


# --- the provider's live key set ------------------------------------------------------------

RELOAD_CHECK = dt.timedelta(seconds=1)  # how often a watched key set looks at its files
_log = structlog.get_logger("kyso.authn.keys")


def _stamp(directory: Path) -> tuple[int, ...] | None:
    """What changes when the key set on disk may have: the index (replaced by a rename) and
    the directory (a key file added or removed: a copy that brings the index first is loaded
    again when its key files arrive)."""
    try:
        index, folder = (directory / KEYSET_FILE).stat(), directory.stat()
    except OSError:
        return None
    return index.st_ino, index.st_mtime_ns, index.st_size, folder.st_mtime_ns


class KeyRing:
    """The provider's key set as its directory holds it now; :meth:`snapshot` is the set to
    sign and verify with.

    A ring made by :meth:`open` watches its directory: at most once per ``check_every`` of its
    clock (the clock paces it, so tests move it) it stats the index and the directory and, when
    they changed — ``kyso id keys rotate``, another node sharing the home, a copy from another
    node — loads the new set, decrypting only the new key files. A changed set that does not
    load (corrupt, wrong passphrase, a key file not there yet) leaves the set in use as it was
    and logs one warning per change on disk, without secrets. A ``kid`` the set does not hold
    makes it look at once (a token signed by the key another node just rotated to).
    Thread-safe: one thread reloads while the others go on with the set they have. A ring made
    from a :class:`KeySet` alone never changes.

    It verifies like a key set (:class:`kyso.authn.tokens.VerificationKeys`), so a verifier
    built on it follows rotations."""

    def __init__(self, key_set: KeySet, clock: Clock) -> None:
        self._key_set = key_set
        self._clock = clock
        self._lock = threading.Lock()
        self._directory: Path | None = None
        self._passphrase = ""
        self._stamp: tuple[int, ...] | None = None
        self._checked_at: dt.datetime | None = None
        self._check_every = RELOAD_CHECK

    @classmethod
    def open(cls, directory: Path, passphrase: str, clock: Clock, *,
             check_every: dt.timedelta = RELOAD_CHECK) -> KeyRing:
        """The key set stored in ``directory``, watched for changes."""
        stamp = _stamp(directory)  # before reading: a change meanwhile is seen next time
        ring = cls(load_key_set(directory, passphrase), clock)
        ring._directory, ring._passphrase, ring._stamp = directory, passphrase, stamp
        ring._checked_at, ring._check_every = clock.now(), check_every
        return ring

    @property
    def directory(self) -> Path | None:
        return self._directory

    def snapshot(self) -> KeySet:
        """The key set in use, after looking for a change if the last look is old enough."""
        if self._directory is not None:
            now, checked = self._clock.now(), self._checked_at
            if checked is None or not checked <= now < checked + self._check_every:
                self.check(wait=False)
        return self._key_set

    def check(self, *, wait: bool = True) -> bool:
        """Look at the files now and load the set if they changed; True when a new set is in
        use. ``wait=False`` returns at once while another thread is looking."""
        if self._directory is None or not self._lock.acquire(blocking=wait):
            return False
        try:
            self._checked_at = self._clock.now()
            stamp = _stamp(self._directory)
            if stamp == self._stamp:
                return False
            try:
                fresh = load_key_set(self._directory, self._passphrase, known=self._key_set)
            except Exception as exc:  # a bad file must never stop signing with the set in use
                if _stamp(self._directory) == stamp:  # not a save or copy in progress
                    self._stamp = stamp
                    _log.warning("token_keys_reload_failed", directory=str(self._directory),
                                 reason=str(exc) if isinstance(exc, KysoError) else
                                 type(exc).__name__, kid_in_use=self._key_set.current.kid)
                return False
            self._stamp, self._key_set = stamp, fresh
            _log.info("token_keys_reloaded", directory=str(self._directory),
                      current=fresh.current.kid, kids=[key.kid for key in fresh])
            return True
        finally:
            self._lock.release()

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        return len(self.snapshot())

    @property
    def max_token_lifetime(self) -> dt.timedelta:
        return self.snapshot().max_token_lifetime

    def verification_key(self, kid: str, now: dt.datetime,
                         leeway: dt.timedelta = MAX_LEEWAY) -> SigningKey | None:
        key_set = self.snapshot()
        if all(key.kid != kid for key in key_set) and self.check():
            key_set = self._key_set
        return key_set.verification_key(kid, now, leeway)
