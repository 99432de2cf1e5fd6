"""``kyso cert``: issue, batch, revoke, hold, release, renew, rekey, list, show."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kyso.cliutil import (
    App,
    ca_passphrase,
    check_new_files,
    emit_csv,
    emit_fields,
    emit_json,
    emit_table,
    p12_passphrase,
    pass_app,
    passphrase_file_option,
    stderr,
)
from kyso.clock import vn_iso
from kyso.context import Kyso
from kyso.errors import CSRError, KysoError, PkiError, UsageError
from kyso.files import StagedFiles
from kyso.pki import authority, batch, inventory, issuance, lifecycle
from kyso.pki.csr import MAX_CSR_BYTES, load_csr
from kyso.pki.keys import KeyType
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.records import CertificateRecord, common_name_of
from kyso.pki.subjects import SubjectRequest

KEY_TYPES = [k.value for k in KeyType]


@click.group()
def cert() -> None:
    """Issue, list, revoke, hold, release, renew and rekey certificates."""


def _subject_options(f: click.decorators.FC) -> click.decorators.FC:
    opts = [
        click.option("--name", help="Full name (CN), e.g. 'Nguyễn Văn An' or the agency name."),
        click.option("--id", "id_", help="12-digit personal ID number (CCCD)."),
        click.option("--dob", help="Date of birth YYYY-MM-DD (checked against the ID)."),
        click.option("--title", help="Job title (T=), staff only."),
        click.option("--unit", help="Unit (OU=), staff only."),
        click.option("--email", help="E-mail address (subjectAltName)."),
        click.option("--tax-code", help="Tax code (MST) of an agency, seal only."),
        click.option("--budget-code", help="Budget-unit code (MNS, 7 digits), seal only."),
        click.option("--locality", help="Locality (L=)."),
        click.option("--province", "province", help="Province slug (citizen ST=)."),
        click.option("--surname", help="Family name (SN=), if not the first word of --name."),
        click.option("--given-name", help="Given name (GN=), if not the rest of --name."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _request(**kw: str | None) -> SubjectRequest:
    return SubjectRequest.of(
        name=kw["name"], id=kw["id_"], dob=kw["dob"], title=kw["title"], unit=kw["unit"],
        email=kw["email"], tax_code=kw["tax_code"], budget_code=kw["budget_code"],
        locality=kw["locality"], province=kw["province"], surname=kw["surname"],
        given_name=kw["given_name"],
    )


def _read_csr(path: Path) -> x509.CertificateSigningRequest:
    try:
        if path.stat().st_size > MAX_CSR_BYTES:
            raise CSRError(f"CSR {path} is larger than {MAX_CSR_BYTES // 1024} KiB")
        data = path.read_bytes()
    except OSError as exc:
        raise CSRError(f"cannot read CSR {path}: {exc.strerror}") from None
    return load_csr(data)


def _pem_chain(chain: tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)


@cert.command("issue", epilog="""\b
Examples:
  kyso cert issue --profile staff --name "Nguyễn Văn An" --id 019099012345 \\
      --dob 1999-04-02 --title "Chuyên viên" --unit "Văn phòng UBND xã Phú Đình" \\
      --email an.nv@thainguyen.gov.vn --p12 an.p12
  kyso cert issue --profile seal --name "UBND xã Phú Đình" --tax-code 4600100155 \\
      --budget-code 1234567
  kyso cert issue --profile citizen --csr request.pem --name "Trần Thị Bình" \\
      --id 033301000123 --out binh.crt.pem""")
@click.option("--profile", "profile_name", required=True, help="staff, seal, citizen, …")
@_subject_options
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="Key to generate "
              "(default: the profile's).")
@click.option("--csr", type=click.Path(dir_okay=False, path_type=Path),
              help="Certify the key of this PKCS#10 request instead of generating one.")
@click.option("--days", type=int, help="Validity in days (default and maximum from the profile).")
@click.option("--ca", "ca_name", help="Issuing CA when the profile allows several.")
@click.option("--p12", type=click.Path(dir_okay=False, path_type=Path),
              help="PKCS#12 output (default <home>/issued/<serial>.p12).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Certificate PEM output (default <home>/issued/<serial>.crt.pem); the chain "
                   "goes next to it as .chain.pem.")
@passphrase_file_option
@click.option("--p12-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with the PKCS#12 passphrase (else $KYSO_P12_PASSPHRASE or a prompt).")
@pass_app
def cert_issue(app: App, /, profile_name: str, key_type: str | None, csr: Path | None,
               days: int | None, ca_name: str | None, p12: Path | None, out: Path | None,
               passphrase_file: Path | None, p12_passphrase_file: Path | None,
               **subject: str | None) -> None:
    """Issue one certificate following a profile."""
    kyso = app.kyso
    if csr is not None and p12 is not None:
        raise UsageError("--p12 needs a generated key; with --csr the holder keeps the key")
    request = _request(**subject)
    csr_obj = _read_csr(csr) if csr is not None else None
    kyso.profiles.get(profile_name)
    ca_obj = authority.CertificateAuthority(kyso, ca_passphrase(passphrase_file))
    p12_pass = p12_passphrase(p12_passphrase_file) if csr_obj is None else None
    _Outputs.precheck(kyso.settings.issued_dir, out, p12)
    prepared = issuance.prepare(
        kyso, ca_obj, profile_name, request, csr=csr_obj,
        key_type=KeyType(key_type) if key_type else None, days=days, issuer=ca_name)
    outputs = _Outputs.plan(kyso.settings.issued_dir, prepared.certificate.serial_number, out,
                            p12 if csr_obj is None else None, with_p12=csr_obj is None)
    p12_bytes = None
    if outputs.p12 is not None and prepared.private_key is not None and p12_pass is not None:
        p12_bytes = build_pkcs12(prepared.private_key, prepared.certificate,
                                 ca_obj.chain(prepared.issuer.name), p12_pass,
                                 common_name_of(prepared.certificate))
    issued, files = outputs.deliver(kyso, ca_obj, prepared, p12_bytes)
    _render_issued(app, issued, files, f"Issued {profile_name} certificate {issued.record.serial}")


@dataclass(frozen=True)
class _Outputs:
    """Where a new certificate's files go; checked before anything is signed or stored."""

    cert: Path
    chain: Path
    p12: Path | None

    @classmethod
    def plan(cls, issued_dir: Path, serial: int, out: Path | None, p12: Path | None,
             *, with_p12: bool) -> _Outputs:
        name = format(serial, "x")
        cert_path = out or issued_dir / f"{name}.crt.pem"
        stem = cert_path.name.removesuffix(".pem").removesuffix(".crt")
        chain_path = cert_path.with_name(f"{stem}.chain.pem")
        p12_path = (p12 or issued_dir / f"{name}.p12") if with_p12 else None
        issued_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        plan = cls(cert_path, chain_path, p12_path)
        paths = plan.paths()
        if len({p.resolve() for p in paths}) != len(paths):
            raise UsageError("--out, --p12 and the chain file must be different files")
        check_new_files(paths)
        return plan

    @staticmethod
    def precheck(issued_dir: Path, out: Path | None, p12: Path | None) -> None:
        """Before anything is signed: explicit outputs are new and distinct, the default folder
        is usable."""
        if out is not None and p12 is not None and out.resolve() == p12.resolve():
            raise UsageError("--out, --p12 and the chain file must be different files")
        check_new_files([p for p in (out, p12) if p is not None])
        issued_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(issued_dir, os.W_OK):
            raise UsageError(f"directory {issued_dir} is not writable")

    def paths(self) -> list[Path]:
        return [self.cert, self.chain] + ([self.p12] if self.p12 else [])

    def deliver(self, kyso: Kyso, ca_obj: authority.CertificateAuthority,
                prepared: issuance.Prepared, p12_bytes: bytes | None
                ) -> tuple[issuance.IssuedCertificate, dict[str, str]]:
        """Stage the files, store the certificate, then make the files visible.

        A certificate is in the store only once its files (and the holder's only key) are on
        disk; if storing fails, the staged files are removed and nothing was issued.
        """
        cert = prepared.certificate
        staged = StagedFiles()
        try:
            if self.p12 is not None and p12_bytes is not None:
                staged.add(self.p12, p12_bytes, mode=0o600)
            staged.add(self.cert, cert.public_bytes(serialization.Encoding.PEM))
            staged.add(self.chain, _pem_chain(tuple(ca_obj.chain(prepared.issuer.name))))
        except OSError as exc:
            staged.discard()
            raise PkiError(f"cannot write output ({exc.strerror}); nothing was issued") from None
        try:
            issued = issuance.commit(kyso, ca_obj, [prepared])[0]
        except BaseException:
            if _stored(kyso, cert):  # committed, then a later step (the audit write) failed
                staged.publish()
            else:
                staged.discard()
            raise
        staged.publish()
        files = {"certificate": str(self.cert), "chain": str(self.chain)}
        if self.p12 is not None and p12_bytes is not None:
            files["pkcs12"] = str(self.p12)
        return issued, files


