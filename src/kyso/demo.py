"""``kyso demo``: the one scenario of DESIGN.md, played end to end on the embedded defaults.

A citizen applies online for a copy of her birth-registration extract at the commune:

1. the province's CA is created; the commune's official (``staff``), the commune People's
   Committee (``seal``) and the citizen (``citizen``, her key held by the signing service)
   receive certificates in encrypted PKCS#12 files;
2. she is enrolled at level 2 with her chip ID card (test CSCA → Document Signer → SOD; passive
   authentication must pass), sets a password and enrols an authenticator app (TOTP);
3. she logs in to the provincial portal through the running OpenID Connect provider: a real
   uvicorn server on a free loopback port, driven over HTTPS exactly as a browser would
   (authorize → login form with CSRF → TOTP form → code → token with PKCE S256);
4. a level-2 step-up (fresh password + TOTP) whose token the signing service checks with
   :class:`~kyso.authn.rp.TokenVerifier` unlocks her key, which signs the application (B-LT);
5. the official approves with a visible Decree 30 stamp (B-LT);
6. the agency seal certifies and locks the dossier (B-LTA);
7. a backend service holding only the root certificate verifies the dossier (TOTAL-PASSED)
   and catches a copy changed after signing (TOTAL-FAILED);
8. a checkpoint is signed and the audit log verifies;
9. the level-3 policy report of the current regime is summed up (a report: items that need
   evidence do not fail the demo).

Every step is a function; :func:`run_demo` runs them in order, tells the story through ``out``
and returns a :class:`DemoResult`. Any step that does not turn out as the scenario says raises
a :class:`~kyso.errors.KysoError` naming it. The demo's passphrases are random, written to
``<home>/demo-secrets.txt`` (0600) and never printed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import pyotp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kyso.audit import Layer, Outcome, read_events
from kyso.audit.segments import Layout, write_state
from kyso.audit.signer import create_checkpoint, verify_with_store
from kyso.audit.verify import Status as AuditStatus
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.chip import ChipPersonalData, chip_to_json, new_document_number
from kyso.authn.csca import load_csca_certificate, load_csca_crl
from kyso.authn.enrolment import enrol_level2, issue_test_chip
from kyso.authn.login import LoginService
from kyso.authn.otp import TotpSettings
from kyso.authn.passwords import check_password
from kyso.authn.registry import Level, Person
from kyso.authn.rp import TokenVerifier, VerifiedToken
from kyso.authn.rp_keys import RemoteJwks
from kyso.authn.tokens import TokenType
from kyso.clock import VIETNAM, Clock, SystemClock, vn_iso
from kyso.config import DEFAULT_KEY_KDF_ITERATIONS, Settings, load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import AuditError, AuthnError, CAExistsError, ConfigError, KysoError, SigningError
from kyso.files import StagedFiles, atomic_write, ensure_private_dir
from kyso.pki import authority, issuance
from kyso.pki.identifiers import mask_id
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.records import common_name_of
from kyso.pki.serials import serial_hex
from kyso.pki.subjects import SubjectRequest
from kyso.policies.check import evaluate
from kyso.policies.facts import facts_of
from kyso.policies.models import Status
from kyso.signing.appearance import StampRequest, StampStyle
from kyso.signing.sample import write_sample_pdf
from kyso.signing.services import LocalServices
from kyso.signing.setup import build_verifier, check_signer, load_signer, store_lookup
from kyso.signing.sign import Level as PadesLevel
from kyso.signing.sign import SignRequest
from kyso.signing.verdict import FileReport, Indication

__all__ = ["DemoCertificate", "DemoResult", "prepare_home", "run_demo"]

Out = Callable[[str], None]

LOOPBACK = "127.0.0.1"
MARKER = "demo.json"  # written first: marks the home as the demo's (a later demo may replace it)
MARKER_TEXT = '{"format": "kyso-demo/1"}\n'
SECRETS_FILE = "demo-secrets.txt"
ARTIFACTS = "demo"
# What a demo leaves in its home: a previous demo's home holding only these may be replaced.
DEMO_ENTRIES = frozenset({MARKER, SECRETS_FILE, ARTIFACTS, "kyso.db", "kyso.db-wal", "kyso.db-shm",
                          "kyso.db-journal", "ca", "crl", "audit", "secrets", "csca"})

ORG = "UBND tỉnh Thái Nguyên"
PROVINCE = "thai-nguyen"
STAFF = {"name": "Nguyễn Văn An", "id": "019099012345", "dob": "1999-04-02",
         "title": "Chuyên viên", "unit": "Văn phòng UBND xã Phú Đình",
         "email": "an.nv@thainguyen.gov.vn"}
SEAL = {"name": "UBND xã Phú Đình", "tax_code": "4600100155", "budget_code": "1234567"}
CITIZEN = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
           "sex": "female", "phone": "0912345678"}
OFFICER = "CA-TN-0042"
CLIENT_ID = "dichvucong"
CLIENT_NAME = "Cổng dịch vụ công tỉnh Thái Nguyên"
REDIRECT_URI = "https://dichvucong.thainguyen.gov.vn/oidc/callback"
SIGNING_MAX_AGE = 120  # seconds: how fresh the step-up must be for the signing service
FACE_PORTRAIT = b"\xff\xd8\xff\xe0kyso demo portrait\xff\xd9"  # DG2 placeholder (JPEG markers)
DOSSIER_TITLE = "Don de nghi cap ban sao trich luc khai sinh"


# --- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoCertificate:
    role: str  # staff | seal | citizen
    holder: str
    serial: str
    pkcs12: Path
    certificate: Path

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "holder": self.holder, "serial": self.serial,
                "pkcs12": str(self.pkcs12), "certificate": str(self.certificate)}


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and what every check said. No secret is held here."""

    home: Path
    secrets_file: Path
    key_kdf_iterations: int  # PBKDF2 iterations of the key files
    password_hash: str  # argon2id parameter set of the passwords
    issuer: str
    certificates: tuple[DemoCertificate, ...]
    trust_anchor: Path
    chip: Path
    passive_auth: str
    citizen: str  # masked ID number
    login_acr: str
    step_up_acr: str
    documents: tuple[tuple[str, Path], ...]  # (stage, file), in the order they were made
    final_pdf: Path
    final_verdict: str
    tampered_pdf: Path
    tampered_verdict: str
    audit_ok: bool
    audit_entries: int
    audit_root: str
    checkpoint: Path
    policy_verdict: str
    policy_counts: tuple[tuple[str, int], ...]
    timings: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home), "secrets_file": str(self.secrets_file),
            "settings": {"key_kdf_iterations": self.key_kdf_iterations,
                         "password_hash": self.password_hash},
            "issuer": self.issuer,
            "certificates": [c.to_dict() for c in self.certificates],
            "trust_anchor": str(self.trust_anchor), "chip": str(self.chip),
            "passive_auth": self.passive_auth, "citizen": self.citizen,
            "login_acr": self.login_acr, "step_up_acr": self.step_up_acr,
            "documents": {name: str(path) for name, path in self.documents},
            "final": {"file": str(self.final_pdf), "indication": self.final_verdict},
            "tampered": {"file": str(self.tampered_pdf), "indication": self.tampered_verdict},
            "audit": {"ok": self.audit_ok, "entries": self.audit_entries,
                      "root": self.audit_root, "checkpoint": str(self.checkpoint)},
            "policy": {"level": 3, "regime": "current", "verdict": self.policy_verdict,
                       "summary": dict(self.policy_counts)},
            "timings": {name: round(seconds, 2) for name, seconds in self.timings},
        }


