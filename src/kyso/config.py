"""Settings: home directory, database URL, passphrase sources.

Read from (highest first) command-line options, ``KYSO_*`` environment variables, the home's
``config.toml``, and built-in defaults. This module and the ``commands`` modules are the only
places that read the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kyso.errors import ConfigError

ENV_HOME = "KYSO_HOME"
ENV_DATABASE_URL = "KYSO_DATABASE_URL"
ENV_CA_PASSPHRASE = "KYSO_CA_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
ENV_P12_PASSPHRASE = "KYSO_P12_PASSPHRASE"  # noqa: S105
ENV_KEY_KDF_ITERATIONS = "KYSO_KEY_KDF_ITERATIONS"
DEFAULT_KEY_KDF_ITERATIONS = 600_000  # OWASP 2023 for PBKDF2-HMAC-SHA-256
MIN_KEY_KDF_ITERATIONS = 1_000
MIN_PASSPHRASE_LENGTH = 12
_CONFIG_KEYS = {"database_url"}


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    extra: Mapping[str, str] = field(default_factory=dict)
    # PBKDF2 iterations protecting CA and service keys at rest. Lower only for test suites.
    key_kdf_iterations: int = DEFAULT_KEY_KDF_ITERATIONS

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
    def audit_path(self) -> Path:
        return self.home / "audit" / "audit.jsonl"

    @property
    def pseudonym_key_path(self) -> Path:
        return self.home / "secrets" / "pseudonym.key"

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
    file_values = _read_config_file(home_path / "config.toml")
    url = database_url or env.get(ENV_DATABASE_URL) or file_values.get("database_url")
    if not url:
        url = f"sqlite:///{(home_path / 'kyso.db').absolute()}"
    return Settings(home=home_path.absolute(), database_url=url,
                    key_kdf_iterations=_iterations(env.get(ENV_KEY_KDF_ITERATIONS)))


def _iterations(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_KEY_KDF_ITERATIONS
    if not value.isdigit() or int(value) < MIN_KEY_KDF_ITERATIONS:
        raise ConfigError(f"{ENV_KEY_KDF_ITERATIONS} must be a whole number of at least "
                          f"{MIN_KEY_KDF_ITERATIONS}")
    return int(value)


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        values[key] = value
    return values


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
