"""Token signing keys at rest: encrypted key files and the index (read with or without the
passphrase), a key set surviving a save and load, tampering refused, and rotation of the stored
set under a lock."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kyso.authn.key_store import (
    KEYSET_FILE,
    PUBLIC_JWKS_FILE,
    KeyState,
    create_key_set,
    load_key_set,
    read_key_index,
    rotate_key_set,
    save_key_set,
)
from kyso.authn.keys import KeySet
from kyso.authn.tokens import TokenType, issue, verify
from kyso.clock import FrozenClock
from kyso.errors import KeyFileError, PassphraseError

PASSPHRASE = "token-keys-passphrase"
ITERATIONS = 2000  # the suite's fast KDF; production uses 600 000


def stored(tmp_path: Path, clock: FrozenClock) -> tuple[Path, KeySet]:
    directory = tmp_path / "token-keys"
    keys = KeySet.create(clock).rotate(clock)
    save_key_set(directory, keys, PASSPHRASE, iterations=ITERATIONS)
    return directory, keys


def test_key_set_survives_a_save_and_load(tmp_path: Path, clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    loaded = load_key_set(directory, PASSPHRASE)
    assert loaded.to_dict() == keys.to_dict()
    assert loaded.public_jwks() == keys.public_jwks()
    token = issue(keys, typ=TokenType.ID, issuer="iss", subject="001099012345", audience="rp",
                  lifetime=dt.timedelta(minutes=5), clock=clock)
    assert verify(token, loaded, typ=TokenType.ID, issuer="iss", audience="rp",
                  clock=clock).subject == "001099012345"


def test_stored_files_are_private_and_keys_encrypted(tmp_path: Path, clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == sorted([KEYSET_FILE, PUBLIC_JWKS_FILE, *(f"{k.kid}.key.pem" for k in keys)])
    assert json.loads((directory / PUBLIC_JWKS_FILE).read_text()) == keys.public_jwks()
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    for key in keys:
        assert (directory / f"{key.kid}.key.pem").read_bytes().startswith(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    index = (directory / KEYSET_FILE).read_text()
    assert "PRIVATE" not in index
    assert '"d"' not in index


def test_wrong_passphrase_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    directory, _keys = stored(tmp_path, clock)
    with pytest.raises(PassphraseError):
        load_key_set(directory, "not the passphrase")


def test_key_file_swapped_for_another_key_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    first, second, *_ = (directory / f"{k.kid}.key.pem" for k in keys)
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    with pytest.raises(KeyFileError, match="does not hold the key its name says"):
        load_key_set(directory, PASSPHRASE)
    with pytest.raises(KeyFileError, match="does not hold the key its name says"):
        save_key_set(directory, keys, PASSPHRASE, iterations=ITERATIONS)


@pytest.mark.parametrize("edit", [
    lambda index: index.update(current="../../etc/passwd"),
    lambda index: index["keys"][0].update(kid="../" + index["keys"][0]["kid"][3:]),
    lambda index: index["keys"][0].update(created_at="yesterday"),
    lambda index: index["keys"][0].update(created_at="2026-11-23T02:00:00"),
    lambda index: index.update(max_token_lifetime_seconds=10**9),
    lambda index: index.update(max_token_lifetime_seconds="3600"),
    lambda index: index.update(keys=[]),
    lambda index: index.update(format="something/2"),
])
def test_tampered_index_is_refused(tmp_path: Path, clock: FrozenClock, edit: Any) -> None:
    directory, _keys = stored(tmp_path, clock)
    index = json.loads((directory / KEYSET_FILE).read_text())
    edit(index)
    (directory / KEYSET_FILE).write_text(json.dumps(index))
    with pytest.raises(KeyFileError):
        load_key_set(directory, PASSPHRASE)


def test_missing_or_garbled_index_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    with pytest.raises(KeyFileError, match="no token key set"):
        load_key_set(tmp_path / "nowhere", PASSPHRASE)
    directory, _keys = stored(tmp_path, clock)
    (directory / KEYSET_FILE).write_text("{not json")
    with pytest.raises(KeyFileError, match="not JSON"):
        load_key_set(directory, PASSPHRASE)


def test_saving_a_pruned_set_deletes_the_dropped_key_files(tmp_path: Path, clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    dropped = keys.previous[0].kid
    clock.advance(dt.timedelta(hours=2))
    rotated = keys.rotate(clock)
    save_key_set(directory, rotated, PASSPHRASE, iterations=ITERATIONS)
    assert not (directory / f"{dropped}.key.pem").exists()
    assert {p.name for p in directory.glob("*.key.pem")} == {f"{k.kid}.key.pem" for k in rotated}
    assert load_key_set(directory, PASSPHRASE).current.kid == rotated.current.kid


# --- the index, read without the passphrase ------------------------------------------------


def test_index_tells_each_keys_state_as_verification_does(tmp_path: Path,
                                                          clock: FrozenClock) -> None:
    keys = KeySet.create(clock, max_token_lifetime=dt.timedelta(minutes=30))
    clock.advance(dt.timedelta(hours=1))
    keys = keys.rotate(clock)
    directory = tmp_path / "token-keys"
    save_key_set(directory, keys, PASSPHRASE, iterations=ITERATIONS)
    index = read_key_index(directory)
    assert index.current == keys.current.kid
    assert index.max_token_lifetime == dt.timedelta(minutes=30)
    old = keys.previous[0]
    until = clock.now() + dt.timedelta(minutes=31)  # lifetime + the 60 s leeway
    for at, state in ((clock.now(), KeyState.RETIRING),
                      (until - dt.timedelta(seconds=1), KeyState.RETIRING),
                      (until, KeyState.RETIRED)):
        current, following, previous = index.statuses(at)
        assert (current.kid, current.state, current.verifies_until) == (
            keys.current.kid, KeyState.CURRENT, None)
        assert (following.kid, following.state, following.verifies_until) == (
            keys.next.kid, KeyState.NEXT, None)  # type: ignore[union-attr]
        assert (previous.kid, previous.state, previous.verifies_until) == (old.kid, state, until)
        assert (keys.verification_key(old.kid, at) is not None) == (state is KeyState.RETIRING)
    assert index.next == keys.next.kid  # type: ignore[union-attr]
    assert index.statuses(clock.now())[2].to_dict() == {
        "kid": old.kid, "state": "retiring", "created_at": old.created_at.isoformat(),
        "retired_at": clock.now().isoformat(), "verifies_until": until.isoformat()}


@pytest.mark.parametrize("edit", [
    lambda index: index["keys"][0].update(retired_at=index["keys"][0]["created_at"]),
    lambda index: index["keys"][2].update(retired_at=None),  # a previous key unretired
    lambda index: index["keys"].append(dict(index["keys"][2])),
    lambda index: index["keys"][2].update(retired_at="2000-01-01T00:00:00+00:00"),
    lambda index: index.update(max_token_lifetime_seconds=0),
    lambda index: index["keys"][1].update(retired_at=index["keys"][1]["created_at"]),  # next
    lambda index: index.update(next=index["current"]),
    lambda index: index.update(next=index["keys"][2]["kid"]),
    lambda index: index.update(next="A" * 43),
    lambda index: index.update(next=["list"]),
    lambda index: index.update(next=None),  # then the next key is an unretired previous one
], ids=["current-retired", "previous-unretired", "twice", "retired-before-created",
        "lifetime-0", "next-retired", "next-is-current", "next-is-previous", "next-unknown",
        "next-not-text", "next-missing"])
def test_inconsistent_index_is_refused_with_or_without_the_passphrase(
        tmp_path: Path, clock: FrozenClock, edit: Any) -> None:
    directory, _keys = stored(tmp_path, clock)
    index = json.loads((directory / KEYSET_FILE).read_text())
    edit(index)
    (directory / KEYSET_FILE).write_text(json.dumps(index))
    with pytest.raises(KeyFileError):
        read_key_index(directory)
    with pytest.raises(KeyFileError):
        load_key_set(directory, PASSPHRASE)


def test_loading_with_the_keys_in_use_decrypts_only_new_key_files(tmp_path: Path,
                                                                  clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    clock.advance(dt.timedelta(minutes=5))
    rotated = keys.rotate(clock)
    save_key_set(directory, rotated, PASSPHRASE, iterations=ITERATIONS)
    for key in keys:  # the files of the keys already loaded are not read again
        (directory / f"{key.kid}.key.pem").write_bytes(b"garbage")
    with pytest.raises(KeyFileError):
        load_key_set(directory, PASSPHRASE)
    loaded = load_key_set(directory, PASSPHRASE, known=keys)
    assert loaded.to_dict() == rotated.to_dict()
    assert loaded.previous[1] is keys.previous[0]  # unchanged: the very same key object
    assert loaded.previous[0].retired_at == clock.now()  # the one retired now: new times


# --- rotation on disk ------------------------------------------------------------------------


def test_rotate_key_set_saves_a_new_current_key_and_keeps_the_old_one(
        tmp_path: Path, clock: FrozenClock) -> None:
    directory = tmp_path / "token-keys"
    keys = KeySet.create(clock)
    save_key_set(directory, keys, PASSPHRASE, iterations=ITERATIONS)
    clock.advance(dt.timedelta(days=30))
    rotation = rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert rotation.previous_kid == keys.current.kid != rotation.current_kid
    assert rotation.current_kid == keys.next.kid  # type: ignore[union-attr]  # published before
    assert not rotation.fresh
    assert rotation.next_kid not in {k.kid for k in keys}
    assert rotation.dropped == ()
    assert rotation.previous_verifies_until == clock.now() + dt.timedelta(hours=1, seconds=60)
    loaded = load_key_set(directory, PASSPHRASE)
    assert loaded.to_dict() == rotation.key_set.to_dict()
    assert loaded.previous[0].retired_at == clock.now()
    assert json.loads((directory / PUBLIC_JWKS_FILE).read_text()) == loaded.public_jwks()
    new_file = directory / f"{rotation.next_kid}.key.pem"
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert new_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert rotation.to_dict()["previous"] == keys.current.kid


def test_a_rotation_for_a_compromise_signs_with_a_key_never_published_and_drops_the_others(
        tmp_path: Path, clock: FrozenClock) -> None:
    directory = tmp_path / "token-keys"
    keys = KeySet.create(clock)
    save_key_set(directory, keys, PASSPHRASE, iterations=ITERATIONS)
    published = {key["kid"] for key in json.loads((directory / PUBLIC_JWKS_FILE).read_text())["keys"]}
    rotation = rotate_key_set(directory, PASSPHRASE, clock, compromised=True,
                              iterations=ITERATIONS)
    assert rotation.fresh
    assert rotation.compromised
    assert rotation.current_kid not in published
    assert rotation.dropped == tuple(k.kid for k in keys)
    assert rotation.previous_verifies_until is None
    assert rotation.to_dict()["previous_verifies_until"] is None
    for key in keys:
        assert not (directory / f"{key.kid}.key.pem").exists()
    loaded = load_key_set(directory, PASSPHRASE)
    assert [k.kid for k in loaded] == [rotation.current_kid, rotation.next_kid]
    assert [k["kid"] for k in json.loads((directory / PUBLIC_JWKS_FILE).read_text())["keys"]] == [
        rotation.current_kid, rotation.next_kid]


def test_a_key_set_stored_before_next_keys_loads_and_its_first_rotation_adds_one(
        tmp_path: Path, clock: FrozenClock) -> None:
    """An index of format kyso-token-keys/1: no next key. It loads; its first rotation signs with
    a new key (nothing was published ahead) and makes a next key; the index becomes /2."""
    directory = tmp_path / "token-keys"
    old = KeySet(KeySet.create(clock).current)
    save_key_set(directory, old, PASSPHRASE, iterations=ITERATIONS)
    index = json.loads((directory / KEYSET_FILE).read_text())
    del index["next"]
    index["format"] = "kyso-token-keys/1"
    (directory / KEYSET_FILE).write_text(json.dumps(index))
    assert read_key_index(directory).next is None
    assert load_key_set(directory, PASSPHRASE).next is None
    rotation = rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert rotation.fresh
    assert json.loads((directory / KEYSET_FILE).read_text())["format"] == "kyso-token-keys/2"
    assert read_key_index(directory).next == rotation.next_kid
    assert rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS
                          ).current_kid == rotation.next_kid


def test_rotate_key_set_refuses_a_missing_set_or_a_wrong_passphrase(
        tmp_path: Path, clock: FrozenClock) -> None:
    with pytest.raises(KeyFileError, match="no token key set"):
        rotate_key_set(tmp_path / "nowhere", PASSPHRASE, clock)
    assert not (tmp_path / "nowhere").exists()
    directory, keys = stored(tmp_path, clock)
    before = sorted(p.name for p in directory.glob("*.key.pem"))
    with pytest.raises(PassphraseError):
        rotate_key_set(directory, "not the passphrase", clock, iterations=ITERATIONS)
    assert sorted(p.name for p in directory.glob("*.key.pem")) == before
    assert load_key_set(directory, PASSPHRASE).current.kid == keys.current.kid


def test_concurrent_rotations_never_lose_a_key(tmp_path: Path, clock: FrozenClock) -> None:
    directory, _keys = stored(tmp_path, clock)
    results: list[str] = []
    with ThreadPoolExecutor(4) as pool:
        for rotation in pool.map(lambda _: rotate_key_set(directory, PASSPHRASE, clock,
                                                          iterations=ITERATIONS), range(4)):
            results.append(rotation.current_kid)
    loaded = load_key_set(directory, PASSPHRASE)
    # one after the other: every new key is in the final set (none overwritten by a race)
    assert {k.kid for k in loaded} >= set(results)
    assert loaded.current.kid in results
    assert len(loaded) == 7  # the three stored keys + a next key per rotation, all in their window


def test_nodes_starting_at_once_on_a_new_home_create_one_key_set(
        tmp_path: Path, clock: FrozenClock) -> None:
    directory = tmp_path / "token-keys"
    start = threading.Barrier(4)

    def create(_: int) -> bool:
        start.wait()
        return create_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(create, range(4)))

    assert made.count(True) == 1
    loaded = load_key_set(directory, PASSPHRASE)  # its key file was not deleted by another
    assert len(loaded) == 2  # current and next
    assert sorted(p.name for p in directory.glob("*.key.pem")) == sorted(
        f"{key.kid}.key.pem" for key in loaded)


def test_create_key_set_keeps_an_existing_set(tmp_path: Path, clock: FrozenClock) -> None:
    directory, keys = stored(tmp_path, clock)
    assert create_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS) is False
    assert load_key_set(directory, PASSPHRASE).current.kid == keys.current.kid