# --- the home ----------------------------------------------------------------------------------

def prepare_home(home: Path) -> None:
    """Make ``home`` ready: created when missing. A directory that holds anything but a
    ``config.toml`` is refused — unless a previous demo made it (its marker is there, and
    nothing the demo does not make): that demo's files are then removed (``config.toml``
    stays). So a real kyso home, or any other folder, is never touched."""
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{home} exists and is not a directory")
    ensure_private_dir(home)
    entries = {p.name for p in home.iterdir()} - {"config.toml"}
    if not entries:
        return
    if MARKER not in entries:
        what = "a kyso home" if entries & {"kyso.db", "ca", "audit"} else "other files"
        raise CAExistsError(f"{home} already holds {what} ({', '.join(sorted(entries)[:5])}); "
                            "the demo needs a new or empty directory (or a previous demo's)")
    foreign = sorted(entries - DEMO_ENTRIES)
    if foreign:
        raise CAExistsError(f"{home} was a demo's home but now also holds "
                            f"{', '.join(foreign[:5])}; the demo does not replace it")
    for name in sorted(entries):
        path = home / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _settings(home: Path) -> Settings:
    """The embedded defaults: SQLite in the home, whatever KYSO_DATABASE_URL says."""
    return load_settings(home=home, database_url=f"sqlite:///{(home / 'kyso.db').absolute()}")


def _password(policy: str) -> str:
    while True:  # a random password practically always passes; the policy has the last word
        candidate = secrets.token_urlsafe(18)
        if check_password(candidate, policy).ok:
            return candidate


@dataclass(frozen=True)
class _Secrets:
    """The demo's own random passphrases, written to ``<home>/demo-secrets.txt`` only."""

    citizen_password: str
    ca: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_keys: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    staff_p12: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    seal_p12: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    citizen_p12: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def __repr__(self) -> str:
        return "_Secrets(<hidden>)"

    def write(self, path: Path, extra: dict[str, str]) -> None:
        values = {"KYSO_CA_PASSPHRASE": self.ca, "KYSO_TOKEN_KEY_PASSPHRASE": self.token_keys,
                  "DEMO_STAFF_P12_PASSPHRASE": self.staff_p12,
                  "DEMO_SEAL_P12_PASSPHRASE": self.seal_p12,
                  "DEMO_CITIZEN_P12_PASSPHRASE": self.citizen_p12,
                  "DEMO_CITIZEN_ID": CITIZEN["id_number"],
                  "DEMO_CITIZEN_PASSWORD": self.citizen_password, **extra}
        text = ("# kyso demo: the passphrases of this demo home only (`set -a; . FILE; set +a`)\n"
                + "".join(f"{k}={v}\n" for k, v in values.items()))
        atomic_write(path, text.encode("utf-8"), mode=0o600)