def _stored(kyso: Kyso, cert: x509.Certificate) -> bool:
    try:
        issuance.get_record(kyso, format(cert.serial_number, "x"))
    except KysoError:
        return False
    return True


def _render_record(rec: CertificateRecord, title: str, now: dt.datetime | None = None,
                   extra: list[tuple[str, str]] | None = None) -> None:
    d = rec.to_dict(now)
    emit_fields([
        ("subject", d["subject"]), ("holder", d["holder"]), ("email", d["email"]),
        ("profile", d["profile"]), ("issuer", d["issuer"]), ("key", d["key_type"]),
        ("valid", f"{d['not_before']} → {d['not_after']}"), ("status", d["status"]),
        ("revoked", d["revoked_at"]), ("reason", d["revocation_reason"]),
        ("invalidity", d["invalidity_date"]), ("replaces", d["replaces"]),
        ("sha256", d["sha256"]), *(extra or []),
    ], title=title)


@cert.command("issue-batch", epilog="""\b
The roster is a UTF-8 CSV whose header names the inputs, e.g.:
  name,id,dob,title,unit,email
  Nguyễn Văn An,019099012345,1999-04-02,Chuyên viên,Văn phòng UBND xã Phú Đình,an.nv@thainguyen.gov.vn
\b
Examples:
  kyso cert issue-batch roster.csv --profile staff --out-dir issued/2026-11
  kyso cert issue-batch roster.csv --profile staff --all-or-nothing --key-type rsa-2048""")
