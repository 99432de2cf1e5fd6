"""Settings: home directory, database URL, passphrase sources.

Read from (highest first) command-line options, ``KYSO_*`` environment variables, the home's
``config.toml``, and built-in defaults. This module and the ``commands`` modules are the only
places that read the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kyso.errors import ConfigError

ENV_HOME = "KYSO_HOME"
ENV_DATABASE_URL = "KYSO_DATABASE_URL"
ENV_CA_PASSPHRASE = "KYSO_CA_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
ENV_P12_PASSPHRASE = "KYSO_P12_PASSPHRASE"  # noqa: S105
ENV_KEY_KDF_ITERATIONS = "KYSO_KEY_KDF_ITERATIONS"
ENV_TOKEN_KEY_PASSPHRASE = "KYSO_TOKEN_KEY_PASSPHRASE"  # noqa: S105 - the variable's name
ENV_PASSWORD_HASH = "KYSO_PASSWORD_HASH"  # noqa: S105 - the variable's name
PASSWORD_HASHES = ("owasp", "rfc9106-low-memory", "test-fast")
DEFAULT_KEY_KDF_ITERATIONS = 600_000  # OWASP 2023 for PBKDF2-HMAC-SHA-256
MIN_KEY_KDF_ITERATIONS = 1_000
MIN_PASSPHRASE_LENGTH = 12
_CONFIG_KEYS = {"database_url"}
LOCKOUT_MODES = ("temporary", "permanent", "mixed")
PASSWORD_POLICIES = ("vneid-compat", "nist-aal2")
REGIMES = ("current", "legacy")


@dataclass(frozen=True)
class SecuritySettings:
    """``[security]``: the level this deployment must meet and how its clock is checked."""

    level: int = 3  # administrative procedures: at least level 3
    regime: str = "current"
    ntp_server: str = ""  # empty: the clock offset needs evidence instead of a measurement
    max_clock_offset_ms: int = 1000


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: segment rotation, checkpoint schedule and retention of the audit log."""

    retention_days: int = 0  # 0: the minimum the security level asks for
    segment_max_bytes: int = 64 * 1024 * 1024
    rotate_daily: bool = True
    checkpoint_interval_seconds: int = 3600
    verify_max_age_hours: int = 24  # "integrity verified recently"


@dataclass(frozen=True)
class AuthnSettings:
    """``[authn]``: login, lockout and session rules of the e-ID service (Keycloak names)."""

    password_policy: str = "nist-aal2"  # noqa: S105 - a policy name
    password_hash: str = "owasp"  # noqa: S105 - argon2id parameter set (test-fast: suites only)
    max_login_failures: int = 5
    lockout: str = "mixed"
    wait_increment_seconds: int = 60
    max_wait_seconds: int = 900
    failure_reset_seconds: int = 43200
    max_temporary_lockouts: int = 1  # mixed mode: permanent after more temporary ones
    admin_mfa: bool = True
    remote_mfa: bool = True
    session_idle_admin_minutes: int = 5
    session_idle_user_minutes: int = 15
    session_max_hours: int = 10
    inactive_account_days: int = 45


@dataclass(frozen=True)
class BackupSettings:
    """``[backup]``: where encrypted backups of the CA store are kept (3-2-1 at level 3)."""

    dir: str = ""  # empty: <home>/backup
    max_age_days: int = 1
    encrypted: bool = True
    offsite: bool = False