@dataclass
class _Demo:
    """What the steps share while the demo runs."""

    kyso: Kyso
    out: Out
    secrets: _Secrets
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


# --- 1. certificates ---------------------------------------------------------------------------

def create_ca_and_certificates(d: _Demo) -> None:
    kyso = d.kyso
    init = authority.init_ca(kyso, passphrase=d.secrets.ca, org=ORG, province=PROVINCE,
                             key_type=KeyType.EC_P384)
    d.say(f'CA "{init.settings.org}" (EC P-384): root → staff, citizen and services CAs, with '
          "OCSP responders, a timestamping authority and the audit-log signer")
    ca = authority.CertificateAuthority(kyso, d.secrets.ca)
    root = d.folder / "root.pem"
    atomic_write(root, ca.certificate("root").public_bytes(serialization.Encoding.PEM))
    d.facts["root"] = root
    people = (
        ("staff", "can-bo", SubjectRequest.of(**STAFF), d.secrets.staff_p12,
         "cán bộ (the official) {cn}, {title} — staff certificate {serial}"),
        ("seal", "con-dau", SubjectRequest.of(**SEAL), d.secrets.seal_p12,
         "con dấu (the agency seal) {cn}, MST " + SEAL["tax_code"] + " — seal certificate {serial}"),
        ("citizen", "cong-dan", SubjectRequest.of(name=CITIZEN["full_name"],
                                                  id=CITIZEN["id_number"]), d.secrets.citizen_p12,
         "công dân (the citizen) {cn}, {masked} — signing certificate {serial}, its key held "
         "by the signing service"),
    )
    for role, stem, request, passphrase, text in people:
        issued = _issue(kyso, ca, role, request, d.folder / f"{stem}.p12",
                        d.folder / f"{stem}.crt.pem", passphrase)
        d.certificates[role] = issued
        d.say(text.format(cn=issued.holder, title=STAFF["title"], serial=issued.serial[:16] + "…",
                          masked=mask_id(CITIZEN["id_number"]))
              + f" → {d.rel(issued.pkcs12)}")


def _issue(kyso: Kyso, ca: authority.CertificateAuthority, profile: str,
           request: SubjectRequest, p12: Path, pem: Path, passphrase: str) -> DemoCertificate:
    """Issue with a generated key; the PKCS#12 is on disk before the certificate is stored."""
    prepared = issuance.prepare(kyso, ca, profile, request)
    assert prepared.private_key is not None  # a generated key
    cert = prepared.certificate
    bundle = build_pkcs12(prepared.private_key, cert, ca.chain(prepared.issuer.name), passphrase,
                          common_name_of(cert))
    staged = StagedFiles()
    try:
        staged.add(p12, bundle, mode=0o600)
        staged.add(pem, cert.public_bytes(serialization.Encoding.PEM))
        issuance.commit(kyso, ca, [prepared])
    except BaseException:
        staged.discard()
        raise
    staged.publish()
    return DemoCertificate(profile, common_name_of(cert), serial_hex(cert.serial_number), p12, pem)


def _ten_years_after(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 10)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 10, day=28)


# --- 2. level-2 enrolment ----------------------------------------------------------------------

@dataclass
class _Phone:
    """The citizen's authenticator app. A person would wait for the next code after using one
    (up to 30 s); the app here takes the earliest step the verifier still accepts (it allows one
    step of drift either way) and never repeats one, so the demo never waits. Each code is
    still accepted once only."""

    secret: str = field(repr=False)
    clock: Clock
    settings: TotpSettings = field(default_factory=TotpSettings)
    last_step: int | None = None

    def code(self) -> str:
        period = int(self.settings.period.total_seconds())
        now_step = int(self.clock.now().timestamp()) // period
        step = now_step - self.settings.window
        if self.last_step is not None:
            step = max(step, self.last_step + 1)
        if step > now_step + self.settings.window:
            raise AuthnError("the authenticator has no unused code yet; try again in 30 s")
        self.last_step = step
        return pyotp.TOTP(self.secret, digits=self.settings.digits, interval=period).at(
            step * period)


