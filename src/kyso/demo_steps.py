"""The nine steps of ``kyso demo``, each a function of the :class:`~kyso.demo_story.DemoRun`
the steps share. Each step does what the scenario says with the library (the same calls as the
``kyso`` commands and the HTTP service), checks that it turned out so (a
:class:`~kyso.errors.KysoError` naming it otherwise), and tells what happened through
:meth:`~kyso.demo_story.DemoRun.say`. :func:`kyso.demo.run_demo` plays them in order.

The citizen's own acts (setting her password, enrolling her authenticator app, logging in,
registering her signing certificate, signing) are recorded with her pseudonym as the audit
actor; the CA's and the officials' with the demo's administrator. Her key is generated and
kept by the signing gateway the running service offers (CSC API v2): the portal enrols it
with her level-2 login and signs through it with her step-up, using
:mod:`kyso.signing.csc_client` — the client of ``kyso pdf sign --remote``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.audit import Layer, Outcome, read_events
from kyso.audit.signer import create_checkpoint, record_verification, verify_with_store
from kyso.audit.verify import Status as AuditStatus
from kyso.authn.acr import ACR_LEVEL_2
from kyso.authn.chip import ChipPersonalData, chip_to_json, new_document_number
from kyso.authn.csca import load_csca_certificate, load_csca_crl
from kyso.authn.enrolment import enrol_level2, issue_test_chip
from kyso.authn.login import LoginService
from kyso.authn.otp import TotpSettings
from kyso.authn.registry import Level, Person
from kyso.clock import VIETNAM, Clock, vn_iso
from kyso.context import Kyso
from kyso.demo_story import (
    CITIZEN,
    FACE_PORTRAIT,
    OFFICER,
    ORG,
    PORTAL,
    PROVINCE,
    SEAL,
    SIGNING_MAX_AGE,
    STAFF,
    DemoCertificate,
    DemoRun,
)
from kyso.demo_web import Browser, Login, Portal, ProviderServer, log_in
from kyso.errors import AuditError, AuthnError, KysoError, SigningError
from kyso.files import StagedFiles, atomic_write
from kyso.pki import authority, issuance
from kyso.pki.identifiers import mask_id
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.records import common_name_of
from kyso.pki.serials import serial_hex
from kyso.pki.subjects import SubjectRequest
from kyso.policies.check import evaluate, record_policy_check
from kyso.policies.facts import facts_of
from kyso.policies.models import Status
from kyso.signing.appearance import StampRequest, StampStyle
from kyso.signing.csc_client import CscClient, RemoteKey, remote_signer
from kyso.signing.setup import build_verifier, check_signer, load_signer, store_lookup
from kyso.signing.sign import Level as PadesLevel
from kyso.signing.sign import SignRequest
from kyso.signing.verdict import FileReport, Indication

__all__ = ["Phone", "citizen_logs_in", "citizen_signs", "create_ca_and_certificates",
           "enrol_citizen", "enrol_signing_credential", "official_approves", "policy_report",
           "provider_ready", "seal_certifies", "step_up", "tamper", "verify_audit",
           "verify_dossier"]


# --- 1. certificates ---------------------------------------------------------------------------

def create_ca_and_certificates(d: DemoRun) -> None:
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
    )
    for role, stem, request, passphrase, text in people:
        issued = _issue(kyso, ca, role, request, d.folder / f"{stem}.p12",
                        d.folder / f"{stem}.crt.pem", passphrase)
        d.certificates[role] = issued
        assert issued.pkcs12 is not None
        d.say(text.format(cn=issued.holder, title=STAFF["title"], serial=issued.serial[:16] + "…")
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
class Phone:
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


def enrol_citizen(d: DemoRun) -> Phone:
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
    # She sets her password and enrols her app herself: a context whose actor is her pseudonym
    # (the same store and log) records UPDATE_PASSWORD and UPDATE_CREDENTIAL as her acts.
    herself = dataclasses.replace(kyso, actor=kyso.pseudonyms.pseudonym(person.id_number))
    login = LoginService(herself)
    login.set_password(result.identity.subject, d.secrets.citizen_password)
    enrolment = login.credentials.begin_totp(result.identity.subject)
    phone = Phone(enrolment.secret, kyso.clock)
    login.credentials.confirm_totp(result.identity.subject, enrolment.credential_id, phone.code(),
                                   login.totp)
    d.facts["masked_id"] = result.identity.masked_id
    d.facts["totp_secret"] = enrolment.secret
    d.say(f"mật khẩu (password) set under the {kyso.settings.authn.password_policy} policy; "
          "ứng dụng xác thực (authenticator app, TOTP) enrolled with its first code")
    return phone


# --- 3 and 4. login and step-up ----------------------------------------------------------------

def provider_ready(d: DemoRun, server: ProviderServer) -> tuple[Browser, Portal]:
    """The citizen's browser, and the portal connected to the running provider."""
    d.say(f"nhà cung cấp định danh (the e-ID's OpenID Connect provider) running at "
          f"{server.issuer} (a throw-away TLS certificate for {urlsplit(server.issuer).hostname})")
    d.say(f'cổng dịch vụ công (the portal) "{PORTAL.name}" registered as client '
          f"{PORTAL.client_id} (confidential, PKCE S256)")
    return Browser(server), Portal.connect(server, d.kyso)


