"""``kyso id register | enrol-l2 | chip-issue | chip-verify | show | lock | unlock`` and
``kyso id csca init | show | crl | ds-revoke``: parse, one library call, render.

``show`` and ``unlock`` cover both locks an account can be under: a Decree 69 lock and a
brute-force lockout (:class:`~kyso.authn.login_admin.LockKind`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from kyso.authn import csca as csca_lib
from kyso.authn.chip import (
    ChipData,
    ChipPersonalData,
    chip_from_json,
    chip_to_json,
    new_document_number,
)
from kyso.authn.enrolment import (
    FACE_THRESHOLD,
    FINGERPRINT_THRESHOLD,
    enrol_level2,
    issue_test_chip,
    lock_identity,
    register_level1,
)
from kyso.authn.login_admin import LockoutStatus, LoginAdmin, lockout_status
from kyso.authn.passive_auth import PassiveAuthResult, check_passive_auth
from kyso.authn.registry import LockGround, Person, Registry
from kyso.cliutil import (
    App,
    ca_passphrase,
    check_new_files,
    emit_fields,
    emit_json,
    emit_table,
    obtain_passphrase,
    pass_app,
    passphrase_file_option,
)
from kyso.clock import VIETNAM, vn_iso
from kyso.context import Kyso
from kyso.errors import IdentityError, UsageError
from kyso.files import atomic_write
from kyso.pki.identifiers import parse_personal_id
from kyso.pki.serials import parse_serial

ENV_EID_PASSWORD = "KYSO_EID_PASSWORD"  # noqa: S105 - the variable's name
MAX_FACE_BYTES = 2 * 1024 * 1024
PLACEHOLDER_FACE = b"\xff\xd8\xff\xe0kyso test portrait\xff\xd9"


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    for command in (register, enrol_l2, chip_issue, chip_verify, show, lock, unlock, csca):
        id_group.add_command(command)


def _person_options(f: Any) -> Any:
    for option in reversed([
        click.option("--id", "id_number", required=True, help="12-digit personal ID number."),
        click.option("--name", required=True, help="Full name with diacritics."),
        click.option("--dob", required=True, help="Date of birth YYYY-MM-DD."),
        click.option("--sex", required=True, type=click.Choice(["male", "female"])),
    ]):
        f = option(f)
    return f


def _read(path: Path, what: str, limit: int) -> bytes:
    try:
        if path.stat().st_size > limit:
            raise IdentityError(f"{what} {path} is larger than {limit // (1024 * 1024)} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read {what} {path}: {exc.strerror}") from None


def _load_chip(path: Path) -> ChipData:
    try:
        return chip_from_json(_read(path, "chip file", 4 * 1024 * 1024))
    except IdentityError as exc:
        raise IdentityError(f"{path}: {exc}") from None


def _trust(kyso: Kyso, csca_files: tuple[Path, ...], crl_files: tuple[Path, ...]
           ) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """The given CSCA certificates and CRLs, else this home's CSCA and its current CRL."""
    if csca_files:
        certs: list[x509.Certificate] = []
        for path in csca_files:
            try:
                certs.extend(x509.load_pem_x509_certificates(_read(path, "CSCA file", 1 << 20)))
            except ValueError:
                raise IdentityError(f"{path} is not a PEM certificate file") from None
    else:
        certs = [csca_lib.load_csca_certificate(kyso)]
    crls: list[x509.CertificateRevocationList] = []
    for path in crl_files:
        data = _read(path, "CRL file", 16 << 20)
        try:
            crls.append(x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
                        else x509.load_der_x509_crl(data))
        except ValueError:
            raise IdentityError(f"{path} is not a CRL (PEM or DER)") from None
    if not crl_files and not csca_files:
        own = csca_lib.load_csca_crl(kyso)
        crls = [own] if own is not None else []
    return certs, crls


trust_options = [
    click.option("--csca", "csca_files", multiple=True,
                 type=click.Path(dir_okay=False, path_type=Path),
                 help="Trusted CSCA certificate(s), PEM (default: this home's test CSCA)."),
    click.option("--crl", "crl_files", multiple=True,
                 type=click.Path(dir_okay=False, path_type=Path),
                 help="CSCA CRL(s), PEM or DER (default: this home's current CSCA CRL)."),
]


