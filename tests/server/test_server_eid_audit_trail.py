"""Acceptance: every authentication event — registration, level-2 enrolment, OTP enrolment,
login, step-up, failures, lockout, SMS code, tokens, code reuse, logout — reaches the audit log
with the right outcome and the citizen's pseudonym, and after the CA, signing and login
scenarios the log holds no password, one-time code, TOTP secret, client secret, token,
authorization code, private key material or raw 12-digit ID number."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from server_support import (
    KEY_PASSPHRASE,
    LOGOUT_URI,
    Browser,
    Citizen,
    TestClient,
    authorize_params,
    bearer,
    csrf_of,
    exchange,
    pkce_pair,
    query_of,
)

from conftest import CITIZEN, PASSPHRASE, audit_events, audit_text
from kyso.audit import Layer, Outcome
from kyso.audit.logging import configure_logging
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.chip import ChipPersonalData
from kyso.authn.credentials import OtpCredentials
from kyso.authn.csca import current_document_signer, load_csca_certificate, load_csca_crl
from kyso.authn.enrolment import enrol_level2, issue_test_chip, register_level1
from kyso.authn.oidc import Provider
from kyso.authn.otp import TotpVerifier
from kyso.authn.registry import Level, Person
from kyso.authn.sealing import SecretSealer, seal_key_path
from kyso.authn.stores import SqlSmsOutbox, SqlTotpStepStore
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import issue
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest
from kyso.signing.sample import sample_pdf
from kyso.signing.sign import PdfSigner, SignRequest
from kyso.store.schema import otp_credentials

pytest_plugins = ("server_fixtures",)

PERSON = Person.of(id_number=CITIZEN["id"], full_name=CITIZEN["name"], birth_date="2001-05-17",
                   sex="female", phone="0912345678")
PASSWORD = "Đèn-lồng-phố-Hội!42"
WRONG_PASSWORDS = ("Sai-mat-khau-1!Abc", "Sai-mat-khau-2!Def", "Sai-mat-khau-3!Ghi")
CITIZEN_ACTIONS = ("REGISTER", "LOGIN_PASSWORD", "LOGIN", "LOGIN_ERROR", "SEND_SMS_CODE",
                   "AUTHORIZE", "CODE_TO_TOKEN", "USERINFO_REQUEST", "LOGOUT",
                   "USER_DISABLED_BY_TEMPORARY_LOCKOUT")


@dataclass
class Secrets:
    """Everything that must never reach the audit log, by kind. Long secrets are searched as
    substrings; short numeric codes as whole words (a 6-digit code may occur by chance inside
    a hash)."""

    long: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, *values: str) -> None:
        self.long.setdefault(kind, set()).update(v for v in values if v)

    def add_code(self, kind: str, *values: str) -> None:
        self.codes.setdefault(kind, set()).update(v for v in values if v)

    def add_bytes(self, kind: str, data: bytes) -> None:
        self.add(kind + " (base64)", base64.b64encode(data).decode())
        self.add(kind + " (base64url)", base64.urlsafe_b64encode(data).rstrip(b"=").decode())
        self.add(kind + " (hex)", data.hex())

    def add_key(self, kind: str, key: Any) -> None:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        self.add_bytes(kind + " PKCS#8 DER", der)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            size = (key.curve.key_size + 7) // 8
            self.add(kind + " private scalar (hex)",
                     f"{key.private_numbers().private_value:0{2 * size}x}")
        elif isinstance(key, rsa.RSAPrivateKey):
            self.add(kind + " private exponent (hex)", f"{key.private_numbers().d:x}")

    def leaks(self, text: str) -> list[str]:
        """The kinds of secret found in ``text`` (never the secrets themselves)."""
        lowered = text.lower()
        found = [kind for kind, values in self.long.items()
                 if any(v in text or (_is_hex(v) and v.lower() in lowered) for v in values)]
        found += [kind for kind, values in self.codes.items()
                  if any(re.search(rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])", text)
                         for v in values)]
        if "PRIVATE KEY" in text:
            found.append("a PEM private key marker")
        return sorted(found)


def _is_hex(value: str) -> bool:
    try:
        binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return False
    return True


def _wrong_totp(citizen: Citizen, at: dt.datetime) -> str:
    """A well-formed code that no step near ``at`` accepts."""
    near = {citizen.code(at + dt.timedelta(seconds=s)) for s in range(-120, 121, 30)}
    return next(c for c in (f"{n:06d}" for n in range(123_456, 1_000_000, 111_111))
                if c not in near)


def _post_otp(browser: Browser, code: str, factor: str) -> Any:
    assert browser.last is not None
    return browser.post("/login/otp", {"csrf": csrf_of(browser.last.text), "factor": factor,
                                       "code": code})


def _enrol_citizen(kyso: Kyso, secrets: Secrets) -> Citizen:
    """Level-1 self-registration, test chip, officer-attended level 2, TOTP set-up."""
    secrets.add("the citizen's password", PASSWORD)
    registered = register_level1(kyso, PERSON, PASSWORD, 0.93)
    chip = issue_test_chip(kyso, PASSPHRASE, ChipPersonalData(
        person=PERSON, document_number="123456789", issue_date=dt.date(2026, 1, 5),
        expiry_date=dt.date(2036, 1, 5)), b"\xff\xd8portrait\xff\xd9")
    enrolled = enrol_level2(kyso, PERSON.id_number, chip, officer="CA-TN-0042", face_score=0.95,
                            fingerprint_score=0.97, consent=True,
                            csca=[load_csca_certificate(kyso)], crls=[load_csca_crl(kyso)])
    assert enrolled.identity.level is Level.TWO
    subject = registered.identity.subject
    assert enrolled.identity.subject == subject
    sealer = SecretSealer.for_home(kyso.settings.home)
    creds = OtpCredentials(kyso.store, kyso.clock, sealer, audit=kyso)
    enrolment = creds.begin_totp(subject)
    secrets.add("the TOTP secret", enrolment.secret)
    first = pyotp.TOTP(enrolment.secret).at(kyso.now())
    secrets.add_code("a TOTP code", first)
    creds.confirm_totp(subject, enrolment.credential_id, first,
                       TotpVerifier(SqlTotpStepStore(kyso.store), kyso.clock))
    with kyso.store.read() as conn:
        sealed = conn.execute(sa.select(otp_credentials.c.secret_sealed).where(
            otp_credentials.c.id == enrolment.credential_id)).scalar_one()
    secrets.add_bytes("the sealed TOTP secret", bytes(sealed))
    secrets.add_bytes("the e-ID sealing key", seal_key_path(kyso.settings.home).read_bytes())
    secrets.add_key("the Document Signer key", current_document_signer(kyso, PASSPHRASE).key)
    return Citizen(subject, PERSON.id_number, PASSWORD, enrolment.secret, Level.TWO,
                   PERSON.phone)


def _sign_a_dossier(kyso: Kyso, ca: CertificateAuthority, secrets: Secrets) -> None:
    """Issue the citizen a signing certificate and sign a one-page PDF (B-B: no TSA needed)."""
    issued = issue(kyso, ca, "citizen", SubjectRequest.of(name=CITIZEN["name"], id=CITIZEN["id"]),
                   key_type=KeyType.EC_P256)
    assert issued.private_key is not None
    secrets.add_key("the citizen's signing key", issued.private_key)
    signer = PdfSigner.from_key(issued.private_key, issued.record.certificate,  # type: ignore[arg-type]
                                tuple(issued.chain), kyso.clock)
    signed = signer.sign(sample_pdf(pages=1), SignRequest())
    assert signed.data.startswith(b"%PDF")
    for name in ca.names():
        secrets.add_key(f"the {name} CA key", ca.issuer(name).key)


def _run_scenario(kyso: Kyso, ca: CertificateAuthority, browser: Browser, http: TestClient,
                  provider: Provider, client_secret: str, clock: FrozenClock) -> Secrets:
    secrets = Secrets()
    secrets.add("the raw ID number", PERSON.id_number)
    secrets.add("the client secret", client_secret)
    secrets.add("the CA passphrase", PASSPHRASE)
    secrets.add("the token key passphrase", KEY_PASSPHRASE)
    for key in provider.keys:
        secrets.add_key("the token signing key", key.private_key)
    citizen = _enrol_citizen(kyso, secrets)
    _sign_a_dossier(kyso, ca, secrets)

    # Login: password + TOTP (one step later, so the set-up code is not reused).
    clock.advance(dt.timedelta(seconds=60))
    secrets.add_code("a TOTP code", citizen.code(clock.now()))
    verifier, challenge = pkce_pair()
    result = browser.login(authorize_params(challenge), citizen)
    secrets.add("an authorization code", result["code"])
    response = exchange(http, result["code"], verifier, secret=client_secret)
    assert response.status_code == 200, response.text
    tokens = response.json()
    secrets.add("an access token", tokens["access_token"])
    secrets.add("an ID token", tokens["id_token"])
    assert http.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200

    # Step-up / re-authentication: prompt=login, max_age=0, acr_values level 2; SMS this time.
    clock.advance(dt.timedelta(seconds=60))
    verifier2, challenge2 = pkce_pair()
    page = browser.authorize(authorize_params(challenge2, prompt="login", max_age="0",
                                              acr_values=ACR_LEVEL_2))
    assert page.status_code == 200, page.text
    assert browser.password(citizen).status_code == 200
    assert browser.last is not None
    sent = browser.post("/login/sms", {"csrf": csrf_of(browser.last.text)})
    assert sent.status_code == 200, sent.text
    assert citizen.phone is not None
    sms = SqlSmsOutbox(kyso.store).last_code(citizen.phone)
    assert sms is not None
    secrets.add_code("an SMS code", sms)
    done = _post_otp(browser, sms, "sms")
    assert done.status_code == 303, done.text
    code2 = query_of(done.headers["location"])["code"]
    secrets.add("an authorization code", code2)
    second = exchange(http, code2, verifier2, secret=client_secret)
    assert second.status_code == 200, second.text
    tokens2 = second.json()
    secrets.add("an access token", tokens2["access_token"])
    secrets.add("an ID token", tokens2["id_token"])

    # The same code again: refused (CODE_TO_TOKEN_ERROR).
    reused = exchange(http, code2, verifier2, secret=client_secret)
    assert reused.status_code == 400, reused.text

    # Logout.
    bye = browser.client.get("/logout", params={"id_token_hint": tokens2["id_token"],
                                                "post_logout_redirect_uri": LOGOUT_URI})
    assert bye.status_code == 302, bye.text

    # A wrong password, then the right password and a wrong TOTP code (clock moved between
    # failures, so no quick-login lock yet).
    clock.advance(dt.timedelta(seconds=60))
    _, challenge3 = pkce_pair()
    assert browser.authorize(authorize_params(challenge3)).status_code == 200
    secrets.add("a wrong password", *WRONG_PASSWORDS)
    assert browser.password(citizen, password=WRONG_PASSWORDS[0]).status_code == 401
    clock.advance(dt.timedelta(seconds=5))
    assert browser.password(citizen).status_code == 200
    wrong_code = _wrong_totp(citizen, clock.now())
    secrets.add_code("a wrong one-time code", wrong_code)
    assert _post_otp(browser, wrong_code, "totp").status_code == 401
    clock.advance(dt.timedelta(seconds=5))

    # Two wrong passwords within a second: the quick-login (temporary) lockout.
    _, challenge4 = pkce_pair()
    assert browser.authorize(authorize_params(challenge4)).status_code == 200
    assert browser.password(citizen, password=WRONG_PASSWORDS[1]).status_code == 401
    assert browser.password(citizen, password=WRONG_PASSWORDS[2]).status_code == 403
    return secrets


@pytest.fixture
def scenario(kyso: Kyso, ca: CertificateAuthority, browser: Browser, http: TestClient,
             provider: Provider, client_secret: str, clock: FrozenClock,
             capfd: pytest.CaptureFixture[str]) -> Iterator[Secrets]:
    # The access log is an info line: whatever an earlier test configured, log at info here
    # (to the late-bound stderr that capfd reads), and go back to the CLI's level after.
    configure_logging(level="info", json=False)
    try:
        yield _run_scenario(kyso, ca, browser, http, provider, client_secret, clock)
    finally:
        configure_logging(level="warning", json=False)


def _of(events: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [e for e in events if e["action"] == action]


def test_every_authentication_event_reaches_the_audit_log_with_its_outcome(
        scenario: Secrets, kyso: Kyso) -> None:
    events = audit_events(kyso)
    expected = {
        "REGISTER": "success", "CHIP_ISSUE": "success", "ENROL_LEVEL2": "success",
        "UPDATE_CREDENTIAL": "success", "CERT_CREATION": "success",
        "LOGIN_PASSWORD": "success", "LOGIN": "success", "AUTHORIZE": "success",
        "CODE_TO_TOKEN": "success", "USERINFO_REQUEST": "success", "SEND_SMS_CODE": "success",
        "CODE_TO_TOKEN_ERROR": "failure", "LOGOUT": "success", "LOGIN_ERROR": "failure",
        "USER_DISABLED_BY_TEMPORARY_LOCKOUT": "failure",
    }
    missing = [a for a in expected if not _of(events, a)]
    assert not missing, f"actions never recorded: {missing}"
    wrong = sorted({e["action"] for e in events if e["action"] in expected
                    and e["outcome"] != expected[e["action"]]})
    assert not wrong, f"actions recorded with an unexpected outcome: {wrong}"
    assert all(e["layer"] == Layer.AUTHN.value for a in expected if a != "CERT_CREATION"
               for e in _of(events, a))
    assert [e["details"]["stage"] for e in _of(events, "UPDATE_CREDENTIAL")] == [
        "pending", "active"]


def test_each_login_carries_level_amr_and_acr_and_step_up_is_a_fresh_login(
        scenario: Secrets, kyso: Kyso) -> None:
    events = audit_events(kyso)
    logins = _of(events, "LOGIN")
    assert [e["details"]["amr"] for e in logins] == [["pwd", "otp", "mfa"], ["pwd", "sms", "mfa"]]
    assert all(e["details"]["level"] == 2 for e in logins)
    authorized = _of(events, "AUTHORIZE")
    assert len(authorized) == 2
    assert all(e["details"]["acr"] == ACR_LEVEL_2 for e in authorized)


def test_failures_name_their_cause_without_the_credential(scenario: Secrets, kyso: Kyso) -> None:
    events = audit_events(kyso)
    errors = [e["details"]["error"] for e in _of(events, "LOGIN_ERROR")]
    assert errors == ["invalid_user_credentials", "invalid_user_otp",
                      "invalid_user_credentials", "invalid_user_credentials"]
    [lock] = _of(events, "USER_DISABLED_BY_TEMPORARY_LOCKOUT")
    assert lock["details"]["lockout"]["allowed"] is False
    [reuse] = _of(events, "CODE_TO_TOKEN_ERROR")
    assert reuse["details"]["error"] == "invalid_grant"
    assert all(e["details"]["id_hint"] == PERSON.masked_id
               for e in events if e["action"] in ("LOGIN_ERROR", "LOGIN", "REGISTER"))


def test_the_actor_of_citizen_events_is_the_pseudonym(scenario: Secrets, kyso: Kyso) -> None:
    psn = kyso.pseudonyms.pseudonym(PERSON.id_number)
    assert psn.startswith("psn:")
    events = audit_events(kyso)
    for action in CITIZEN_ACTIONS:
        actors = {e["actor"] for e in _of(events, action)}
        assert actors == {psn}, f"{action} has actors other than the citizen's pseudonym"
    assert _of(events, "ENROL_LEVEL2")[0]["object"] == psn
    assert {e["details"]["holder"] for e in _of(events, "UPDATE_CREDENTIAL")} == {psn}


def test_the_audit_log_holds_no_secret_after_ca_signing_and_login(
        scenario: Secrets, kyso: Kyso) -> None:
    assert set(scenario.long) >= {
        "the raw ID number", "the citizen's password", "a wrong password", "the TOTP secret",
        "the client secret", "an access token", "an ID token", "an authorization code",
        "the citizen's signing key PKCS#8 DER (base64)", "the root CA key PKCS#8 DER (hex)"}
    assert set(scenario.codes) == {"a TOTP code", "an SMS code", "a wrong one-time code"}
    text = audit_text(kyso)
    assert len(text) > 10_000  # the log is really there
    leaks = scenario.leaks(text)
    assert not leaks, f"the audit log contains: {', '.join(leaks)}"


def test_no_file_under_the_audit_directory_and_no_application_log_line_holds_a_secret(
        scenario: Secrets, kyso: Kyso, capfd: pytest.CaptureFixture[str]) -> None:
    files = sorted(p for p in kyso.settings.audit_dir.rglob("*") if p.is_file())
    assert files
    for path in files:
        leaks = scenario.leaks(path.read_bytes().decode("utf-8", errors="replace"))
        assert not leaks, f"{path.relative_to(kyso.settings.audit_dir)} contains: {', '.join(leaks)}"
    out, err = capfd.readouterr()
    assert "path=/login/password" in out + err  # the request log was captured
    leaks = scenario.leaks(out + err)
    assert not leaks, f"the application log contains: {', '.join(leaks)}"


def test_the_secret_scan_detects_a_deliberate_leak(scenario: Secrets, kyso: Kyso) -> None:
    """The scan can fail: plant one secret of each kind and it names the kind (only)."""
    assert scenario.leaks(audit_text(kyso)) == []
    kyso.record(Layer.AUTHN, "TEST_LEAK", Outcome.SUCCESS, note=PASSWORD)
    leaks = scenario.leaks(audit_text(kyso))
    assert "the citizen's password" in leaks
    assert all(PASSWORD not in leak for leak in leaks)
    # The audit layer itself masks 12-digit runs, so a raw ID number cannot be planted through
    # kyso.record; the scan still finds one written past it.
    kyso.record(Layer.AUTHN, "TEST_LEAK", Outcome.SUCCESS, note=PERSON.id_number)
    assert PERSON.masked_id in audit_text(kyso)
    assert "the raw ID number" not in scenario.leaks(audit_text(kyso))
    raw_line = json.dumps({"details": {"note": PERSON.id_number}}) + "\n"
    assert "the raw ID number" in scenario.leaks(audit_text(kyso) + raw_line)
    code = next(iter(scenario.codes["an SMS code"]))
    kyso.record(Layer.AUTHN, "TEST_LEAK", Outcome.SUCCESS, note=f"code={code}")
    assert "an SMS code" in scenario.leaks(audit_text(kyso))
    citizen_key = next(v for v in scenario.long["the citizen's signing key PKCS#8 DER (base64)"])
    kyso.record(Layer.AUTHN, "TEST_LEAK", Outcome.SUCCESS, note=citizen_key)
    assert "the citizen's signing key PKCS#8 DER (base64)" in scenario.leaks(audit_text(kyso))
    kyso.record(Layer.AUTHN, "TEST_LEAK", Outcome.SUCCESS,
                note="-----BEGIN PRIVATE KEY-----")
    assert "a PEM private key marker" in scenario.leaks(audit_text(kyso))
