"""Token signing keys: RFC 7638 kids, the public JWKS, rotation windows, encrypted storage,
rotation on disk, and the provider's live key set that follows it (KeyRing)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from kyso.authn.keys import (
    KEYSET_FILE,
    PUBLIC_JWKS_FILE,
    KeyRing,
    KeySet,
    KeyState,
    SigningKey,
    jwk_thumbprint,
    load_key_set,
    read_key_index,
    rotate_key_set,
    save_key_set,
)
from kyso.authn.tokens import TokenType, issue, verify
from kyso.clock import FrozenClock
from kyso.errors import KeyFileError, PassphraseError, TokenError

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
PASSPHRASE = "token-keys-passphrase"
ITERATIONS = 2000  # the suite's fast KDF; production uses 600 000

# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
         "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
         "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
         "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def rfc7638(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3 computed from the JWK alone: required members only, sorted, no spaces."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "oct": ("k", "kty"),
                "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    text = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in required) + "}"
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def test_hand_thumbprint_matches_the_rfc_7638_example() -> None:
    assert rfc7638(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_kid_is_the_rfc_7638_thumbprint_of_the_public_jwk(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    jwk = key.public_jwk()
    assert key.kid == jwk["kid"] == rfc7638(jwk) == jwk_thumbprint(key.public_key)


def test_jwks_holds_only_public_members_that_rebuild_the_key(clock: FrozenClock) -> None:
    keys = KeySet.create(clock).rotate(clock)
    jwks = json.loads(json.dumps(keys.public_jwks()))
    assert list(jwks) == ["keys"]
    assert len(jwks["keys"]) == 2
    for jwk, key in zip(jwks["keys"], keys, strict=True):
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
        rebuilt = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64(jwk["x"]), "big"),
                                                int.from_bytes(unb64(jwk["y"]), "big"),
                                                ec.SECP256R1()).public_key()
        assert rebuilt == key.public_key
    private = keys.current.private_key.private_numbers().private_value.to_bytes(32, "big")
    assert base64.urlsafe_b64encode(private).rstrip(b"=").decode() not in json.dumps(jwks)


def test_coordinates_keep_leading_zero_octets(clock: FrozenClock) -> None:
    scalar = 1
    while ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers().x >= 2**248:
        scalar += 1
    key = SigningKey(ec.derive_private_key(scalar, ec.SECP256R1()), created_at=T0)
    jwk = key.public_jwk()
    assert len(unb64(jwk["x"])) == len(unb64(jwk["y"])) == 32
    assert unb64(jwk["x"])[0] == 0
    assert key.kid == rfc7638(jwk)


def test_signing_key_refuses_other_curves_and_naive_times() -> None:
    with pytest.raises(ValueError, match="P-256"):
        SigningKey(ec.generate_private_key(ec.SECP384R1()), created_at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), created_at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="retired before it was created"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), created_at=T0,
                   retired_at=T0 - dt.timedelta(seconds=1))


def test_signing_key_repr_shows_no_private_key(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    assert "private" not in repr(key)
    assert key.kid in repr(key)


def test_rotate_returns_a_new_set_and_leaves_the_old_one_alone(clock: FrozenClock) -> None:
    keys = KeySet.create(clock)
    clock.advance(dt.timedelta(days=1))
    rotated = keys.rotate(clock)
    assert keys.previous == ()
    assert keys.current.retired_at is None
    assert rotated.current.kid != keys.current.kid
    assert rotated.current.created_at == clock.now()
    (old,) = rotated.previous
    assert (old.kid, old.retired_at) == (keys.current.kid, clock.now())


def test_retired_key_verifies_until_its_last_token_expires(clock: FrozenClock) -> None:
    keys = KeySet.create(clock, max_token_lifetime=dt.timedelta(minutes=30))
    rotated = keys.rotate(clock)
    old = keys.current.kid
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=30, seconds=59)) is not None
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=31)) is None
    assert rotated.verification_key(old, T0 + dt.timedelta(minutes=30),
                                     leeway=dt.timedelta(0)) is None
    assert rotated.verification_key(rotated.current.kid, T0 + dt.timedelta(days=400)) is not None
    assert rotated.verification_key("no-such-kid", T0) is None


def test_rotation_and_pruning_drop_keys_past_their_window(clock: FrozenClock) -> None:
    keys = KeySet.create(clock).rotate(clock)
    clock.advance(dt.timedelta(minutes=30))
    keys = keys.rotate(clock)
    assert len(keys) == 3
    clock.advance(dt.timedelta(minutes=31, seconds=1))  # the first retiree's window is over
    assert len(keys.pruned(clock)) == 2
    assert len(keys.rotate(clock)) == 3  # new + the two still in their window


def test_key_set_refuses_inconsistent_contents(clock: FrozenClock) -> None:
    key = SigningKey.generate(clock)
    with pytest.raises(ValueError, match="current signing key is retired"):
        KeySet(key.retire(T0))
    with pytest.raises(ValueError, match="retirement time"):
        KeySet(key, (SigningKey.generate(clock),))
    with pytest.raises(ValueError, match="twice"):
        KeySet(key, (key.retire(T0),))
    with pytest.raises(ValueError, match="max_token_lifetime"):
        KeySet(key, max_token_lifetime=dt.timedelta(hours=25))


# --- storage ------------------------------------------------------------------------------


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
    first, second = (directory / f"{k.kid}.key.pem" for k in keys)
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
        current, previous = index.statuses(at)
        assert (current.kid, current.state, current.verifies_until) == (
            keys.current.kid, KeyState.CURRENT, None)
        assert (previous.kid, previous.state, previous.verifies_until) == (old.kid, state, until)
        assert (keys.verification_key(old.kid, at) is not None) == (state is KeyState.RETIRING)
    assert index.statuses(clock.now())[1].to_dict() == {
        "kid": old.kid, "state": "retiring", "created_at": old.created_at.isoformat(),
        "retired_at": clock.now().isoformat(), "verifies_until": until.isoformat()}


@pytest.mark.parametrize("edit", [
    lambda index: index["keys"][0].update(retired_at=index["keys"][0]["created_at"]),
    lambda index: index["keys"][1].update(retired_at=None),
    lambda index: index["keys"].append(dict(index["keys"][1])),
    lambda index: index["keys"][1].update(retired_at="2000-01-01T00:00:00+00:00"),
    lambda index: index.update(max_token_lifetime_seconds=0),
])
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
    assert rotation.dropped == ()
    assert rotation.previous_verifies_until == clock.now() + dt.timedelta(hours=1, seconds=60)
    loaded = load_key_set(directory, PASSPHRASE)
    assert loaded.to_dict() == rotation.key_set.to_dict()
    assert loaded.previous[0].retired_at == clock.now()
    assert json.loads((directory / PUBLIC_JWKS_FILE).read_text()) == loaded.public_jwks()
    new_file = directory / f"{rotation.current_kid}.key.pem"
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert new_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert rotation.to_dict()["previous"] == keys.current.kid


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
    assert len(loaded) == 6  # the two stored keys + four rotations, all in their window


# --- the provider's live key set (KeyRing) ----------------------------------------------------


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
    assert check(before, ring, clock) == first.current.kid  # the old key still verifies
    assert check(token(fresh, clock), ring, clock) == rotation.current_kid
    assert {k["kid"] for k in fresh.public_jwks()["keys"]} == {first.current.kid,
                                                               rotation.current_kid}
    clock.advance(dt.timedelta(seconds=5))
    assert ring.snapshot() is fresh  # unchanged file: nothing reloaded


def test_ring_explicit_check_reports_whether_it_reloaded(tmp_path: Path,
                                                        clock: FrozenClock) -> None:
    directory, ring = ring_on_disk(tmp_path, clock)
    assert ring.check() is False
    rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert ring.check() is True
    assert ring.check() is False
    assert len(ring) == 2


def test_ring_looks_at_once_for_a_kid_it_does_not_hold(tmp_path: Path,
                                                       clock: FrozenClock) -> None:
    """A token signed by the key another node has just rotated to verifies at once."""
    directory, ring = ring_on_disk(tmp_path, clock)
    ring.snapshot()
    rotation = rotate_key_set(directory, PASSPHRASE, clock, iterations=ITERATIONS)
    assert check(token(rotation.key_set, clock), ring, clock) == rotation.current_kid
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
            new_key = f"{rotated.current.kid}.key.pem"
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
    new_key = f"{rotated.current.kid}.key.pem"
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