_SECTIONS: dict[str, type] = {
    "security": SecuritySettings,
    "audit": AuditSettings,
    "authn": AuthnSettings,
    "backup": BackupSettings,
}
_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("security", "regime"): REGIMES,
    ("authn", "lockout"): LOCKOUT_MODES,
    ("authn", "password_policy"): PASSWORD_POLICIES,
    ("authn", "password_hash"): PASSWORD_HASHES,
}
_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("security", "level"): (1, 5),
    ("audit", "segment_max_bytes"): (4096, 1 << 40),
    ("audit", "checkpoint_interval_seconds"): (1, 366 * 86400),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    extra: Mapping[str, str] = field(default_factory=dict)
    # PBKDF2 iterations protecting CA and service keys at rest. Lower only for test suites.
    key_kdf_iterations: int = DEFAULT_KEY_KDF_ITERATIONS
    security: SecuritySettings = field(default_factory=SecuritySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    authn: AuthnSettings = field(default_factory=AuthnSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)

    @property
    def ca_dir(self) -> Path:
        return self.home / "ca"

    @property
    def crl_dir(self) -> Path:
        return self.home / "crl"

    @property
    def issued_dir(self) -> Path:
        return self.home / "issued"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def backup_dir(self) -> Path:
        if not self.backup.dir:
            return self.home / "backup"
        return self.home / Path(self.backup.dir).expanduser()  # relative: inside the home

    @property
    def pseudonym_key_path(self) -> Path:
        return self.home / "secrets" / "pseudonym.key"

    @property
    def token_keys_dir(self) -> Path:
        """The e-ID provider's token signing keys (encrypted PKCS#8) and public JWKS."""
        return self.home / "secrets" / "token-keys"

    @property
    def profiles_dir(self) -> Path:
        """Site profiles here override the shipped ones of the same name."""
        return self.home / "profiles"


def load_settings(
    home: str | Path | None = None,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    home_path = Path(home or env.get(ENV_HOME) or Path.home() / ".kyso").expanduser()
    if home_path.exists() and not home_path.is_dir():
        raise ConfigError(f"home {home_path} exists and is not a directory")
    file_values, sections = _read_config_file(home_path / "config.toml")
    url = database_url or env.get(ENV_DATABASE_URL) or file_values.get("database_url")
    if not url:
        url = f"sqlite:///{(home_path / 'kyso.db').absolute()}"
    hash_name = env.get(ENV_PASSWORD_HASH)
    if hash_name:
        if hash_name not in PASSWORD_HASHES:
            raise ConfigError(f"{ENV_PASSWORD_HASH} must be one of {', '.join(PASSWORD_HASHES)}")
        sections["authn"] = replace(sections.get("authn", AuthnSettings()), password_hash=hash_name)
    return Settings(home=home_path.absolute(), database_url=url,
                    key_kdf_iterations=_iterations(env.get(ENV_KEY_KDF_ITERATIONS)), **sections)


def _iterations(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_KEY_KDF_ITERATIONS
    if not value.isdigit() or int(value) < MIN_KEY_KDF_ITERATIONS:
        raise ConfigError(f"{ENV_KEY_KDF_ITERATIONS} must be a whole number of at least "
                          f"{MIN_KEY_KDF_ITERATIONS}")
    return int(value)


def _read_config_file(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    if not path.exists():
        return {}, {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:  # a folder named config.toml, no permission
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - _CONFIG_KEYS - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            sections[key] = _section(path, key, value)
        elif not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        else:
            values[key] = value
    return values, sections


def _section(path: Path, name: str, table: object) -> Any:
    """One ``[name]`` table, every key known and of its default's type."""
    cls = _SECTIONS[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name} must be a table ([{name}])")
    known = {f.name: f for f in fields(cls)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
    default = cls()
    for key, value in table.items():
        expected = type(getattr(default, key))
        # bool is an int in Python; TOML keeps them apart, and so do we.
        if type(value) is not expected:
            raise ConfigError(f"{path}: [{name}] {key} must be {_TYPE_NAMES[expected]}")
        choices = _CHOICES.get((name, key))
        if choices and value not in choices:
            raise ConfigError(f"{path}: [{name}] {key} must be one of {', '.join(choices)}")
        low, high = _RANGES.get((name, key), (0, _NO_LIMIT))
        if expected is int and not low <= value <= high:
            limits = f"{low} or more" if high == _NO_LIMIT else f"between {low} and {high}"
            raise ConfigError(f"{path}: [{name}] {key} must be {limits}")
    return replace(default, **table)


_TYPE_NAMES = {int: "a whole number", bool: "true or false", str: "a string"}
_NO_LIMIT = 1 << 62


def read_passphrase_file(path: Path) -> str:
    """The first line of a passphrase file, without its line ending."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"passphrase file {path} is not UTF-8 text") from None
    lines = text.splitlines()
    value = lines[0] if lines else ""
    if not value:
        raise ConfigError(f"passphrase file {path} is empty")
    return value


def passphrase_from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value if value else None


def check_new_passphrase(value: str, what: str) -> str:
    if len(value) < MIN_PASSPHRASE_LENGTH:
        raise ConfigError(f"{what} must be at least {MIN_PASSPHRASE_LENGTH} characters")
    return value
