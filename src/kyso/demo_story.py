"""The story ``kyso demo`` tells: who is in it, the titles of its nine steps, what the steps
share while it runs (:class:`DemoRun`), and how it is told (``✔`` lines, step headers with
their timings, the opening and the closing lines).

The steps themselves are in :mod:`kyso.demo_steps`; :func:`kyso.demo.run_demo` plays them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kyso.authn.passwords import check_password
from kyso.config import DEFAULT_KEY_KDF_ITERATIONS, Settings
from kyso.context import Kyso
from kyso.demo_web import PortalClient
from kyso.files import atomic_write
from kyso.signing.gateway import AUDIENCE as SIGNING_AUDIENCE
from kyso.signing.gateway import FRESH_LOGIN
from kyso.signing.services import LocalServices

Out = Callable[[str], None]

# --- the cast ----------------------------------------------------------------------------------

ORG = "UBND tỉnh Thái Nguyên"
PROVINCE = "thai-nguyen"
STAFF = {"name": "Nguyễn Văn An", "id": "019099012345", "dob": "1999-04-02",
         "title": "Chuyên viên", "unit": "Văn phòng UBND xã Phú Đình",
         "email": "an.nv@thainguyen.gov.vn"}
SEAL = {"name": "UBND xã Phú Đình", "tax_code": "4600100155", "budget_code": "1234567"}
CITIZEN = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
           "sex": "female", "phone": "0912345678"}
OFFICER = "CA-TN-0042"
# The portal's access tokens are for the portal and for the signing gateway it calls for her.
PORTAL = PortalClient(client_id="dichvucong", name="Cổng dịch vụ công tỉnh Thái Nguyên",
                      redirect_uri="https://dichvucong.thainguyen.gov.vn/oidc/callback",
                      audiences=("dichvucong", SIGNING_AUDIENCE))
SIGNING_MAX_AGE = FRESH_LOGIN  # seconds: how fresh the step-up must be for the gateway
FACE_PORTRAIT = b"\xff\xd8\xff\xe0kyso demo portrait\xff\xd9"  # DG2 placeholder (JPEG markers)
DOSSIER_TITLE = "Don de nghi cap ban sao trich luc khai sinh"

STEPS = {
    1: ("ca", "Chứng thư số — the province's CA issues the certificates"),
    2: ("enrolment", "Định danh điện tử mức 2 — the citizen is enrolled at level 2 with her chip "
                     "ID card"),
    3: ("login", "Đăng nhập — she logs in to the provincial portal through the e-ID provider "
                 "and registers a signing certificate at the signing gateway"),
    4: ("step-up-and-citizen-signature", "Ký đơn — she signs her application through the "
                                         "signing gateway after a level-2 step-up"),
    5: ("approval", "Phê duyệt — the official approves the dossier"),
    6: ("seal", "Đóng dấu — the commune People's Committee seals it"),
    7: ("verification", "Kiểm tra — a backend service verifies it with only the root "
                        "certificate"),
    8: ("audit", "Nhật ký kiểm toán — the auditor checks the audit log"),
    9: ("policy", "Cấp độ 3 — the level-3 policy report (current regime; a report, not a gate)"),
}


# --- what the steps make and share ---------------------------------------------------------------

@dataclass(frozen=True)
class DemoCertificate:
    """A certificate the demo made: the staff's and the seal's with their PKCS#12; the
    citizen's with no PKCS#12 (her key never leaves the signing gateway) and its credential
    id there."""

    role: str  # staff | seal | citizen
    holder: str
    serial: str
    pkcs12: Path | None
    certificate: Path
    credential_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "holder": self.holder, "serial": self.serial,
                                "pkcs12": str(self.pkcs12) if self.pkcs12 else None,
                                "certificate": str(self.certificate)}
        if self.credential_id is not None:
            data["credential_id"] = self.credential_id
        return data


@dataclass(frozen=True)
class DemoSecrets:
    """The demo's own random passphrases, written to ``<home>/demo-secrets.txt`` only."""

    citizen_password: str
    ca: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_keys: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    staff_p12: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    seal_p12: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @classmethod
    def new(cls, password_policy: str) -> DemoSecrets:
        while True:  # a random password practically always passes; the policy has the last word
            candidate = secrets.token_urlsafe(18)
            if check_password(candidate, password_policy).ok:
                return cls(candidate)

    def __repr__(self) -> str:
        return "DemoSecrets(<hidden>)"

    def write(self, path: Path, extra: dict[str, str]) -> None:
        values = {"KYSO_CA_PASSPHRASE": self.ca, "KYSO_TOKEN_KEY_PASSPHRASE": self.token_keys,
                  "DEMO_STAFF_P12_PASSPHRASE": self.staff_p12,
                  "DEMO_SEAL_P12_PASSPHRASE": self.seal_p12,
                  "DEMO_CITIZEN_ID": CITIZEN["id_number"],
                  "DEMO_CITIZEN_PASSWORD": self.citizen_password, **extra}
        text = ("# kyso demo: the passphrases of this demo home only (`set -a; . FILE; set +a`)\n"
                + "".join(f"{k}={v}\n" for k, v in values.items()))
        atomic_write(path, text.encode("utf-8"), mode=0o600)