def enrol_citizen(d: _Demo) -> _Phone:
    kyso = d.kyso
    today = kyso.now().astimezone(VIETNAM).date()
    person = Person.of(**CITIZEN, today=today)
    data = ChipPersonalData(person=person, document_number=new_document_number(), issue_date=today,
                            expiry_date=_ten_years_after(today),
                            place_of_origin="Phú Bình, Thái Nguyên",
                            place_of_residence="Xã Phú Đình, tỉnh Thái Nguyên")
    chip = issue_test_chip(kyso, d.secrets.ca, data, FACE_PORTRAIT)
    chip_file = d.folder / "chip.json"
    atomic_write(chip_file, chip_to_json(chip), exclusive=True)
    d.facts["chip"] = chip_file
    d.say(f"CCCD gắn chip (chip ID card) no. {data.document_number}: DG1, DG2, DG13 signed by a "
          f"Document Signer of the test CSCA (Bộ Công an, test) → {d.rel(chip_file)}")
    crl = load_csca_crl(kyso)
    result = enrol_level2(kyso, person.id_number, chip, officer=OFFICER, face_score=0.95,
                          fingerprint_score=0.97, consent=True,
                          csca=[load_csca_certificate(kyso)], crls=[crl] if crl is not None else [],
                          phone=person.phone)
    report = result.passive_auth
    d.facts["passive_auth"] = report.indication.value
    d.say(f"xác thực thụ động (passive authentication): {report.indication.value} — "
          + ", ".join(c.check.value for c in report.checks))
    d.say(f"định danh mức 2 (level 2): {result.identity.masked_id} enrolled in person by officer "
          f"{OFFICER} (face 0.95, fingerprints 0.97, consent recorded)")
    login = LoginService(kyso)
    login.set_password(result.identity.subject, d.secrets.citizen_password)
    enrolment = login.credentials.begin_totp(result.identity.subject)
    phone = _Phone(enrolment.secret, kyso.clock)
    login.credentials.confirm_totp(result.identity.subject, enrolment.credential_id, phone.code(),
                                   login.totp)
    d.facts["masked_id"] = result.identity.masked_id
    d.facts["totp_secret"] = enrolment.secret
    d.say(f"mật khẩu (password) set under the {kyso.settings.authn.password_policy} policy; "
          "ứng dụng xác thực (authenticator app, TOTP) enrolled with its first code")
    return phone


# --- 3 and 4. the provider, the browser, the portal --------------------------------------------

