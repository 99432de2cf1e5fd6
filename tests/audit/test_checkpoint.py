"""Checkpoints in the C2SP signed-note format: interoperable with Go's sumdb/note, and every
forgery or malformation refused with a clear CheckpointError."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kyso.audit.checkpoint import (
    Checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    timestamp_line,
    verifier_key,
    verify_checkpoint,
    verify_note,
)
from kyso.audit.merkle import leaf_hash
from kyso.errors import CheckpointError

ORIGIN = "audit.kyso.thainguyen.gov.vn/v1"
NAME = "audit.kyso.thainguyen.gov.vn"

# The example of golang.org/x/mod/sumdb/note's documentation (BSD licence).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n\n"
           "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
           "dngotpRZb6KE6RyyBwJnAM=\n").encode()


def test_a_note_signed_by_go_sumdb_note_verifies() -> None:
    name, key = parse_verifier_key(GO_VKEY)
    assert verify_note(GO_NOTE, [(name, key)]).startswith(b"If you think cryptography")


def test_our_verifier_key_has_the_go_sumdb_format() -> None:
    name, key = parse_verifier_key(GO_VKEY)
    assert verifier_key(name, key) == GO_VKEY


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _checkpoint(size: int = 42) -> Checkpoint:
    return Checkpoint(ORIGIN, size, leaf_hash(b"root"))


def test_checkpoint_round_trip(key: Ed25519PrivateKey) -> None:
    signed = sign_checkpoint(_checkpoint(), NAME, key)
    assert signed.startswith(f"{ORIGIN}\n42\n".encode())
    assert "\n\n\u2014 audit.kyso.thainguyen.gov.vn " in signed.decode()
    assert verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())]) == _checkpoint()


def test_checkpoint_with_a_changed_size_is_a_forgery(key: Ed25519PrivateKey) -> None:
    signed = sign_checkpoint(_checkpoint(42), NAME, key)
    forged = signed.replace(b"\n42\n", b"\n43\n", 1)
    with pytest.raises(CheckpointError, match="forged"):
        verify_checkpoint(forged, ORIGIN, [(NAME, key.public_key())])


def test_checkpoint_signed_by_another_key_is_not_trusted(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    signed = sign_checkpoint(_checkpoint(), NAME, other)
    with pytest.raises(CheckpointError, match="not signed by a trusted key"):
        verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())])


def test_unknown_signatures_are_ignored_but_a_trusted_one_is_needed(
        key: Ed25519PrivateKey) -> None:
    witness = Ed25519PrivateKey.generate()
    signed = sign_checkpoint(_checkpoint(), NAME, key)
    text, sigs = signed.split(b"\n\n", 1)
    cosigned = sign_note(text + b"\n", "witness.example", witness)
    both = cosigned + sigs
    assert verify_checkpoint(both, ORIGIN, [(NAME, key.public_key())]) == _checkpoint()


def test_checkpoint_of_another_log_is_refused(key: Ed25519PrivateKey) -> None:
    signed = sign_checkpoint(Checkpoint("other.example/log", 1, leaf_hash(b"x")), NAME, key)
    with pytest.raises(CheckpointError, match=r"other\.example/log"):
        verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())])


@pytest.mark.parametrize("data", [
    b"", b"garbage", b"\xff\xfe", b"origin\n1\n\n", b"a\n\n\xe2\x80\x94 name !!!\n",
    b"a\n\n- name AAAA\n", b"a\x01b\n\n\xe2\x80\x94 n AAAAAAAA\n", b"x" * (2 << 20),
])
def test_malformed_notes_are_refused_clearly(key: Ed25519PrivateKey, data: bytes) -> None:
    with pytest.raises(CheckpointError):
        verify_checkpoint(data, ORIGIN, [(NAME, key.public_key())])


@pytest.mark.parametrize("body", [
    b"origin\n-1\nAAAA\n", b"origin\n01\n" + base64.b64encode(b"x" * 32) + b"\n",
    b"origin\n1\nnot-base64\n", b"origin\n1\n" + base64.b64encode(b"x" * 31) + b"\n",
    b"\n1\n" + base64.b64encode(b"x" * 32) + b"\n",
])
def test_malformed_checkpoint_bodies_are_refused(key: Ed25519PrivateKey, body: bytes) -> None:
    signed = sign_note(body, NAME, key)
    with pytest.raises(CheckpointError):
        verify_checkpoint(signed, "origin", [(NAME, key.public_key())])


@pytest.mark.parametrize("vkey", ["", "a+b+c", "name+c74f20a3+!!!",
                                  "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"])
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(vkey)


# --- the signing time (Rekor's Timestamp extension line) ----------------------------------------

T0 = dt.datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=dt.UTC)


def test_the_timestamp_line_gives_the_signing_time_to_the_microsecond(
        key: Ed25519PrivateKey) -> None:
    line = timestamp_line(T0)
    assert line == "Timestamp: 1795399200123456000"
    checkpoint = Checkpoint(ORIGIN, 42, leaf_hash(b"root"), (line,))
    signed = sign_checkpoint(checkpoint, NAME, key)
    assert signed.split(b"\n")[3] == line.encode()
    parsed = verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())])
    assert parsed.signed_at == T0
    assert _checkpoint().signed_at is None  # checkpoints from before kyso dated them


@pytest.mark.parametrize("lines", [
    ("Timestamp: soon",), ("Timestamp: 01",), ("Timestamp: -5",), ("Timestamp: 1 2",),
    ("Timestamp: 99999999999999999999",), ("Timestamp: 1", "Timestamp: 2"),
], ids=["text", "leading-zero", "negative", "two-numbers", "beyond-2286", "twice"])
def test_a_malformed_timestamp_line_is_refused(key: Ed25519PrivateKey,
                                               lines: tuple[str, ...]) -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 42, leaf_hash(b"root"), lines), NAME, key)
    with pytest.raises(CheckpointError, match="malformed Timestamp"):
        verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())])


def test_other_extension_lines_are_kept_and_do_not_date_the_checkpoint(
        key: Ed25519PrivateKey) -> None:
    checkpoint = Checkpoint(ORIGIN, 42, leaf_hash(b"root"), ("witnessed-by example",))
    signed = sign_checkpoint(checkpoint, NAME, key)
    parsed = verify_checkpoint(signed, ORIGIN, [(NAME, key.public_key())])
    assert parsed == checkpoint
    assert parsed.signed_at is None