@dataclass
class DemoRun:
    """What the steps share while the demo runs, and how they tell it through ``out``."""

    kyso: Kyso
    out: Out
    secrets: DemoSecrets
    folder: Path
    services: LocalServices
    certificates: dict[str, DemoCertificate] = field(default_factory=dict)
    documents: list[tuple[str, Path]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)
    _running: tuple[str, float] | None = None

    def say(self, line: str) -> None:
        self.out("   ✔ " + line)

    def rel(self, path: Path) -> str:
        home = self.kyso.settings.home
        return str(path.relative_to(home)) if path.is_relative_to(home) else str(path)

    def step(self, number: int) -> None:
        """Close the running step's timing and, unless ``number`` is 0, start that step."""
        now = time.perf_counter()
        if self._running is not None:
            self.timings.append((self._running[0], now - self._running[1]))
            self._running = None
        if number:
            key, title = STEPS[number]
            self.out(f"{number}. {title}")
            self._running = (f"{number}-{key}", now)


# --- the opening and the closing ---------------------------------------------------------------

def tell_opening(out: Out, home: Path, settings: Settings, secrets_file: Path) -> None:
    """What the demo is, where it plays, and how strong its key files and passwords are."""
    out("kyso demo — hồ sơ trực tuyến từ đầu đến cuối (an online application for a copy of a "
        "birth-registration extract, from start to finish)")
    out(f"   home     {home}")
    weak = (settings.key_kdf_iterations < DEFAULT_KEY_KDF_ITERATIONS
            or settings.authn.password_hash == "test-fast")  # noqa: S105 - a parameter set
    out(f"            SQLite; key files PBKDF2-SHA256 {settings.key_kdf_iterations} iterations; "
        f"passwords argon2id {settings.authn.password_hash}"
        + (" — weaker than the production defaults, as KYSO_KEY_KDF_ITERATIONS / "
           "KYSO_PASSWORD_HASH say" if weak else ""))
    out(f"   secrets  {secrets_file} (this demo's random passphrases, mode 0600, never printed)")


def tell_closing(d: DemoRun, total: float, home: Path, final: Path) -> None:
    """The time per step, and what to try next on the demo's home."""
    spent = " · ".join(f"{k.split('-')[0]}: {t:.1f} s" for k, t in d.timings)
    d.out(f"Xong (done) in {total:.1f} s — per step {spent}")
    d.out(f"Try next:  export KYSO_HOME={home}")
    d.out(f"           kyso pdf verify {final}")
    d.out("           kyso audit show --layer signing · kyso audit verify · "
          "kyso policy check --level 3")