def _log_in(d: DemoRun, portal: Portal, browser: Browser, phone: Phone, **extra: str) -> Login:
    return log_in(portal, browser, CITIZEN["id_number"], d.secrets.citizen_password, phone.code,
                  **extra)


def citizen_logs_in(d: DemoRun, portal: Portal, browser: Browser, phone: Phone) -> Login:
    login = _log_in(d, portal, browser, phone)
    d.facts["login_acr"] = login.token.acr
    d.say("đăng nhập (login) in the browser: số định danh (ID number) + mật khẩu (password), "
          "then mã xác thực (a TOTP code) → authorization code → tokens")
    d.say(f"the portal checked the tokens: acr {login.token.acr} (level {int(login.token.level)}),"
          f" amr {' '.join(login.token.amr)}")
    return login


def _gateway(server: ProviderServer, login: Login) -> CscClient:
    """The portal's connection to the signing gateway, with the citizen's access token."""
    return CscClient(server.issuer, login.access_token, tls=server.tls)


def enrol_signing_credential(d: DemoRun, server: ProviderServer, login: Login) -> DemoCertificate:
    """With her fresh level-2 login, the portal asks the signing gateway to enrol a signing
    credential for her: the gateway generates the key, keeps it wrapped for her alone, and has
    the citizen CA issue her certificate. Only the certificate comes back."""
    enrolled = _gateway(server, login).enrol()
    cert = enrolled.certificate
    pem = d.folder / "cong-dan.crt.pem"
    atomic_write(pem, cert.public_bytes(serialization.Encoding.PEM), exclusive=True)
    issued = DemoCertificate("citizen", common_name_of(cert), serial_hex(cert.serial_number),
                             None, pem, enrolled.credential_id)
    d.certificates["citizen"] = issued
    issuer = common_name_of(enrolled.chain[0]) if enrolled.chain else "?"
    d.say(f"cổng ký số (the signing gateway) enrolled her signing credential "
          f"{enrolled.credential_id}: key generated and kept there, wrapped for her alone")
    d.say(f"công dân (the citizen) {issued.holder}, {mask_id(CITIZEN['id_number'])} — signing "
          f"certificate {issued.serial[:16]}… from {issuer} → {d.rel(pem)} (no PKCS#12: the "
          "key never leaves the gateway)")
    return issued


def step_up(d: DemoRun, portal: Portal, browser: Browser, phone: Phone) -> Login:
    """A second authorization that must ask again for the password and a code, then the portal's
    own check of the new access token: level 2 at least, and a login at most
    :data:`~kyso.demo_story.SIGNING_MAX_AGE` seconds old (the gateway checks it again).

    The portal sends what a real portal's step-up sends: ``prompt=login`` (re-authenticate
    now), ``max_age=0`` (which alone forces a login too, OIDC Core §3.1.2.1, and makes
    ``auth_time`` required in the ID token) and ``acr_values`` level 2."""
    login = _log_in(d, portal, browser, phone, prompt="login", max_age="0",
                    acr_values=ACR_LEVEL_2)
    token = portal.rp.verify(login.access_token, audience=PORTAL.client_id, min_level=Level.TWO,
                             max_age=SIGNING_MAX_AGE)
    d.facts["step_up_acr"] = token.acr
    d.say(f"xác thực lại (step-up): prompt=login, max_age=0, acr_values={ACR_LEVEL_2} → password "
          "and a new TOTP code again")
    d.say(f"the portal checked the new token: acr {token.acr}, login "
          f"{vn_iso(token.auth_time) if token.auth_time else '?'}, at most {SIGNING_MAX_AGE} s "
          f"old, for the portal and the signing gateway ({' '.join(token.audience)})")
    return login


# --- 4 to 6. signatures --------------------------------------------------------------------------

def _sign(d: DemoRun, role: str, passphrase: str, src: Path, dst: Path, request: SignRequest,
          *, stage: str, actor: str | None = None, **details: Any) -> None:
    """Unlock a holder's PKCS#12, check the certificate (Circular 15/2025), sign ``src`` into
    ``dst`` and record ``DOCUMENT_SIGN``."""
    kyso = d.kyso
    pkcs12 = d.certificates[role].pkcs12
    assert pkcs12 is not None  # the staff's and the seal's
    signer = load_signer(pkcs12.read_bytes(), passphrase, kyso.clock, services=d.services)
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