@dataclass(frozen=True)
class _Server:
    issuer: str
    tls: ssl.SSLContext  # trusts the throw-away TLS CA only
    client_secret: str = field(repr=False)


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away TLS CA and server certificate for 127.0.0.1: the provider's session cookie
    is a ``__Host-`` Secure cookie, which a browser sends back only over HTTPS. Valid around
    the real time, whatever the demo's clock says: the TLS stack checks it against that."""
    now = SystemClock().now()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kyso demo TLS CA (throw-away)")])

    def base(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1)))

    ca = (base(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (base(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]),
                   key.public_key())
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    atomic_write(files[0], ca.public_bytes(serialization.Encoding.PEM))
    atomic_write(files[1], server.public_bytes(serialization.Encoding.PEM))
    atomic_write(files[2], key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    return files


@contextlib.contextmanager
def running_provider(d: _Demo) -> Iterator[_Server]:
    """The HTTP service (``create_app``) served by uvicorn over HTTPS on a free loopback port, in
    a background thread, with the portal registered as a confidential client."""
    import uvicorn

    from kyso.server.app import create_app

    with tempfile.TemporaryDirectory(prefix="kyso-demo-tls.") as folder:
        ca_file, cert_file, key_file = _tls_files(Path(folder))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((LOOPBACK, 0))
            issuer = f"https://{LOOPBACK}:{sock.getsockname()[1]}"
            app = create_app(d.kyso.settings, kyso=d.kyso, key_passphrase=d.secrets.token_keys,
                             issuer=issuer)
            client = app.state.provider.clients.add(CLIENT_ID, CLIENT_NAME, [REDIRECT_URI],
                                                    confidential=True)
            d.kyso.record(Layer.AUTHN, "CLIENT_REGISTER", Outcome.SUCCESS, object=CLIENT_ID,
                          type="confidential", redirect_uris=[REDIRECT_URI])
            server = uvicorn.Server(uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", server_header=False,
                ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                      name="kyso-demo-server", daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 30  # start-up, not a measurement
                while not server.started and thread.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not server.started:
                    raise KysoError("the e-ID provider did not start on the loopback port")
                d.say(f"nhà cung cấp định danh (the e-ID's OpenID Connect provider) running at "
                      f"{issuer} (a throw-away TLS certificate for {LOOPBACK})")
                d.say(f'cổng dịch vụ công (the portal) "{CLIENT_NAME}" registered as client '
                      f"{CLIENT_ID} (confidential, PKCE S256)")
                assert client.secret is not None  # a confidential client
                yield _Server(issuer, ssl.create_default_context(cafile=str(ca_file)),
                              client.secret)
            finally:
                server.should_exit = True
                thread.join(timeout=10)
        finally:
            sock.close()


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Message
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self, *required: str) -> dict[str, Any]:
        """The body as a JSON object holding ``required``; AuthnError otherwise."""
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(name not in data for name in required):
            raise AuthnError(f"the provider's answer (HTTP {self.status}) is not the JSON "
                             f"object expected (with {', '.join(required)})")
        return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the caller reads the Location itself, as a browser's script would


class _Http:
    """HTTPS to the provider: its TLS CA trusted, no proxy, redirects not followed, cookies
    kept (``__Host-`` Secure cookies go back over HTTPS only, as in a browser)."""

    def __init__(self, server: _Server) -> None:
        self.base = server.issuer
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=server.tls),
            urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect())

    def request(self, url: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> _Reply:
        full = urljoin(self.base + "/", url)
        if not full.startswith(self.base + "/"):
            raise AuthnError(f"refusing to follow {full!r} off the provider")
        data = urlencode(form).encode("ascii") if form is not None else None
        req = urllib.request.Request(full, data=data, headers={  # noqa: S310 - https, checked
            "Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5", "User-Agent": "kyso-demo",
            **(headers or {})})
        try:
            with self._opener.open(req, timeout=30) as response:
                return _Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:  # 3xx (not followed) and 4xx/5xx answers
            with exc:
                return _Reply(exc.code, exc.headers, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise AuthnError(f"cannot reach the e-ID provider at {self.base}: {reason}") from None


class _Forms(HTMLParser):
    """A page's forms as a browser submits them: action → the fields' current values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = self.forms.setdefault(a.get("action", ""), {})
        elif tag == "input" and self._current is not None and a.get("name"):
            if a.get("type", "text").lower() in ("radio", "checkbox") and "checked" not in a:
                return
            self._current[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


class _Browser:
    """The citizen's browser: opens the provider's pages, fills and submits their forms."""

    def __init__(self, server: _Server) -> None:
        self._http = _Http(server)
        self.page: _Reply | None = None

    def open(self, url: str) -> _Reply:
        self.page = self._http.request(url)
        return self.page

    def submit(self, action: str, typed: dict[str, str]) -> _Reply:
        """Submit the page's form for ``action`` (its hidden fields, e.g. the CSRF token, and
        the radio buttons as checked) with what the citizen typed."""
        parser = _Forms()
        parser.feed(self.page.text if self.page is not None else "")
        if action not in parser.forms:
            status = self.page.status if self.page is not None else "-"
            raise AuthnError(f"the provider's page (HTTP {status}) has no form for {action}")
        self.page = self._http.request(action, {**parser.forms[action], **typed})
        return self.page


@dataclass(frozen=True)
class _Portal:
    """The provincial portal's back end (the relying party): its own HTTPS connection (no
    browser cookies), the provider's discovery document, its client secret, and a
    :class:`~kyso.authn.rp.TokenVerifier` on the provider's published keys (JWKS URL)."""

    http: _Http
    meta: dict[str, Any]
    rp: TokenVerifier
    client_secret: str = field(repr=False)

    @classmethod
    def connect(cls, d: _Demo, server: _Server) -> _Portal:
        http = _Http(server)
        meta = http.request("/.well-known/openid-configuration").json(
            "authorization_endpoint", "token_endpoint", "jwks_uri")
        keys = RemoteJwks(meta["jwks_uri"], d.kyso.clock, fetch=lambda url: http.request(url).body)
        return cls(http, meta, TokenVerifier(server.issuer, keys, d.kyso.clock, audit=d.kyso),
                   server.client_secret)