@click.argument("roster", type=click.Path(dir_okay=False, exists=False, path_type=Path))
@click.option("--profile", "profile_name", required=True)
@click.option("--key-type", type=click.Choice(KEY_TYPES))
@click.option("--days", type=int)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the .p12 and .crt.pem files go (default <home>/issued/batch-<time>).")
@click.option("--all-or-nothing", is_flag=True, help="Issue nothing if any row is bad.")
@click.option("--jobs", type=click.IntRange(1, 64), help="Key-generation processes "
              "(default: one per core).")
@passphrase_file_option
@click.option("--p12-passphrase-file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def cert_issue_batch(app: App, roster: Path, profile_name: str, key_type: str | None,
                     days: int | None, out_dir: Path | None, all_or_nothing: bool,
                     jobs: int | None, passphrase_file: Path | None,
                     p12_passphrase_file: Path | None) -> None:
    """Issue certificates for every row of a roster; bad rows are reported by line."""
    kyso = app.kyso
    try:
        data = roster.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read roster {roster}: {exc.strerror}") from None
    kyso.profiles.get(profile_name)
    ca_obj = authority.CertificateAuthority(kyso, ca_passphrase(passphrase_file))
    p12_pass = p12_passphrase(p12_passphrase_file)
    target = out_dir or kyso.settings.issued_dir / ("batch-" + kyso.now().strftime(
        "%Y%m%dT%H%M%SZ"))
    with Progress(TextColumn("issuing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, disable=app.json, console=stderr) as bar:
        task = bar.add_task("issue", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = batch.issue_batch(
            kyso, ca_obj, profile_name, data, p12_passphrase=p12_pass, out_dir=target,
            key_type=KeyType(key_type) if key_type else None, days=days,
            all_or_nothing=all_or_nothing, jobs=jobs, progress=progress)
    if app.json:
        emit_json(result.to_dict())
    else:
        click.echo(f"issued {len(result.issued)} certificate(s) into {target}")
        if result.manifest:
            click.echo(f"manifest: {result.manifest}")
        for e in result.failed:
            click.echo(f"line {e.line}: {e.message}", err=True)
    if result.failed:
        raise SystemExit(1)


def _duration(value: str | None) -> dt.timedelta | None:
    if value is None:
        return None
    try:
        return inventory.parse_duration(value)
    except PkiError as exc:
        raise click.BadParameter(str(exc)) from None


def _serial_arg(kyso: Kyso, value: str) -> str:
    return inventory.find_serial(kyso, value)


@cert.command("revoke", epilog="""\b
Examples:
  kyso cert revoke 6f2489d7d37dd3ff86bb658b14f69662c932d7e4 --reason keyCompromise \\
      --invalidity-date 2026-11-20T08:00:00+07:00
  kyso cert revoke 6f2489d7 --reason affiliationChanged   # a unique prefix of 8+ digits""")
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              type=click.Choice(list(lifecycle.REVOKE_REASONS), case_sensitive=False))
@click.option("--invalidity-date", help="When the key is known or suspected to be compromised "
              "(ISO 8601 with offset).")
@pass_app
def cert_revoke(app: App, serial: str, reason: str, invalidity_date: str | None) -> None:
    """Revoke a certificate (permanent). Publish a CRL afterwards."""
    when = None
    if invalidity_date:
        try:
            when = dt.datetime.fromisoformat(invalidity_date)
        except ValueError:
            raise UsageError("--invalidity-date must be ISO 8601, e.g. 2026-11-20T08:00:00+07:00"
                             ) from None
        if when.tzinfo is None:
            raise UsageError("--invalidity-date needs an offset, e.g. +07:00")
    change = lifecycle.revoke(app.kyso, _serial_arg(app.kyso, serial), reason=reason,
                              invalidity_date=when)
    _render_change(app, change, "revoked")


@cert.command("hold")
@click.argument("serial")
@pass_app
def cert_hold(app: App, serial: str) -> None:
    """Suspend a certificate (tạm dừng): listed as certificateHold until released."""
    _render_change(app, lifecycle.hold(app.kyso, _serial_arg(app.kyso, serial)), "put on hold")


@cert.command("release")
@click.argument("serial")
@pass_app
def cert_release(app: App, serial: str) -> None:
    """Release a held certificate: valid again from the next CRL."""
    _render_change(app, lifecycle.release(app.kyso, _serial_arg(app.kyso, serial)), "released")


def _render_change(app: App, change: lifecycle.StatusChange, verb: str) -> None:
    if app.json:
        emit_json({"old_status": change.old_status.value, **change.record.to_dict()})
        return
    click.echo(f"certificate {change.serial} {verb} ({change.old_status.value} → "
               f"{change.record.status.value}); run `kyso crl publish --ca "
               f"{change.record.issuer}` to publish it")


@cert.command("renew")
@click.argument("serial")
@click.option("--days", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@passphrase_file_option
@pass_app
def cert_renew(app: App, serial: str, days: int | None, out: Path | None,
               passphrase_file: Path | None) -> None:
    """New certificate, same subject and same key (the holder keeps using their key)."""
    kyso = app.kyso
    ca_obj = authority.CertificateAuthority(kyso, ca_passphrase(passphrase_file))
    _Outputs.precheck(kyso.settings.issued_dir, out, None)
    prepared = issuance.prepare_renewal(kyso, ca_obj, _serial_arg(kyso, serial), days=days)
    outputs = _Outputs.plan(kyso.settings.issued_dir, prepared.certificate.serial_number,
                            out, None, with_p12=False)
    issued, files = outputs.deliver(kyso, ca_obj, prepared, None)
    _render_issued(app, issued, files, f"Renewed: certificate {issued.record.serial} replaces "
                                       f"{issued.record.replaces}")


@cert.command("rekey")
@click.argument("serial")
@click.option("--csr", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key-type", type=click.Choice(KEY_TYPES))
@click.option("--days", type=int)
@click.option("--keep-old", is_flag=True, help="Do not revoke the old certificate.")
@click.option("--p12", type=click.Path(dir_okay=False, path_type=Path))
@passphrase_file_option
@click.option("--p12-passphrase-file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def cert_rekey(app: App, serial: str, csr: Path | None, key_type: str | None, days: int | None,
               keep_old: bool, p12: Path | None, passphrase_file: Path | None,
               p12_passphrase_file: Path | None) -> None:
    """New certificate, same subject, new key; the old one is revoked as superseded."""
    kyso = app.kyso
    csr_obj = _read_csr(csr) if csr else None
    ca_obj = authority.CertificateAuthority(kyso, ca_passphrase(passphrase_file))
    p12_pass = p12_passphrase(p12_passphrase_file) if csr_obj is None else None
    _Outputs.precheck(kyso.settings.issued_dir, None, p12)
    old_serial = _serial_arg(kyso, serial)
    prepared = issuance.prepare_rekey(kyso, ca_obj, old_serial, csr=csr_obj,
                                      key_type=KeyType(key_type) if key_type else None,
                                      days=days)
    outputs = _Outputs.plan(kyso.settings.issued_dir, prepared.certificate.serial_number,
                            None, p12, with_p12=csr_obj is None)
    p12_bytes = None
    if prepared.private_key is not None and p12_pass is not None:
        p12_bytes = build_pkcs12(prepared.private_key, prepared.certificate,
                                 ca_obj.chain(prepared.issuer.name), p12_pass,
                                 common_name_of(prepared.certificate))
    issued, files = outputs.deliver(kyso, ca_obj, prepared, p12_bytes)
    if not keep_old:  # only once the holder has the new files
        lifecycle.revoke(kyso, old_serial, reason="superseded")
    _render_issued(app, issued, files, f"Rekeyed: certificate {issued.record.serial} replaces "
                                       f"{issued.record.replaces}")


def _render_issued(app: App, issued: issuance.IssuedCertificate, files: dict[str, str],
                   title: str) -> None:
    if app.json:
        emit_json({**issued.record.to_dict(app.kyso.now()), "files": files,
                   "warnings": list(issued.warnings)})
        return
    _render_record(issued.record, title=title, extra=list(files.items()))
    for w in issued.warnings:
        click.echo(f"warning: {w}", err=True)


@cert.command("list", epilog="""\b
Examples:
  kyso cert list --expiring 30d
  kyso cert list --profile staff --status revoked --format csv
  kyso cert list --id 019099012345 --format json""")
@click.option("--profile", "profile_name")
@click.option("--status", type=click.Choice(list(inventory.STATUS_FILTERS)))
@click.option("--expiring", callback=lambda _c, _p, v: _duration(v),
              help="Valid certificates expiring within 30d, 2w, 12h…")
@click.option("--id", "holder_id", help="Holder's personal ID or tax code (matched by pseudonym).")
@click.option("--ca", "issuer", help="Issuing CA (staff, citizen, services).")
@click.option("--limit", type=click.IntRange(1, None))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
              help="Overrides the global --format.")
@pass_app
def cert_list(app: App, profile_name: str | None, status: str | None,
              expiring: dt.timedelta | None,
              holder_id: str | None, issuer: str | None, limit: int | None,
              fmt: str | None) -> None:
    """Search the inventory."""
    kyso = app.kyso
    query = inventory.Query(
        profile=profile_name, status=status,
        expiring_within=expiring,
        holder_id=holder_id, issuer=issuer, limit=limit)
    records = inventory.search(kyso, query)
    now = kyso.now()
    fmt = fmt or ("json" if app.json else "table")
    if fmt == "json":
        emit_json([r.to_dict(now) for r in records])
        return
    columns = ["serial", "profile", "common_name", "holder", "status", "not_after", "issuer"]
    rows = [[r.serial, r.profile, r.common_name, r.holder_hint, r.display_status(now),
             vn_iso(r.not_after), r.issuer] for r in records]
    if fmt == "csv":
        emit_csv(columns, rows)
    else:
        emit_table(columns, rows, title=f"{len(records)} certificate(s)")


@cert.command("show")
@click.argument("serial")
@click.option("--pem", is_flag=True, help="Print the certificate PEM too.")
@pass_app
def cert_show(app: App, serial: str, pem: bool) -> None:
    """Show one certificate."""
    kyso = app.kyso
    record, _ = issuance.get_record(kyso, _serial_arg(app.kyso, serial))
    if app.json:
        emit_json({**record.to_dict(kyso.now()), "pem": record.pem.decode("ascii")})
        return
    _render_record(record, title=f"certificate {record.serial}", now=kyso.now())
    if pem:
        click.echo(record.pem.decode("ascii"), nl=False)