def _with_trust(f: Any) -> Any:
    for option in reversed(trust_options):
        f = option(f)
    return f


def _password(password_file: Path | None) -> str:
    return obtain_passphrase(password_file, ENV_EID_PASSWORD, "Password of the e-ID account",
                             confirm=True)


def _render_report(report: PassiveAuthResult) -> None:
    emit_table(["check", "status", "reason"],
               [[c.check.value, c.status.value, c.reason] for c in report.checks],
               title=f"Passive authentication: {report.indication.value}")
    emit_fields([("DS serial", report.ds_serial), ("document number", report.document_number),
                 ("CSCA", report.csca_subject)])


# --- register / enrol-l2 --------------------------------------------------------------------

@click.command("register", epilog="""\b
Examples:
  KYSO_EID_PASSWORD=... kyso id register --id 019099012345 --name "Nguyễn Văn An" \\
      --dob 1999-04-02 --sex male --phone 0912345678 --face-score 0.93
  kyso id register ... --password-file pw.txt --format json

\b
Level 1 (Decree 69/2024/ND-CP): self-registration with a face photo matched against the
population database; the match is simulated by the recorded --face-score (0-1), refused below
the threshold. The password comes from --password-file, $KYSO_EID_PASSWORD or a prompt, never
from an argument.""")
@_person_options
@click.option("--phone", required=True, help="Vietnamese mobile number (0912345678).")
@click.option("--email", help="E-mail address.")
@click.option("--face-score", type=float, required=True, help="Recorded face-match score 0-1.")
@click.option("--threshold", type=float, default=FACE_THRESHOLD, show_default=True,
              help="Face-match threshold.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line is the password (else ${ENV_EID_PASSWORD} or a prompt).")
@pass_app
def register(app: App, id_number: str, name: str, dob: str, sex: str, phone: str,
             email: str | None, face_score: float, threshold: float,
             password_file: Path | None) -> None:
    """Register a citizen at level 1 (self-service)."""
    kyso = app.kyso
    person = Person.of(id_number=id_number, full_name=name, birth_date=dob, sex=sex, phone=phone,
                       email=email, today=kyso.now().astimezone(VIETNAM).date())
    result = register_level1(kyso, person, _password(password_file), face_score,
                             threshold=threshold)
    if app.json:
        emit_json(result.to_dict())
    else:
        emit_fields([("ID number", result.identity.masked_id), ("subject", result.identity.subject),
                     ("level", int(result.identity.level)), ("face score", result.face_score)],
                    title="Registered at level 1")


@click.command("enrol-l2", epilog="""\b
Examples:
  kyso id enrol-l2 --id 019099012345 --chip chip.json --officer CA-TN-0042 \\
      --face-score 0.95 --fingerprint-score 0.97 --consent
  kyso id enrol-l2 ... --csca csca.crt.pem --crl csca.crl --format json

\b
Level 2, at a police office: passive authentication of the chip (SOD signature, Document
Signer chain to the CSCA, DS revocation, data-group hashes), the chip's ID number equal to
--id, portrait and fingerprint scores at or above their thresholds, and the citizen's consent.
A citizen without an account is registered at level 2 directly (no password yet).""")
@click.option("--id", "id_number", required=True, help="12-digit personal ID number.")
@click.option("--chip", "chip_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Chip file (chip.json).")
@click.option("--officer", required=True, help="The attending officer (badge number).")
@click.option("--face-score", type=float, required=True, help="Recorded portrait match 0-1.")
@click.option("--fingerprint-score", type=float, required=True,
              help="Recorded fingerprint match 0-1.")
@click.option("--consent/--no-consent", default=False,
              help="The citizen signed the consent (required).")
@click.option("--face-threshold", type=float, default=FACE_THRESHOLD, show_default=True)
@click.option("--fingerprint-threshold", type=float, default=FINGERPRINT_THRESHOLD,
              show_default=True)
