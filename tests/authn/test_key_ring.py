"""The provider's live key set (KeyRing): it follows a rotation on disk once its check is due
or at once for an unknown kid, keeps its keys when the changed set does not load, and serves
threads while it reloads."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kyso.authn.key_ring import KeyRing
from kyso.authn.key_store import KEYSET_FILE, load_key_set, rotate_key_set, save_key_set
from kyso.authn.keys import KeySet
from kyso.authn.tokens import TokenType, issue, verify
from kyso.clock import FrozenClock
from kyso.errors import TokenError

PASSPHRASE = "token-keys-passphrase"
ITERATIONS = 2000  # the suite's fast KDF; production uses 600 000


def ring_on_disk(tmp_path: Path, clock: FrozenClock) -> tuple[Path, KeyRing]:
    directory = tmp_path / "token-keys"
    save_key_set(directory, KeySet.create(clock), PASSPHRASE, iterations=ITERATIONS)
    return directory, KeyRing.open(directory, PASSPHRASE, clock)


def token(keys: KeySet, clock: FrozenClock) -> str:
    return issue(keys, typ=TokenType.ID, issuer="iss", subject="001099012345", audience="rp",
                 lifetime=dt.timedelta(minutes=5), clock=clock)


def check(token_text: str, keys: KeyRing | KeySet, clock: FrozenClock) -> str:
    return verify(token_text, keys, typ=TokenType.ID, issuer="iss", audience="rp",
                  clock=clock).kid


def test_ring_picks_up_a_rotation_on_disk_once_its_check_is_due(tmp_path: Path,
                                                                clock: FrozenClock) -> None:
    directory, ring = ring_on_disk(tmp_path, clock)
    first = ring.snapshot()
    before = token(first, clock)
    rotation = rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert ring.snapshot() is first  # looked less than a second ago: no stat yet
    clock.advance(dt.timedelta(seconds=1))
    fresh = ring.snapshot()
    assert fresh.current.kid == rotation.current_kid
    assert [k.kid for k in fresh.previous] == [first.current.kid]
    assert rotation.current_kid == first.next.kid  # type: ignore[union-attr]
    assert check(before, ring, clock) == first.current.kid  # the old key still verifies
    assert check(token(fresh, clock), ring, clock) == rotation.current_kid
    assert {k["kid"] for k in fresh.public_jwks()["keys"]} == {
        first.current.kid, rotation.current_kid, rotation.next_kid}
    clock.advance(dt.timedelta(seconds=5))
    assert ring.snapshot() is fresh  # unchanged file: nothing reloaded


def test_ring_explicit_check_reports_whether_it_reloaded(tmp_path: Path,
                                                        clock: FrozenClock) -> None:
    directory, ring = ring_on_disk(tmp_path, clock)
    assert ring.check() is False
    rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert ring.check() is True
    assert ring.check() is False
    assert len(ring) == 3  # current, next, previous


def test_ring_looks_at_once_for_a_kid_it_does_not_hold(tmp_path: Path,
                                                       clock: FrozenClock) -> None:
    """A token signed by the key another node has just rotated to verifies at once: the next
    key, which the ring holds already, or after a rotation for a compromise a key it has never
    seen (and then the old keys verify nothing)."""
    directory, ring = ring_on_disk(tmp_path, clock)
    first = ring.snapshot()
    rotation = rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert check(token(rotation.key_set, clock), ring, clock) == rotation.current_kid
    assert ring.snapshot() is first  # it held the next key: nothing to reload
    old_token = token(first, clock)
    rotation = rotate_key_set(directory, PASSPHRASE, clock, compromised=True,
                              iterations=ITERATIONS)
    assert rotation.fresh
    assert check(token(rotation.key_set, clock), ring, clock) == rotation.current_kid
    assert ring.snapshot().current.kid == rotation.current_kid
    with pytest.raises(TokenError, match="unknown or retired key"):
        check(old_token, ring, clock)
    with pytest.raises(TokenError, match="unknown or retired key"):
        check(token(KeySet.create(clock), clock), ring, clock)


def test_ring_from_a_key_set_never_changes(tmp_path: Path, clock: FrozenClock) -> None:
    directory, _ring = ring_on_disk(tmp_path, clock)
    keys = load_key_set(directory, PASSPHRASE)
    ring = KeyRing(keys, clock)
    rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    clock.advance(dt.timedelta(minutes=1))
    assert ring.snapshot() is keys
    assert ring.check() is False
    assert ring.directory is None


@pytest.mark.parametrize("damage", ["garbage index", "missing key file", "wrong passphrase"])
def test_ring_keeps_its_keys_when_the_changed_set_does_not_load(
        tmp_path: Path, clock: FrozenClock, damage: str) -> None:
    directory, ring = ring_on_disk(tmp_path, clock)
    first = ring.snapshot()
    if damage == "garbage index":
        (directory / KEYSET_FILE).write_text('{"format": "kyso-token-keys/1", "keys": ')
    else:  # a rotation whose new key file is missing, or encrypted with another passphrase
        rotated = first.rotate(clock)
        elsewhere = tmp_path / "elsewhere"
        save_key_set(elsewhere, rotated, "another-token-key-passphrase", iterations=ITERATIONS)
        if damage == "wrong passphrase":
            new_key = f"{rotated.next.kid}.key.pem"  # type: ignore[union-attr]
            (directory / new_key).write_bytes((elsewhere / new_key).read_bytes())
        (directory / KEYSET_FILE).write_bytes((elsewhere / KEYSET_FILE).read_bytes())
    with capture_logs() as logs:
        for _ in range(5):  # one warning per change of the file, not one per check
            clock.advance(dt.timedelta(seconds=1))
            assert ring.snapshot() is first
            assert check(token(first, clock), ring, clock) == first.current.kid
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    (warning,) = warnings
    assert warning["event"] == "token_keys_reload_failed"
    assert warning["kid_in_use"] == first.current.kid
    assert PASSPHRASE not in json.dumps(logs, default=str)
    assert "another-token-key-passphrase" not in json.dumps(logs, default=str)
    if damage == "wrong passphrase":
        assert "wrong passphrase" in warning["reason"]

    save_key_set(directory, first.rotate(clock), PASSPHRASE, iterations=ITERATIONS)  # repaired
    clock.advance(dt.timedelta(seconds=1))
    assert ring.snapshot().current.kid != first.current.kid


def test_ring_loads_a_copied_set_once_its_key_file_arrives_after_the_index(
        tmp_path: Path, clock: FrozenClock) -> None:
    """Another node's rotation copied in (rsync) file by file, the index first: the set does
    not load until the new key file is there, then it does, without any further index change."""
    directory, ring = ring_on_disk(tmp_path, clock)
    first = ring.snapshot()
    rotated = first.rotate(clock)
    elsewhere = tmp_path / "node-1"
    save_key_set(elsewhere, rotated, PASSPHRASE, iterations=ITERATIONS)
    (directory / KEYSET_FILE).write_bytes((elsewhere / KEYSET_FILE).read_bytes())
    with capture_logs() as logs:
        clock.advance(dt.timedelta(seconds=1))
        assert ring.snapshot() is first
        clock.advance(dt.timedelta(seconds=1))
        assert ring.snapshot() is first
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "token_keys_reload_failed"]
    new_key = f"{rotated.next.kid}.key.pem"  # type: ignore[union-attr]  # the one new key
    (directory / new_key).write_bytes((elsewhere / new_key).read_bytes())
    clock.advance(dt.timedelta(seconds=1))
    assert ring.snapshot().current.kid == rotated.current.kid


def test_ring_serves_threads_while_it_reloads(tmp_path: Path, clock: FrozenClock) -> None:
    """Threads signing and verifying through the ring while the set rotates on disk: every
    token verifies, each signed by a key of a consistent snapshot."""
    directory, ring = ring_on_disk(tmp_path, clock)
    stop = threading.Event()
    failures: list[BaseException] = []
    kids: set[str] = set()

    def work() -> None:
        while not stop.is_set():
            try:
                kids.add(check(token(ring.snapshot(), clock), ring, clock))
            except BaseException as exc:  # collected and reported by the main thread
                failures.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        expected = {ring.snapshot().current.kid}
        rotated = []
        for _ in range(3):
            latest = rotate_key_set(directory, PASSPHRASE, clock,
                                    iterations=ITERATIONS).current_kid
            expected.add(latest)
            rotated.append(latest)
            clock.advance(dt.timedelta(seconds=1))
            deadline = time.monotonic() + 30  # until a thread has signed with the new key
            while latest not in kids and time.monotonic() < deadline and not failures:
                time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert set(rotated) <= kids <= expected
