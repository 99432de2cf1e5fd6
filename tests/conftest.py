"""Shared fixtures: a frozen clock, a fresh home, an initialised CA (EC P-384 for speed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kyso.audit import read_events
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.keys import KeyType

PASSPHRASE = "test-ca-passphrase"
# A public-looking host: ETSI linting rightly reports internal names (127.0.0.1) as errors.
BASE_URL = "http://pki.thainguyen.gov.vn"
T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)

STAFF = {
    "name": "Nguyễn Văn An",
    "id": "019099012345",
    "dob": "1999-04-02",
    "title": "Chuyên viên",
    "unit": "Văn phòng UBND xã Phú Đình",
    "email": "an.nv@thainguyen.gov.vn",
}
SEAL = {"name": "UBND xã Phú Đình", "tax_code": "4600100155", "budget_code": "1234567"}
CITIZEN = {"name": "Trần Thị Bình", "id": "033301000123"}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# CA keys are protected by 600 000 PBKDF2 iterations in production (0.1 s per key); the suite
# creates hundreds of hierarchies, so it uses fewer. tests/pki/test_authority.py checks the
# production default.
# Likewise argon2id: the suite hashes passwords with the "test-fast" parameters (about a
# thousand times cheaper); tests/authn/test_passwords.py checks the production default.
FAST_KDF = {"KYSO_KEY_KDF_ITERATIONS": "2000", "KYSO_PASSWORD_HASH": "test-fast"}


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_KDF.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def kyso(home: Path, clock: FrozenClock) -> Iterator[Kyso]:
    ctx = open_kyso(load_settings(home=home, environ=FAST_KDF), clock=clock, actor="admin:test")
    yield ctx
    ctx.close()


@pytest.fixture
def ca(kyso: Kyso) -> CertificateAuthority:
    init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên", province="thai-nguyen",
            key_type=KeyType.EC_P384, base_url=BASE_URL)
    return CertificateAuthority(kyso, PASSPHRASE)


def audit_events(kyso: Kyso) -> list[dict[str, Any]]:
    """Every event recorded so far, in order."""
    return read_events(kyso.settings.audit_dir)


def audit_text(kyso: Kyso) -> str:
    """The raw text of every audit segment, for checks that nothing secret was written."""
    segments = sorted((kyso.settings.audit_dir / "segments").glob("*.jsonl"))
    return "".join(p.read_text(encoding="utf-8") for p in segments)
