"""The provider's live token signing keys: :class:`KeyRing`, the key set stored in a directory
(:mod:`kyso.authn.key_store`), reloaded when it changes on disk, so that a rotation made by the
CLI (``kyso id keys rotate``) or another node reaches a running provider without a restart."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import structlog

from kyso.authn.key_store import KEYSET_FILE, load_key_set
from kyso.authn.keys import MAX_LEEWAY, KeySet, SigningKey
from kyso.clock import Clock
from kyso.errors import KysoError

RELOAD_CHECK = dt.timedelta(seconds=1)  # how often a watched key set looks at its files
_log = structlog.get_logger("kyso.authn.key_ring")


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