@dataclass(frozen=True)
class _Login:
    access_token: str = field(repr=False)
    token: VerifiedToken


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _log_in(d: _Demo, portal: _Portal, browser: _Browser, phone: _Phone,
            **extra: str) -> _Login:
    """The portal sends the browser to the provider; the citizen types her ID number and
    password, then a code from her phone; the portal redeems the code (client secret, PKCE
    verifier) and checks the ID token and the access token (level 2)."""
    verifier, challenge = _pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
              "scope": "openid profile", "state": state, "nonce": nonce,
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    page = browser.open(f"{portal.meta['authorization_endpoint']}?{urlencode(params)}")
    if page.status != 200:
        raise AuthnError(f"the provider did not show its login page (HTTP {page.status})")
    page = browser.submit("/login/password", {"id_number": CITIZEN["id_number"],
                                              "password": d.secrets.citizen_password})
    if page.status != 200:
        raise AuthnError(f"the provider refused the password (HTTP {page.status})")
    page = browser.submit("/login/otp", {"factor": "totp", "code": phone.code()})
    location = page.headers.get("Location", "")
    if page.status != 303 or not location.startswith(REDIRECT_URI + "?"):
        raise AuthnError(f"the provider refused the one-time code (HTTP {page.status})")
    answer = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if answer.get("state") != state or answer.get("iss") != portal.rp.issuer:
        raise AuthnError("the provider's redirect does not carry the portal's state and issuer")
    basic = base64.b64encode(f"{quote(CLIENT_ID, safe='')}:{quote(portal.client_secret, safe='')}"
                             .encode("ascii")).decode("ascii")  # RFC 6749 §2.3.1
    reply = portal.http.request(portal.meta["token_endpoint"], {
        "grant_type": "authorization_code", "code": answer.get("code", ""),
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
        headers={"Authorization": f"Basic {basic}"})
    if reply.status != 200:
        raise AuthnError(f"the token endpoint refused the code (HTTP {reply.status})")
    tokens = reply.json("access_token", "id_token")
    id_token = portal.rp.verify(tokens["id_token"], audience=CLIENT_ID, token_type=TokenType.ID,
                                access_token=tokens["access_token"])
    if id_token.claims.get("nonce") != nonce:
        raise AuthnError("the ID token does not carry the portal's nonce")
    token = portal.rp.verify(tokens["access_token"], audience=CLIENT_ID, min_level=Level.TWO)
    return _Login(tokens["access_token"], token)


def citizen_logs_in(d: _Demo, portal: _Portal, browser: _Browser, phone: _Phone) -> None:
    login = _log_in(d, portal, browser, phone)
    d.facts["login_acr"] = login.token.acr
    d.say("đăng nhập (login) in the browser: số định danh (ID number) + mật khẩu (password), "
          "then mã xác thực (a TOTP code) → authorization code → tokens")
    d.say(f"the portal checked the tokens: acr {login.token.acr} (level {int(login.token.level)}),"
          f" amr {' '.join(login.token.amr)}")


def step_up(d: _Demo, portal: _Portal, browser: _Browser, phone: _Phone) -> VerifiedToken:
    """A second authorization that must ask again for the password and a code (prompt=login,
    max_age=0, acr_values level 2), then the signing service's own check of the new access
    token: level 2 at least, and a login at most :data:`SIGNING_MAX_AGE` seconds old."""
    login = _log_in(d, portal, browser, phone, prompt="login", max_age="0",
                    acr_values=ACR_LEVEL_2)
    token = portal.rp.verify(login.access_token, audience=CLIENT_ID, min_level=Level.TWO,
                             max_age=SIGNING_MAX_AGE)
    d.facts["step_up_acr"] = token.acr
    d.say(f"xác thực lại (step-up): prompt=login, max_age=0, acr_values={ACR_LEVEL_2} → password "
          "and a new TOTP code again")
    d.say(f"the signing service accepted the token: acr {token.acr}, login "
          f"{vn_iso(token.auth_time) if token.auth_time else '?'}, at most {SIGNING_MAX_AGE} s old")
    return token


# --- 4 to 6. signatures --------------------------------------------------------------------------

def _sign(d: _Demo, role: str, passphrase: str, src: Path, dst: Path, request: SignRequest,
          *, stage: str, actor: str | None = None, **details: Any) -> None:
    """Unlock a holder's PKCS#12, check the certificate (Circular 15/2025), sign ``src`` into
    ``dst`` and record ``DOCUMENT_SIGN``."""
    kyso = d.kyso
    signer = load_signer(d.certificates[role].pkcs12.read_bytes(), passphrase, kyso.clock,
                         services=d.services)
    try:
        check_signer(signer.cms.certificate, kyso.now(), store_lookup(kyso))
        result = signer.sign_file(src, dst, request)
    except KysoError as exc:
        kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.FAILURE, actor=actor,
                    object=f"{signer.cms.certificate.serial_number:x}", reason=str(exc))
        raise
    kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.SUCCESS, actor=actor,
                object=result.sha256, input_sha256=_sha256(src), field=result.field_name,
                level=result.level.value, signer_serial=result.signer_serial,
                certified=result.certified, visible=result.visible, **details)
    d.documents.append((stage, dst))


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def citizen_signs(d: _Demo, token: VerifiedToken, application: Path) -> Path:
    """The citizen's key, held by the signing service, signs once her step-up token passed.
    (A later issue moves this behind a remote signing gateway.)"""
    signed = d.folder / "2-cong-dan-ky.pdf"
    _sign(d, "citizen", d.secrets.citizen_p12, application, signed,
          SignRequest(level=PadesLevel.B_LT, field_name="citizen",
                      reason="Đề nghị cấp bản sao trích lục khai sinh",
                      location="Xã Phú Đình, tỉnh Thái Nguyên"),
          stage="signed-by-citizen", actor=d.kyso.pseudonyms.pseudonym(CITIZEN["id_number"]),
          acr=token.acr, authorised_by="e-ID step-up")
    d.say(f"đơn đề nghị (the application) signed with her citizen key, PAdES B-LT → "
          f"{d.rel(signed)}")
    return signed


def official_approves(d: _Demo, src: Path) -> Path:
    approved = d.folder / "3-can-bo-duyet.pdf"
    _sign(d, "staff", d.secrets.staff_p12, src, approved,
          SignRequest(level=PadesLevel.B_LT, field_name="official",
                      stamp=StampRequest(style=StampStyle.OFFICIAL, page=-1),
                      reason="Phê duyệt hồ sơ", location="UBND xã Phú Đình"),
          stage="approved")
    d.say(f"chữ ký phê duyệt (the approval) of {STAFF['name']}, {STAFF['title']}: a visible "
          f"Decree 30 stamp (Ký bởi / Chức vụ / Cơ quan / Thời gian ký), PAdES B-LT → "
          f"{d.rel(approved)}")
    return approved