def citizen_signs(d: DemoRun, server: ProviderServer, login: Login, application: Path) -> Path:
    """The portal signs her application through the signing gateway with her step-up token:
    kyso builds the PAdES signature, the gateway authorizes the hash of its signed attributes
    (SAD bound to that hash, single use, at most 300 s) and signs it with her key
    (``signHash``); the signature is checked against her certificate before it is embedded.
    The timestamp and the revocation data (B-LT) come from the home's services as for the
    other signatures."""
    kyso = d.kyso
    citizen = d.certificates["citizen"]
    assert citizen.credential_id is not None
    signed = d.folder / "2-cong-dan-ky.pdf"
    actor = kyso.pseudonyms.pseudonym(CITIZEN["id_number"])
    signer = remote_signer(_gateway(server, login), citizen.credential_id, kyso.clock,
                           services=d.services, description="Đơn đề nghị cấp bản sao trích lục "
                                                            "khai sinh")
    request = SignRequest(level=PadesLevel.B_LT, field_name="citizen",
                          reason="Đề nghị cấp bản sao trích lục khai sinh",
                          location="Xã Phú Đình, tỉnh Thái Nguyên")
    try:
        check_signer(signer.cms.certificate, kyso.now(), store_lookup(kyso))
        result = signer.sign_file(application, signed, request)
    except KysoError as exc:
        kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.FAILURE, actor=actor,
                    object=citizen.serial, reason=str(exc), cred_id=citizen.credential_id)
        raise
    key = signer.cms.key
    assert isinstance(key, RemoteKey)
    (remote,) = key.signatures  # one document, one authorization
    public = key.public_key()
    algorithm = (f"ECDSA {public.curve.name}" if isinstance(public, ec.EllipticCurvePublicKey)
                 else f"RSA-{public.key_size}")
    kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.SUCCESS, actor=actor,
                object=result.sha256, input_sha256=_sha256(application), field=result.field_name,
                level=result.level.value, signer_serial=result.signer_serial,
                certified=result.certified, visible=result.visible, acr=login.token.acr,
                authorised_by="e-ID step-up", gateway=key.client.base,
                cred_id=remote.credential_id, signed_digest=remote.digest)
    d.documents.append(("signed-by-citizen", signed))
    d.facts["citizen_signed_digest"] = remote.digest
    expiry = f"expires in {remote.expires_in} s" if remote.expires_in else "short-lived"
    d.say(f"credentials/authorize (her step-up token, credential {remote.credential_id}, the "
          f"{remote.digest_name} hash of the signed attributes) → SAD bound to the hash "
          f"{remote.digest[:16]}…, single use, {expiry}")
    d.say(f"signatures/signHash with that SAD → an {algorithm} signature by her key inside the "
          f"gateway, checked against her certificate; đơn đề nghị (the application) signed, "
          f"PAdES B-LT → {d.rel(signed)}")
    return signed


def official_approves(d: DemoRun, src: Path) -> Path:
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


def seal_certifies(d: DemoRun, src: Path) -> Path:
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


def verify_dossier(d: DemoRun, final: Path) -> tuple[FileReport, FileReport]:
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

def verify_audit(d: DemoRun) -> tuple[int, str, Path]:
    """Sign a checkpoint of the log, then verify everything as ``kyso audit verify`` does (and
    record the verification for the policy check the same way)."""
    kyso = d.kyso
    checkpoint = create_checkpoint(kyso, d.secrets.ca)
    d.say(f"checkpoint signed by the audit signer at {checkpoint.checkpoint.size} entries → "
          f"{d.rel(Path(checkpoint.path))}")
    report = verify_with_store(kyso)
    record_verification(kyso, report)
    root = report.root.hex() if report.root else ""
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


def policy_report(d: DemoRun) -> tuple[str, dict[Status, int]]:
    """``kyso policy check --level 3`` (current regime), summed up. A report: it does not fail
    the demo."""
    kyso = d.kyso
    report = evaluate(3, "current", facts_of(kyso))
    record_policy_check(kyso, report)
    counts = report.counts()
    d.out(f"   {report.summary_line('vi')}")
    d.out(f"   = {report.summary_line('en')}")
    missing = [f"{i.requirement.id} ({i.requirement.title.get('en')})" for i in report.items
               if i.status is Status.FAIL]
    if missing:
        d.out(f"   not met in this home: {', '.join(missing)}")
    return report.verdict.value, counts