@click.option("--phone", help="Mobile number, for a citizen without an account.")
@click.option("--email", help="E-mail address, for a citizen without an account.")
@_with_trust
@pass_app
def enrol_l2(app: App, id_number: str, chip_path: Path, officer: str, face_score: float,
             fingerprint_score: float, consent: bool, face_threshold: float,
             fingerprint_threshold: float, phone: str | None, email: str | None,
             csca_files: tuple[Path, ...], crl_files: tuple[Path, ...]) -> None:
    """Enrol a citizen at level 2 (officer-attended, chip ID card checked)."""
    parse_personal_id(id_number)  # a mistyped number is named before the chip is read
    kyso = app.kyso
    chip = _load_chip(chip_path)
    certs, crls = _trust(kyso, csca_files, crl_files)
    result = enrol_level2(kyso, id_number, chip, officer=officer, face_score=face_score,
                          fingerprint_score=fingerprint_score, consent=consent, csca=certs,
                          crls=crls, face_threshold=face_threshold,
                          fingerprint_threshold=fingerprint_threshold, phone=phone, email=email)
    if app.json:
        emit_json(result.to_dict())
        return
    _render_report(result.passive_auth)
    emit_fields([("ID number", result.identity.masked_id), ("subject", result.identity.subject),
                 ("level", int(result.identity.level)), ("new account", result.created),
                 ("officer", result.evidence["officer"])], title="Enrolled at level 2")


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


# --- chips ------------------------------------------------------------------------------------

@click.command("chip-issue", epilog="""\b
Examples:
  kyso id chip-issue --id 019099012345 --name "Nguyễn Văn An" --dob 1999-04-02 \\
      --sex male --out chip.json
  kyso id chip-issue ... --face face.jpg --origin "Phú Bình, Thái Nguyên" --expires 2036-11-23

\b
Writes a simulated chip ID card: DG1 (MRZ), DG2 (portrait), DG13 (personal data) and the
SOD signed by a Document Signer under this home's test CSCA (both created on first use, keys
protected by the CA passphrase).""")
@_person_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The chip file to write (never overwritten).")
@click.option("--face", type=click.Path(dir_okay=False, path_type=Path),
              help="Portrait image for DG2 (default: a placeholder).")
@click.option("--origin", default="", help="Place of origin (quê quán).")
@click.option("--residence", default="", help="Place of residence (nơi thường trú).")
@click.option("--document-number", help="Card number, 1-9 letters or digits (default random).")
@click.option("--expires", type=click.DateTime(["%Y-%m-%d"]),
              help="Expiry date YYYY-MM-DD (default: ten years after issue).")
@passphrase_file_option
@pass_app
def chip_issue(app: App, id_number: str, name: str, dob: str, sex: str, out: Path,
               face: Path | None, origin: str, residence: str, document_number: str | None,
               expires: dt.datetime | None, passphrase_file: Path | None) -> None:
    """Personalise a test chip ID card (CCCD gắn chip)."""
    check_new_files([out])
    kyso = app.open(create=True)
    today = kyso.now().astimezone(VIETNAM).date()
    person = Person.of(id_number=id_number, full_name=name, birth_date=dob, sex=sex, today=today)
    doc = document_number or new_document_number()
    if not (doc.isascii() and doc.isalnum() and len(doc) <= 9):
        raise UsageError("--document-number must be 1-9 letters or digits")
    expiry = expires.date() if expires else _years_after(today, 10)
    if expiry <= today:
        raise UsageError("--expires must be a date after today")
    for text, what in ((origin, "--origin"), (residence, "--residence")):
        if len(text) > 200 or any(not c.isprintable() for c in text):
            raise UsageError(f"{what} must be at most 200 printable characters")
    data = ChipPersonalData(person=person, document_number=doc.upper(), issue_date=today,
                            expiry_date=expiry, place_of_origin=" ".join(origin.split()),
                            place_of_residence=" ".join(residence.split()))
    image = _read(face, "face image", MAX_FACE_BYTES) if face else PLACEHOLDER_FACE
    chip = issue_test_chip(kyso, ca_passphrase(passphrase_file), data, image)
    try:
        atomic_write(out, chip_to_json(chip), exclusive=True)
    except FileExistsError:
        raise UsageError(f"{out} already exists; kyso never overwrites an output file") from None
    summary = {"chip": str(out), "document_number": data.document_number,
               "id_number": person.masked_id, "expiry_date": expiry.isoformat()}
    if app.json:
        emit_json(summary)
    else:
        emit_fields(list(summary.items()), title="Chip written")