def seal_certifies(d: _Demo, src: Path) -> Path:
    sealed = d.folder / "4-dong-dau.pdf"
    _sign(d, "seal", d.secrets.seal_p12, src, sealed,
          SignRequest(level=PadesLevel.B_LTA, field_name="seal",
                      stamp=StampRequest(style=StampStyle.SEAL, page=-1, position="over:official"),
                      certify=True, lock_fields=("*",), reason="Đóng dấu, khóa hồ sơ",
                      location="UBND xã Phú Đình"),
          stage="sealed")
    d.say(f"dấu của cơ quan (the agency seal) of {SEAL['name']} over the official's stamp, "
          f"certifying and locking every field, PAdES B-LTA → {d.rel(sealed)}")
    return sealed


# --- 7. verification -----------------------------------------------------------------------------

def tamper(src: Path, dst: Path) -> None:
    """A copy of ``src`` with one byte of the signed page text changed (``Trang 1/2`` becomes
    ``Trang 0/2``): same length, still a well-formed PDF."""
    data = bytearray(src.read_bytes())
    at = bytes(data).find(b"(Trang 1/2)")
    if at < 0:
        raise SigningError(f"{src} does not hold the sample's page text")
    data[at + len(b"(Trang ")] ^= 0x01
    atomic_write(dst, bytes(data), exclusive=True)


def verify_dossier(d: _Demo, final: Path) -> tuple[FileReport, FileReport]:
    """What a backend service does with only the root certificate: the final dossier passes,
    the changed copy fails."""
    tampered = d.folder / "4-dong-dau-bi-sua.pdf"
    tamper(final, tampered)
    verifier = build_verifier(d.kyso.clock, kyso=None, trust=[d.facts["root"]])
    d.say(f"trust anchor: {d.rel(d.facts['root'])} only (no access to the CA's home); the "
          "revocation data comes from inside the PDF (B-LT)")
    reports = (verifier.verify_file(final), verifier.verify_file(tampered))
    for path, report in zip((final, tampered), reports, strict=True):
        d.kyso.record(Layer.SIGNING, "DOCUMENT_VERIFY",
                      Outcome.SUCCESS if report.passed else Outcome.FAILURE,
                      object=report.sha256 or path.name, files=1, passed=report.passed,
                      indication=report.indication.value)
    good, bad = reports
    if not good.passed:
        raise SigningError(f"the final dossier did not verify: {good.indication.value} "
                           f"({'; '.join(good.reasons)})")
    if bad.indication is not Indication.TOTAL_FAILED:
        raise SigningError(f"the changed copy was not caught: {bad.indication.value}")
    fields = ", ".join(f"{s.field} {s.indication.value}" for s in good.signatures)
    d.say(f"{final.name}: {good.indication.value} — {fields}")
    why = next((r for s in bad.signatures for r in s.reasons), bad.sub_indication or "")
    d.say(f"{tampered.name} (one byte of the page text changed after signing): "
          f"{bad.indication.value} — {why}")
    d.facts["tampered"] = tampered
    return good, bad


# --- 8 and 9. audit and policy -------------------------------------------------------------------

def verify_audit(d: _Demo) -> tuple[int, str, Path]:
    """Sign a checkpoint of the log, then verify everything as ``kyso audit verify`` does (and
    record the verification for the policy check the same way)."""
    kyso = d.kyso
    checkpoint = create_checkpoint(kyso, d.secrets.ca)
    d.say(f"checkpoint signed by the audit signer at {checkpoint.checkpoint.size} entries → "
          f"{d.rel(Path(checkpoint.path))}")
    report = verify_with_store(kyso)
    root = report.root.hex() if report.root else ""
    with contextlib.suppress(OSError):
        write_state(Layout(kyso.settings.audit_dir).verified,
                    {"time": kyso.now().astimezone(VIETNAM).isoformat(), "ok": report.ok,
                     "size": report.size, "root": root or None}, durable=False)
    if not report.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in report.checks
                           if c.status is AuditStatus.FAIL)
        raise AuditError(f"the audit log does not verify: {failed}")
    layers = Counter(e["layer"] for e in read_events(kyso.settings.audit_dir))
    d.say(f"kyso audit verify: PASS — {report.size} entries ("
          + ", ".join(f"{layer.value} {layers[layer.value]}" for layer in Layer
                      if layers[layer.value])
          + f"), hash chain, Merkle root {root[:16]}…, signed checkpoint")
    return report.size, root, Path(checkpoint.path)


