from __future__ import annotations

from pathlib import Path

import pytest

from kyso.config import check_new_passphrase, load_settings, read_passphrase_file
from kyso.errors import ConfigError


def test_home_comes_from_option_then_environment_then_default(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path / "a", environ={"KYSO_HOME": str(tmp_path / "b")}).home \
        == tmp_path / "a"
    assert load_settings(environ={"KYSO_HOME": str(tmp_path / "b")}).home == tmp_path / "b"
    assert load_settings(environ={}).home == Path.home() / ".kyso"


def test_database_url_defaults_to_sqlite_in_the_home(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, environ={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'kyso.db'}"
    env = {"KYSO_DATABASE_URL": "postgresql+psycopg://kyso@db/kyso"}
    assert load_settings(home=tmp_path, environ=env).database_url == env["KYSO_DATABASE_URL"]


def test_config_file_with_unknown_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('database_url = "sqlite:///x"\nfoo = 1\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(home=tmp_path, environ={})


def test_config_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("database_url = = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(home=tmp_path, environ={})


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        load_settings(home=f, environ={})


def test_passphrase_file_gives_its_first_line(tmp_path: Path) -> None:
    f = tmp_path / "pass"
    f.write_text("first line secret\nsecond\n")
    assert read_passphrase_file(f) == "first line secret"


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe\x00garbage"])
def test_empty_or_binary_passphrase_file_is_refused(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "pass"
    f.write_bytes(content)
    with pytest.raises(ConfigError):
        read_passphrase_file(f)


def test_missing_passphrase_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read passphrase file"):
        read_passphrase_file(tmp_path / "nope")


def test_short_new_passphrase_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        check_new_passphrase("abc12", "CA passphrase")
    assert "abc12" not in str(info.value)


def test_key_kdf_iterations_default_to_600000_and_refuse_weak_values(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path, environ={}).key_kdf_iterations == 600_000
    assert load_settings(home=tmp_path, environ={"KYSO_KEY_KDF_ITERATIONS": "2000"}
                         ).key_kdf_iterations == 2000
    for bad in ("999", "lots", "-5"):
        with pytest.raises(ConfigError, match="KYSO_KEY_KDF_ITERATIONS"):
            load_settings(home=tmp_path, environ={"KYSO_KEY_KDF_ITERATIONS": bad})
