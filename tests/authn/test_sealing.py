"""Sealing TOTP seeds at rest: AES-256-GCM bound to the row, a private per-home key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kyso.authn.sealing import KEY_BYTES, SecretSealer, seal_key_path
from kyso.errors import AuthnError, ConfigError

SEED = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def sealer(tmp_path: Path) -> SecretSealer:
    return SecretSealer.for_home(tmp_path / "home")


def test_a_sealed_secret_opens_only_for_its_own_row(sealer: SecretSealer) -> None:
    sealed = sealer.seal(SEED, context="otp-1")
    assert SEED not in sealed
    assert sealer.unseal(sealed, context="otp-1") == SEED
    with pytest.raises(AuthnError, match="another credential"):
        sealer.unseal(sealed, context="otp-2")


def test_each_seal_uses_a_fresh_nonce(sealer: SecretSealer) -> None:
    assert sealer.seal(SEED, context="c") != sealer.seal(SEED, context="c")


def test_the_format_starts_with_a_version_byte(sealer: SecretSealer) -> None:
    sealed = sealer.seal(SEED, context="c")
    assert sealed[0] == 1
    assert len(sealed) == 1 + 12 + len(SEED) + 16


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # truncated tag
    lambda b: b[:10],  # truncated header
    lambda b: b"",
    lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:],  # nonce flipped
    lambda b: b[:-3] + bytes([b[-3] ^ 0x80]) + b[-2:],  # tag flipped
    lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:],  # ciphertext flipped
    lambda b: bytes([2]) + b[1:],  # unknown version
])
def test_tampered_or_truncated_ciphertext_is_a_clear_error(sealer: SecretSealer,
                                                           damage: object) -> None:
    sealed = sealer.seal(SEED, context="c")
    with pytest.raises(AuthnError, match="sealed secret"):
        sealer.unseal(damage(sealed), context="c")  # type: ignore[operator]


def test_wrong_types_are_refused_cleanly(sealer: SecretSealer) -> None:
    with pytest.raises(AuthnError):
        sealer.unseal("not bytes", context="c")  # type: ignore[arg-type]
    with pytest.raises(AuthnError):
        sealer.seal("text", context="c")  # type: ignore[arg-type]


def test_another_homes_key_cannot_open_it(sealer: SecretSealer, tmp_path: Path) -> None:
    other = SecretSealer.for_home(tmp_path / "other")
    with pytest.raises(AuthnError, match="another key"):
        other.unseal(sealer.seal(SEED, context="c"), context="c")


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = SecretSealer.for_home(home)
    path = seal_key_path(home)
    assert path == home / "secrets" / "eid-seal.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == KEY_BYTES
    again = SecretSealer.for_home(home)
    assert again.unseal(first.seal(SEED, context="c"), context="c") == SEED


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    SecretSealer.for_home(home)
    os.chmod(seal_key_path(home), 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        SecretSealer.for_home(home)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    SecretSealer.for_home(home)
    seal_key_path(home).write_bytes(b"short")
    with pytest.raises(ConfigError, match="damaged"):
        SecretSealer.for_home(home)


def test_repr_never_shows_the_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sealer = SecretSealer.for_home(home)
    key = seal_key_path(home).read_bytes()
    assert "hidden" in repr(sealer)
    assert key.hex() not in repr(sealer)
    assert str(key) not in repr(sealer)


def test_derived_keys_differ_by_purpose_and_from_the_sealing_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sealer = SecretSealer.for_home(home)
    sms = sealer.derive_key("sms-otp")
    assert len(sms) == 32
    assert sms == SecretSealer.for_home(home).derive_key("sms-otp")
    assert sms != sealer.derive_key("other")
    assert sms != seal_key_path(home).read_bytes()