def policy_report(d: _Demo) -> tuple[str, dict[Status, int]]:
    """``kyso policy check --level 3`` (current regime), summed up. A report: it does not fail
    the demo."""
    kyso = d.kyso
    report = evaluate(3, "current", facts_of(kyso))
    counts = report.counts()
    kyso.record(Layer.AUDIT, "POLICY_CHECK",
                Outcome.FAILURE if report.exit_code else Outcome.SUCCESS,
                object=report.level.name, verdict=report.verdict.value,
                met=counts[Status.PASS], not_met=counts[Status.FAIL],
                partly_met=counts[Status.PARTIAL], evidence_needed=counts[Status.EVIDENCE],
                mandatory_failed=[i.requirement.id for i in report.mandatory_failures])
    d.out(f"   {report.summary_line('vi')}")
    d.out(f"   = {report.summary_line('en')}")
    missing = [f"{i.requirement.id} ({i.requirement.title.get('en')})" for i in report.items
               if i.status is Status.FAIL]
    if missing:
        d.out(f"   not met in this home: {', '.join(missing)}")
    return report.verdict.value, counts


# --- the whole scenario ----------------------------------------------------------------------------

STEPS = {
    1: ("ca", "Chứng thư số — the province's CA issues the certificates"),
    2: ("enrolment", "Định danh điện tử mức 2 — the citizen is enrolled at level 2 with her chip "
                     "ID card"),
    3: ("login", "Đăng nhập — she logs in to the provincial portal through the e-ID provider"),
    4: ("step-up-and-citizen-signature", "Ký đơn — she signs her application after a level-2 "
                                         "step-up"),
    5: ("approval", "Phê duyệt — the official approves the dossier"),
    6: ("seal", "Đóng dấu — the commune People's Committee seals it"),
    7: ("verification", "Kiểm tra — a backend service verifies it with only the root "
                        "certificate"),
    8: ("audit", "Nhật ký kiểm toán — the auditor checks the audit log"),
    9: ("policy", "Cấp độ 3 — the level-3 policy report (current regime; a report, not a gate)"),
}

def run_demo(home: Path, clock: Clock, out: Out) -> DemoResult:
    """Play the scenario in ``home`` (see :func:`prepare_home`), telling it through ``out``."""
    started = time.perf_counter()
    home = home.absolute()
    prepare_home(home)
    atomic_write(home / MARKER, MARKER_TEXT.encode("ascii"))
    settings = _settings(home)
    secrets_file = home / SECRETS_FILE
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
    kyso = open_kyso(settings, clock=clock, actor="admin:kyso-demo", source="demo")
    try:
        keys = _Secrets(_password(settings.authn.password_policy))
        folder = ensure_private_dir(home / ARTIFACTS)
        d = _Demo(kyso, out, keys, folder, LocalServices(kyso, keys.ca))
        keys.write(secrets_file, {})

        d.step(1)
        create_ca_and_certificates(d)
        d.step(2)
        phone = enrol_citizen(d)
        keys.write(secrets_file, {"DEMO_CITIZEN_TOTP_SECRET": d.facts["totp_secret"]})
        application = folder / "1-don-de-nghi.pdf"
        write_sample_pdf(application, pages=2, title=DOSSIER_TITLE)
        d.documents.append(("application", application))

        d.step(3)
        with running_provider(d) as server:
            browser, portal = _Browser(server), _Portal.connect(d, server)
            citizen_logs_in(d, portal, browser, phone)
            d.step(4)
            token = step_up(d, portal, browser, phone)
            issuer = server.issuer
        signed = citizen_signs(d, token, application)
        d.step(5)
        approved = official_approves(d, signed)
        d.step(6)
        final = seal_certifies(d, approved)
        d.step(7)
        good, bad = verify_dossier(d, final)
        d.step(8)
        entries, root, checkpoint = verify_audit(d)
        d.step(9)
        verdict, counts = policy_report(d)
        d.step(0)
        total = time.perf_counter() - started
        spent = " · ".join(f"{k.split('-')[0]}: {t:.1f} s" for k, t in d.timings)
        out(f"Xong (done) in {total:.1f} s — per step {spent}")
        out(f"Try next:  export KYSO_HOME={home}")
        out(f"           kyso pdf verify {final}")
        out("           kyso audit show --layer signing · kyso audit verify · "
            "kyso policy check --level 3")
        return DemoResult(
            home=home, secrets_file=secrets_file,
            key_kdf_iterations=settings.key_kdf_iterations,
            password_hash=settings.authn.password_hash, issuer=issuer,
            certificates=tuple(d.certificates.values()), trust_anchor=d.facts["root"],
            chip=d.facts["chip"], passive_auth=d.facts["passive_auth"],
            citizen=d.facts["masked_id"], login_acr=d.facts["login_acr"],
            step_up_acr=d.facts["step_up_acr"], documents=tuple(d.documents), final_pdf=final,
            final_verdict=good.indication.value, tampered_pdf=d.facts["tampered"],
            tampered_verdict=bad.indication.value, audit_ok=True, audit_entries=entries,
            audit_root=root, checkpoint=checkpoint, policy_verdict=verdict,
            policy_counts=tuple((s.value, n) for s, n in counts.items()),
            timings=(*d.timings, ("total", total)))
    finally:
        kyso.close()