@click.command("chip-verify", epilog="""\b
Examples:
  kyso id chip-verify --chip chip.json
  kyso id chip-verify --chip chip.json --csca csca.crt.pem --crl csca.crl --format json

\b
Exit code 0 when every check passed, 1 otherwise.""")
@click.option("--chip", "chip_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Chip file (chip.json).")
@_with_trust
@pass_app
def chip_verify(app: App, chip_path: Path, csca_files: tuple[Path, ...],
                crl_files: tuple[Path, ...]) -> None:
    """Passive authentication of a chip file, check by check."""
    kyso = app.kyso
    chip = _load_chip(chip_path)
    certs, crls = _trust(kyso, csca_files, crl_files)
    report = check_passive_auth(chip, csca=certs, crls=crls, now=kyso.now())
    if app.json:
        emit_json(report.to_dict())
    else:
        _render_report(report)
    if not report.passed:
        raise SystemExit(1)


# --- show / lock / unlock ---------------------------------------------------------------------

def _lockout_fields(status: LockoutStatus) -> list[tuple[str, object]]:
    if status.damaged:
        return [("brute-force lock", status.summary), ("failures", "unreadable")]
    failures = ", ".join(f"{factor.value} {count}" for factor, count in status.failures.items())
    return [("brute-force lock", status.summary),
            ("failures", f"{failures} ({status.consecutive} in a row, all factors)")]


@click.command("show", epilog="""\b
Examples:
  kyso id show --id 019099012345
  kyso id show --id 019099012345 --format json

\b
Besides the account (and its Decree 69 lock, if any), shows its brute-force state: not
locked, temporarily locked until a time, or permanently locked (after the permanent or mixed
lockout, or NIST's cap of consecutive failures), and the failures counted per factor.""")
@click.option("--id", "id_number", required=True, help="12-digit personal ID number.")
@pass_app
def show(app: App, id_number: str) -> None:
    """Show an e-ID account (the ID number masked) and its brute-force state."""
    identity = Registry(app.kyso.store, app.kyso.clock).get(id_number.strip())
    status = lockout_status(app.kyso, identity.subject)
    if app.json:
        emit_json({**identity.to_dict(), "brute_force": status.to_dict()})
    else:
        emit_fields([*identity.to_dict().items(), *_lockout_fields(status)],
                    title="e-ID account")


@click.command("lock", epilog="""\b
Examples:
  kyso id lock --id 019099012345 --reason holder-request
  kyso id lock --id 019099012345 --reason card-revoked

\b
Grounds (Decree 69/2024/ND-CP): """ + ", ".join(g.value for g in LockGround) + ".")
@click.option("--id", "id_number", required=True, help="12-digit personal ID number.")
@click.option("--reason", required=True, type=click.Choice([g.value for g in LockGround]),
              help="The ground of the lock.")
@pass_app
def lock(app: App, id_number: str, reason: str) -> None:
    """Lock an e-ID account."""
    identity = lock_identity(app.kyso, id_number, LockGround(reason))
    if app.json:
        emit_json(identity.to_dict())
    else:
        click.echo(f"locked {identity.masked_id}: {reason} ({LockGround(reason).label_vi})")


