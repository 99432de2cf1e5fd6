from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kyso.errors import KeyFileError, KeyPolicyError, PassphraseError
from kyso.pki.keys import (
    KeyType,
    generate_key,
    key_type_of,
    load_private_key,
    save_private_key,
    signature_hash,
)


@pytest.mark.parametrize("kt", [KeyType.EC_P256, KeyType.EC_P384, KeyType.ED25519,
                                KeyType.RSA_2048])
def test_generated_key_has_the_requested_type(kt: KeyType) -> None:
    assert key_type_of(generate_key(kt).public_key()) is kt


def test_rsa_1024_and_p521_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyPolicyError, match="1024 bits"):
        key_type_of(weak.public_key())
    with pytest.raises(KeyPolicyError, match="secp521r1"):
        key_type_of(ec.generate_private_key(ec.SECP521R1()).public_key())


def test_unknown_key_type_name_lists_the_allowed_ones() -> None:
    with pytest.raises(KeyPolicyError, match="ec-p256"):
        KeyType.parse("dsa-1024")


def test_p384_signs_with_sha384_and_ed25519_without_a_digest() -> None:
    assert signature_hash(generate_key(KeyType.EC_P384)).name == "sha384"  # type: ignore[union-attr]
    assert signature_hash(generate_key(KeyType.ED25519)) is None


def test_saved_key_is_encrypted_pkcs8_readable_only_by_owner(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    key = generate_key(KeyType.EC_P256)
    save_private_key(path, key, "a long passphrase")
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_private_key(path, "a long passphrase")
    assert loaded.public_key() == key.public_key()


def test_wrong_passphrase_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    save_private_key(path, generate_key(KeyType.EC_P256), "a long passphrase")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(path, "another passphrase")


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                                     b"-----END ENCRYPTED PRIVATE KEY-----\n"])
def test_corrupted_key_file_is_a_key_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.key.pem"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        load_private_key(path, "a long passphrase")


def test_missing_key_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="missing"):
        load_private_key(tmp_path / "nope.pem", "x")


def test_truncated_key_file_is_not_reported_as_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    save_private_key(path, generate_key(KeyType.EC_P256), "a long passphrase")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeyFileError):
        load_private_key(path, "a long passphrase")


def test_wrong_passphrase_is_always_reported_as_such_even_when_cbc_padding_survives(
        tmp_path: Path) -> None:
    from kyso.pki.pkcs8 import encrypt_pkcs8

    key = generate_key(KeyType.EC_P256)
    path = tmp_path / "k.key.pem"
    # ~1 in 256 wrong passphrases leave valid padding; 1500 files make that path near-certain.
    for i in range(1500):
        path.write_bytes(encrypt_pkcs8(key, "the right passphrase", 1000))
        with pytest.raises(PassphraseError):
            load_private_key(path, f"wrong passphrase {i}")


def test_key_file_with_damaged_base64_inside_intact_armour_is_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    save_private_key(path, generate_key(KeyType.EC_P256), "a long passphrase", 1000)
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1][:-4]  # the DER length no longer matches
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(KeyFileError, match="corrupted"):
        load_private_key(path, "a long passphrase")
