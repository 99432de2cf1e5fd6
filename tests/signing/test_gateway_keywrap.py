"""Keys at rest in the signing gateway: the master secret file (0600, encrypted with the CA
passphrase, parameters bound) and the per-citizen wrapping of private keys (AES-256-GCM under
an HKDF key of the master secret and the subject; the credential id and subject bound)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.errors import ConfigError, KeyFileError, PassphraseError
from kyso.signing.gateway.keywrap import (
    MasterSecret,
    master_secret_path,
    unwrap_key,
    wrap_key,
)

PASS = "ca-passphrase-for-tests"
BINH, AN = "u-binh-subject", "u-an-subject"
CID = "csc-credential-1"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return master_secret_path(tmp_path / "home")


@pytest.fixture
def master(path: Path) -> MasterSecret:
    return MasterSecret.create(path, PASS, 2000)


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def raw_secret(master: MasterSecret) -> bytes:
    return master._secret  # the test looks inside on purpose


def test_the_master_secret_file_is_0600_and_holds_the_secret_only_encrypted(
        path: Path, master: MasterSecret) -> None:
    data = path.read_bytes()
    document = json.loads(data)

    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o077 == 0
    assert document["format"] == "kyso-csc-master/1"
    assert document["iterations"] == 2000
    secret = raw_secret(master)
    assert secret not in data
    assert secret.hex().encode() not in data
    assert raw_secret(MasterSecret.load(path, PASS)) == secret


def test_a_wrong_passphrase_does_not_open_the_master_secret(path: Path,
                                                            master: MasterSecret) -> None:
    with pytest.raises(PassphraseError, match="wrong CA passphrase"):
        MasterSecret.load(path, PASS + "x")


def test_a_changed_iteration_count_does_not_open_the_master_secret(
        path: Path, master: MasterSecret) -> None:
    document = json.loads(path.read_bytes())
    document["iterations"] = 1000
    path.write_text(json.dumps(document))

    with pytest.raises(PassphraseError):
        MasterSecret.load(path, PASS)


@pytest.mark.parametrize("content", [b"", b"{}", b"[1]", b"not json", b'{"format": "x"}',
                                     b"\xff\xfe" * 10, b"x" * 5000])
def test_a_damaged_master_secret_file_is_named(path: Path, master: MasterSecret,
                                               content: bytes) -> None:
    path.write_bytes(content)

    with pytest.raises(ConfigError, match="is damaged"):
        MasterSecret.load(path, PASS)


def test_a_master_secret_readable_by_others_is_refused(path: Path, master: MasterSecret) -> None:
    path.chmod(0o644)

    with pytest.raises(ConfigError, match="readable by others"):
        MasterSecret.load(path, PASS)


def test_a_missing_master_secret_is_named(path: Path) -> None:
    with pytest.raises(ConfigError, match="no master secret yet"):
        MasterSecret.load(path, PASS)


def test_concurrent_first_uses_agree_on_one_master_secret(path: Path) -> None:
    found: list[bytes] = []
    barrier = threading.Barrier(4)

    def first_use() -> None:
        barrier.wait()
        found.append(raw_secret(MasterSecret.load_or_create(path, PASS, 2000)))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(found) == 4
    assert len(set(found)) == 1
    assert raw_secret(MasterSecret.load(path, PASS)) == found[0]


def test_a_wrapped_key_holds_no_key_material_in_the_clear(
        master: MasterSecret, key: ec.EllipticCurvePrivateKey) -> None:
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())

    assert scalar not in blob
    assert der[-32:] not in blob
    assert unwrap_key(master, blob, credential_id=CID, subject=BINH).private_numbers() == \
        key.private_numbers()


def test_each_citizen_has_her_own_key_encryption_key(master: MasterSecret) -> None:
    assert master.kek(BINH) != master.kek(AN)
    assert master.kek(BINH) == master.kek(BINH)
    assert len(master.kek(BINH)) == 32


def test_another_subjects_kek_cannot_unwrap_the_key(master: MasterSecret,
                                                    key: ec.EllipticCurvePrivateKey) -> None:
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)

    with pytest.raises(KeyFileError, match="does not open"):
        unwrap_key(master, blob, credential_id=CID, subject=AN)


def test_a_key_moved_to_another_credential_does_not_open(
        master: MasterSecret, key: ec.EllipticCurvePrivateKey) -> None:
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)

    with pytest.raises(KeyFileError, match="does not open"):
        unwrap_key(master, blob, credential_id="csc-credential-2", subject=BINH)


def test_another_master_secret_cannot_unwrap_the_key(
        tmp_path: Path, master: MasterSecret, key: ec.EllipticCurvePrivateKey) -> None:
    other = MasterSecret.create(tmp_path / "other.key", PASS, 2000)
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)

    with pytest.raises(KeyFileError):
        unwrap_key(other, blob, credential_id=CID, subject=BINH)


def test_every_flipped_bit_is_refused(master: MasterSecret,
                                      key: ec.EllipticCurvePrivateKey) -> None:
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)

    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            altered = bytearray(blob)
            altered[index] ^= bit
            with pytest.raises(KeyFileError):
                unwrap_key(master, bytes(altered), credential_id=CID, subject=BINH)


@pytest.mark.parametrize("cut", [0, 1, 12, 28, -1])
def test_a_truncated_wrapped_key_is_refused(master: MasterSecret,
                                            key: ec.EllipticCurvePrivateKey, cut: int) -> None:
    blob = wrap_key(master, key, credential_id=CID, subject=BINH)

    with pytest.raises(KeyFileError):
        unwrap_key(master, blob[:cut], credential_id=CID, subject=BINH)


def test_the_master_secret_never_shows_in_repr(master: MasterSecret) -> None:
    assert repr(master) == "MasterSecret(<hidden>)"
    assert raw_secret(master).hex() not in repr(master)