@click.command("unlock", epilog="""\b
Examples:
  kyso id unlock --id 019099012345
  kyso id unlock --id 019099012345 --format json

\b
Lifts whatever locks the account is under: a Decree 69 lock (kyso id lock) once its grounds
have ended, and a brute-force lockout (temporary, permanent, or NIST's cap of consecutive
failures), whose failure counters are cleared. A damaged brute-force state (every login
refused, kyso id show says so) is replaced by a fresh one. The output names each lock lifted;
the audit log gets one USER_UNLOCKED event per lock, its kind decree-69 or brute-force. An
account locked because the holder died is never unlocked; an account under no lock is an
error.""")
@click.option("--id", "id_number", required=True, help="12-digit personal ID number.")
@pass_app
def unlock(app: App, id_number: str) -> None:
    """Unlock an e-ID account: its Decree 69 lock and its brute-force lockout."""
    result = LoginAdmin(app.kyso).unlock_account(id_number.strip())
    if app.json:
        emit_json(result.to_dict())
        return
    who = result.identity.masked_id
    if result.ground is not None:
        click.echo(f"unlocked {who}: Decree 69 lock lifted ({result.ground.value})")
    if result.lockout is not None and result.lockout.damaged:
        click.echo(f"unlocked {who}: the damaged brute-force state was replaced by a fresh one "
                   "(no lock, no failures)")
    elif result.lockout is not None:
        until = result.lockout.locked_until
        kind = f"temporary, until {vn_iso(until)}" if until else "permanent"
        click.echo(f"unlocked {who}: brute-force lockout lifted ({kind}, "
                   f"{result.lockout.reason.value}); failure counters cleared")


# --- kyso id csca … ---------------------------------------------------------------------------

@click.group("csca")
def csca() -> None:
    """The test Country Signing CA of the chip ID cards and its Document Signers."""


def _emit_csca(app: App, info: csca_lib.CscaInfo) -> None:
    if app.json:
        emit_json(info.to_dict())
        return
    emit_fields([("subject", info.subject), ("serial", info.serial),
                 ("valid until", info.not_after.isoformat()), ("CRL number", info.crl_number),
                 ("certificate", str(info.certificate_path)), ("CRL", str(info.crl_path))],
                title="Test CSCA")
    if info.document_signers:
        emit_table(["serial", "status", "usage until", "not_after", "reason"],
                   [[d.serial, d.status.value, d.usage_until.date().isoformat(),
                     d.not_after.date().isoformat(), d.reason.value if d.reason else ""]
                    for d in info.document_signers], title="Document Signers")


@csca.command("init", epilog="""\b
Examples:
  kyso id csca init
  kyso id csca init --passphrase-file ca-pass.txt""")
@passphrase_file_option
@pass_app
def csca_init(app: App, passphrase_file: Path | None) -> None:
    """Create the test CSCA (C=VN, Bộ Công an, test) and its first CRL."""
    kyso = app.open(create=True)
    _emit_csca(app, csca_lib.init_csca(kyso, ca_passphrase(passphrase_file, confirm=True)))


@csca.command("show", epilog="""\b
Examples:
  kyso id csca show
  kyso id csca show --format json""")
@pass_app
def csca_show(app: App) -> None:
    """Show the CSCA, its CRL number and the Document Signers issued."""
    _emit_csca(app, csca_lib.csca_info(app.kyso))


@csca.command("crl", epilog="""\b
Examples:
  kyso id csca crl""")
@passphrase_file_option
@pass_app
def csca_crl(app: App, passphrase_file: Path | None) -> None:
    """Publish a new CSCA CRL (valid 90 days)."""
    _emit_csca(app, csca_lib.publish_csca_crl(app.kyso, ca_passphrase(passphrase_file)))


@csca.command("ds-revoke", epilog="""\b
Examples:
  kyso id csca ds-revoke 5f3a…e1 --reason key-compromise

\b
The CSCA CRL is republished at once; chips signed by the Document Signer stop passing.""")
@click.argument("serial")
@click.option("--reason", type=click.Choice([r.value for r in csca_lib.DsReason]),
              default=csca_lib.DsReason.UNSPECIFIED.value, show_default=True)
@passphrase_file_option
@pass_app
def csca_ds_revoke(app: App, serial: str, reason: str, passphrase_file: Path | None) -> None:
    """Revoke a Document Signer certificate."""
    serial = parse_serial(serial)  # a typo is refused before the passphrase is asked for
    info = csca_lib.revoke_document_signer(app.kyso, ca_passphrase(passphrase_file), serial,
                                           csca_lib.DsReason(reason))
    if app.json:
        emit_json(info.to_dict())
    else:
        click.echo(f"revoked Document Signer {info.serial} ({reason}); CSCA CRL republished")
