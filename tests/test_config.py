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


# --- [security] [audit] [authn] [backup] sections ---------------------------------------------

def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")
    return home


def test_sections_default_to_a_level_3_deployment(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, environ={})
    assert (settings.security.level, settings.security.regime) == (3, "current")
    assert settings.security.ntp_server == ""
    assert settings.audit.retention_days == 0
    assert settings.authn.max_login_failures == 5
    assert settings.authn.admin_mfa is True
    assert (settings.authn.session_idle_admin_minutes,
            settings.authn.session_idle_user_minutes) == (5, 15)
    assert settings.authn.inactive_account_days == 45
    assert settings.backup_dir == tmp_path / "backup"


def test_sections_are_read_from_the_config_file(tmp_path: Path) -> None:
    home = write_config(tmp_path / "home", '''
[security]
level = 4
regime = "legacy"
ntp_server = "time.thainguyen.gov.vn"

[audit]
retention_days = 200
rotate_daily = false

[authn]
password_policy = "vneid-compat"
max_login_failures = 3
lockout = "permanent"
admin_mfa = true

[backup]
dir = "/srv/backup/kyso"
offsite = true
''')
    settings = load_settings(home=home, environ={})
    assert (settings.security.level, settings.security.regime) == (4, "legacy")
    assert settings.security.ntp_server == "time.thainguyen.gov.vn"
    assert settings.audit.retention_days == 200
    assert settings.audit.rotate_daily is False
    assert settings.audit.checkpoint_interval_seconds == 3600  # untouched keys keep defaults
    assert (settings.authn.password_policy, settings.authn.max_login_failures,
            settings.authn.lockout) == ("vneid-compat", 3, "permanent")
    assert settings.backup_dir == Path("/srv/backup/kyso")
    assert settings.backup.offsite is True


@pytest.mark.parametrize(("text", "message"), [
    ("[authn]\nmfa = true\n", r"unknown setting\(s\) in \[authn\]: mfa"),
    ("[audit]\nretention = 90\nsegments = 2\n", r"unknown setting\(s\) in \[audit\]: retention, "
                                                r"segments"),
    ("[logging]\nlevel = 1\n", r"unknown setting\(s\) logging"),
    ("authn = 5\n", r"authn must be a table \(\[authn\]\)"),
    ("[authn.extra]\nx = 1\n", r"unknown setting\(s\) in \[authn\]: extra"),
])
def test_unknown_keys_in_sections_are_refused(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, environ={})


@pytest.mark.parametrize(("text", "message"), [
    ("[authn]\nadmin_mfa = 1\n", r"\[authn\] admin_mfa must be true or false"),
    ("[authn]\nadmin_mfa = \"yes\"\n", r"\[authn\] admin_mfa must be true or false"),
    ("[authn]\nmax_login_failures = true\n", r"\[authn\] max_login_failures must be a whole number"),
    ("[authn]\nmax_login_failures = 5.0\n", r"\[authn\] max_login_failures must be a whole number"),
    ("[security]\nlevel = \"3\"\n", r"\[security\] level must be a whole number"),
    ("[security]\nntp_server = 123\n", r"\[security\] ntp_server must be a string"),
    ("[backup]\ndir = [\"/a\"]\n", r"\[backup\] dir must be a string"),
])
def test_wrong_types_in_sections_are_refused(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, environ={})


@pytest.mark.parametrize(("text", "message"), [
    ('[security]\nregime = "new"\n', r"\[security\] regime must be one of current, legacy"),
    ('[authn]\nlockout = "forever"\n', r"\[authn\] lockout must be one of temporary, permanent, "
                                       r"mixed"),
    ('[authn]\npassword_policy = "nist"\n', r"\[authn\] password_policy must be one of "
                                            r"vneid-compat, nist-aal2"),
])
def test_choices_are_enforced(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, environ={})


@pytest.mark.parametrize(("text", "message"), [
    ("[security]\nlevel = 0\n", r"\[security\] level must be between 1 and 5"),
    ("[security]\nlevel = 6\n", r"\[security\] level must be between 1 and 5"),
    ("[audit]\nsegment_max_bytes = 100\n", r"\[audit\] segment_max_bytes must be between 4096"),
    ("[audit]\ncheckpoint_interval_seconds = 0\n", r"checkpoint_interval_seconds must be between 1"),
    ("[audit]\nretention_days = -1\n", r"\[audit\] retention_days must be 0 or more$"),
    ("[authn]\nmax_login_failures = -5\n", r"\[authn\] max_login_failures must be 0 or more$"),
])
def test_ranges_are_enforced(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, environ={})


def test_range_limits_are_inclusive(tmp_path: Path) -> None:
    write_config(tmp_path, "[security]\nlevel = 5\n[audit]\nsegment_max_bytes = 4096\n")
    settings = load_settings(home=tmp_path, environ={})
    assert (settings.security.level, settings.audit.segment_max_bytes) == (5, 4096)


def test_a_config_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read .*config\.toml: Is a directory"):
        load_settings(home=tmp_path, environ={})


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"[authn]\nlockout = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(home=tmp_path, environ={})
