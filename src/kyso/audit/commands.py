"""``kyso audit …``: verify, show, prove, consistency, checkpoint, export, purge, verify-proof.

Thin: parse → one library call → render. Exit 1 when verification fails."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from kyso.audit import export as exporting
from kyso.audit.checkpoint import Checkpoint, parse_checkpoint, split_note, verify_checkpoint
from kyso.audit.log import VN
from kyso.audit.proofs import consistency_bundle, inclusion_bundle, parse_bundle, verify_bundle
from kyso.audit.reader import EventFilter, select_events
from kyso.audit.retention import plan_purge, purge, retention_days
from kyso.audit.segments import Layout
from kyso.audit.signer import (
    checkpoint_due,
    create_checkpoint,
    log_origin,
    record_verification,
    signer_certificates,
    trusted_keys,
    verify_with_store,
)
from kyso.audit.verify import Status, VerifyReport
from kyso.cliutil import (
    App,
    ca_passphrase,
    emit_fields,
    emit_json,
    emit_table,
    pass_app,
    passphrase_file_option,
)
from kyso.clock import SystemClock
from kyso.context import Kyso
from kyso.errors import AuditError, CheckpointError, ConfigError, KysoError, UsageError
from kyso.files import atomic_write

MAX_READ = 1 << 20


def register(root: click.Group) -> None:
    root.add_command(audit)


@click.group()
def audit() -> None:
    """Inspect and prove the tamper-evident audit log."""


# --- verify ------------------------------------------------------------------------------

def _read_small(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_READ + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_READ:
        raise ConfigError(f"{what} {path} is too large")
    return data


@audit.command("verify", epilog="""\b
Examples:
  kyso audit verify
  kyso audit verify --checkpoint yesterday.note   # a checkpoint you saved earlier
  kyso audit verify --from 120000 --format json""")
@click.option("--from", "from_seq", type=click.IntRange(min=0),
              help="Check only entries from this sequence number on (no root comparison).")
@click.option("--checkpoint", "checkpoint_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A signed checkpoint saved earlier; the log must still match it.")
@pass_app
def verify_cmd(app: App, from_seq: int | None, checkpoint_files: tuple[Path, ...]) -> None:
    """Verify every entry, the hash chain, the Merkle tree and the signed checkpoints.

    Exits 1 and names the first bad sequence number and the kind of change (modified,
    deleted, inserted, reordered, truncated, torn-tail, garbage, forged-checkpoint, other-key,
    rewritten) when anything does not verify."""
    kyso = app.kyso
    given = [(str(p), _read_small(p, "checkpoint")) for p in checkpoint_files]
    report = verify_with_store(kyso, checkpoints=given, from_seq=from_seq)
    if from_seq is None:
        record_verification(kyso, report)
    if app.json:
        emit_json(report.to_dict())
    else:
        _render_report(kyso, report)
    if not report.ok:
        raise _Failed()


class _Failed(KysoError):
    """Verification failed; the report already said why."""

    def __init__(self) -> None:
        super().__init__("audit log verification FAILED")


def _render_report(kyso: Kyso, report: VerifyReport) -> None:
    root = report.root.hex()[:16] + "…" if report.root else "-"
    click.echo(f"Audit log {kyso.settings.audit_dir}: {report.size} entries, root {root}")
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        click.echo(f"  {check.status.value:<4}  {check.name.ljust(width)}  {check.detail}")
    for finding in report.findings:
        seq = f" at seq {finding.seq}" if finding.seq is not None else ""
        click.echo(f"FINDING {finding.kind.value}{seq}: {finding.where}: {finding.message}")
    click.echo("Result: " + ("PASS" if report.ok else "FAIL"))


# --- show / export ---------------------------------------------------------------------

def _when(text: str | None, now: dt.datetime, option: str) -> dt.datetime | None:
    """An ISO date (a day in Vietnam), an ISO time (naive = +07:00), or an age like 24h / 7d."""
    if text is None:
        return None
    m = re.fullmatch(r"([0-9]{1,5})([mhd])", text.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - dt.timedelta(**{unit: int(m.group(1))})
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
            return dt.datetime.fromisoformat(text.strip()).replace(tzinfo=VN)
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a date, a time or an age like 24h / 7d") \
            from None
    return when if when.tzinfo else when.replace(tzinfo=VN)


def _filter(kyso: Kyso, since: str | None, until: str | None, layer: tuple[str, ...],
            action: tuple[str, ...], actor: tuple[str, ...], outcome: str | None,
            from_seq: int) -> EventFilter:
    now = kyso.now()
    return EventFilter(since=_when(since, now, "--since"), until=_when(until, now, "--until"),
                       layers=frozenset(layer), actions=frozenset(a.upper() for a in action),
                       actors=frozenset(actor), outcome=outcome, from_seq=from_seq)


LAYERS = ["pki", "signing", "authn", "audit", "admin", "server"]


def _filter_options(f: Any) -> Any:
    for option in reversed([
        click.option("--since", help="From this date/time (or age: 24h, 7d)."),
        click.option("--until", help="Before this date/time (or age)."),
        click.option("--layer", multiple=True, type=click.Choice(LAYERS), help="Only this layer."),
        click.option("--action", multiple=True, help="Only this action (e.g. CERT_REVOKED)."),
        click.option("--actor", multiple=True, help="Only this actor (pseudonym or admin:…)."),
        click.option("--outcome", type=click.Choice(["success", "failure"])),
        click.option("--from", "from_seq", type=click.IntRange(min=0), default=0,
                     help="Start at this sequence number."),
    ]):
        f = option(f)
    return f


@audit.command("show", epilog="""\b
Examples:
  kyso audit show --since 24h --layer pki
  kyso audit show --action CERT_REVOKED --outcome success --format json
  kyso audit show --since 2026-11-01 --until 2026-12-01 --actor admin:an""")
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N events.")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "json"]), default=None,
              help="table (= text) or json.")
@pass_app
def show_cmd(app: App, since: str | None, until: str | None, layer: tuple[str, ...],
             action: tuple[str, ...], actor: tuple[str, ...], outcome: str | None,
             from_seq: int, limit: int | None, fmt: str | None) -> None:
    """List events (times shown in Vietnam, +07:00)."""
    if fmt is not None:
        app.output = "json" if fmt == "json" else "text"
    kyso = app.kyso
    query = _filter(kyso, since, until, layer, action, actor, outcome, from_seq)
    events = select_events(kyso.settings.audit_dir, query, limit)
    if app.json:
        emit_json(events)
        return
    rows = []
    for e in events:
        when = dt.datetime.fromisoformat(e["time"]).astimezone(VN).isoformat(timespec="seconds")
        rows.append([e["seq"], when, e["layer"], e["action"], e["outcome"], e["actor"],
                     e.get("object", "")])
    emit_table(["seq", "time (+07:00)", "layer", "action", "outcome", "actor", "object"], rows,
               title=f"{len(events)} event(s)")


@audit.command("export", epilog="""\b
Examples:
  kyso audit export --format jsonl -o audit.jsonl
  kyso audit export --format ocsf --since 7d -o week.ocsf.jsonl
  kyso audit export --format syslog --layer authn | logger --rfc5424 ...""")
@click.option("--format", "fmt", type=click.Choice(list(exporting.FORMATS)), required=True,
              help="jsonl (our entries), ocsf (OCSF 1.x JSON lines), syslog (RFC 5424).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (never overwritten) instead of standard output.")
@_filter_options
@pass_app
def export_cmd(app: App, fmt: str, output: Path | None, since: str | None, until: str | None,
               layer: tuple[str, ...], action: tuple[str, ...], actor: tuple[str, ...],
               outcome: str | None, from_seq: int) -> None:
    """Export events for a SIEM: JSON lines, OCSF or RFC 5424 syslog."""
    kyso = app.kyso
    if output is not None and output.exists():
        raise UsageError(f"{output} exists; kyso never overwrites an output")
    query = _filter(kyso, since, until, layer, action, actor, outcome, from_seq)
    events = select_events(kyso.settings.audit_dir, query)
    text = "".join(line + "\n" for line in exporting.export_lines(
        events, fmt, hostname=socket.gethostname()))
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text.encode("utf-8"), mode=0o600, exclusive=True)
        click.echo(f"{len(events)} event(s) written to {output}", err=True)


# --- checkpoints and proofs ------------------------------------------------------------

@audit.command("checkpoint", epilog="""\b
Examples:
  kyso audit checkpoint
  kyso audit checkpoint --every 3600     # keep signing, hourly (idle or not)""")
@passphrase_file_option
@click.option("--every", type=click.IntRange(min=1), default=None,
              help="Keep running: sign a checkpoint every N seconds (its own event is new each "
                   "time, so an idle log stays fresh too).")
@pass_app
def checkpoint_cmd(app: App, passphrase_file: Path | None, every: int | None) -> None:
    """Verify the log, then sign a C2SP checkpoint with the audit-signer key."""
    kyso = app.kyso
    passphrase = ca_passphrase(passphrase_file)
    result = create_checkpoint(kyso, passphrase)
    _render_checkpoint(app, result.to_dict())
    last_time = kyso.now()
    while every is not None:
        time.sleep(1)
        if checkpoint_due(last_time, kyso.now(), every):
            result = create_checkpoint(kyso, passphrase)
            _render_checkpoint(app, result.to_dict())
            last_time = kyso.now()


def _render_checkpoint(app: App, data: dict[str, Any]) -> None:
    if app.json:
        emit_json(data)
        return
    state = "signed" if data["created"] else "already signed"
    emit_fields([("origin", data["origin"]), ("tree size", data["size"]),
                 ("root", data["root"]), ("file", data["path"]),
                 ("verifier key", data["verifier_key"])],
                title=f"Checkpoint {state}:")


def _checkpoint_for(kyso: Kyso, ref: str, *, covering: int | None = None
                    ) -> tuple[bytes, Checkpoint]:
    """A checkpoint named by file, by tree size, or 'latest'."""
    layout = Layout(kyso.settings.audit_dir)
    if ref == "latest":
        notes = sorted(layout.checkpoints.glob("*.note")) if layout.checkpoints.is_dir() else []
        if covering is not None:
            notes = [n for n in notes if int(n.stem) > covering]
        if not notes:
            need = f" covering seq {covering}" if covering is not None else ""
            raise AuditError(f"no signed checkpoint{need} yet; run `kyso audit checkpoint`")
        path = notes[-1] if covering is None else notes[0]
    elif ref.isdigit():
        path = layout.checkpoints / f"{int(ref):012d}.note"
        if not path.exists():
            raise AuditError(f"no signed checkpoint of size {ref} (see {layout.checkpoints})")
    else:
        path = Path(ref)
    note = _read_small(path, "checkpoint")
    try:
        text, _sigs = split_note(note)
        return note, parse_checkpoint(text)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _signer(kyso: Kyso, *notes: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The audit-signer certificate for a bundle, and its chain (services CA, root): the one
    whose key signed ``notes`` and that was trusted when each was signed (after a re-key, an
    older checkpoint needs the older certificate), else the current one."""
    from kyso.pki.authority import list_authorities, list_services

    by_name = {a.name: a for a in list_authorities(kyso)}
    chain = [by_name[n].certificate for n in ("services", "root") if n in by_name]
    if notes:
        now = kyso.now()
        origin = log_origin(kyso)
        for signer in reversed(trusted_keys(kyso)):  # the newest certificate first
            try:
                for note in notes:
                    verify_checkpoint(note, origin, [signer], now=now)
            except CheckpointError:
                continue
            assert signer.certificate is not None
            return signer.certificate, list(signer.chain) or chain
    services = {s.name: s for s in list_services(kyso)}
    if "audit-signer" in services:
        cert = services["audit-signer"].certificate
    else:
        candidates = signer_certificates(kyso)
        if not candidates:
            raise AuditError("this CA has no audit-signer certificate")
        cert = candidates[-1]
    return cert, chain


def _emit_bundle(app: App, bundle: dict[str, Any], output: Path | None, summary: str) -> None:
    data = (json.dumps(bundle, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    if output.exists():
        raise UsageError(f"{output} exists; kyso never overwrites an output")
    atomic_write(output, data, mode=0o644, exclusive=True)
    if app.json:
        emit_json({"result": "PASS", "bundle": str(output), "summary": summary})
    else:
        click.echo(f"PASS  {summary}\nproof bundle written to {output}")


@audit.command("prove", epilog="""\b
Examples:
  kyso audit prove 41 -o entry41.proof.json
  kyso audit verify-proof entry41.proof.json --cert audit-signer.pem""")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--checkpoint", "ref", default="latest", show_default=True,
              help="Checkpoint file, tree size, or 'latest' (the first one covering SEQ).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def prove_cmd(app: App, seq: int, ref: str, output: Path | None) -> None:
    """Prove that entry SEQ is in the log signed by a checkpoint (an offline bundle)."""
    kyso = app.kyso
    note, checkpoint = _checkpoint_for(kyso, ref, covering=seq)
    cert, chain = _signer(kyso, note)
    bundle = inclusion_bundle(kyso.settings.audit_dir, seq, note, checkpoint, cert, chain)
    verify_bundle(bundle, cert, now=kyso.now())  # never hand out a proof that does not verify
    proof_len = len(bundle["proof"])
    _emit_bundle(app, bundle, output, f"entry {seq} is in the log of size {checkpoint.size} "
                 f"({proof_len} hashes)")


@audit.command("consistency", epilog="""\b
Examples:
  kyso audit consistency 1000 2048 -o grow.proof.json
  kyso audit consistency yesterday.note latest""")
@click.argument("old")
@click.argument("new", default="latest")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def consistency_cmd(app: App, old: str, new: str, output: Path | None) -> None:
    """Prove that the log of checkpoint OLD is a prefix of the log of checkpoint NEW.

    OLD and NEW are checkpoint files, tree sizes with a stored checkpoint, or 'latest'."""
    kyso = app.kyso
    old_cp, new_cp = _checkpoint_for(kyso, old), _checkpoint_for(kyso, new)
    cert, chain = _signer(kyso, old_cp[0], new_cp[0])
    bundle = consistency_bundle(kyso.settings.audit_dir, old_cp, new_cp, cert, chain)
    verify_bundle(bundle, cert, now=kyso.now())
    _emit_bundle(app, bundle, output, f"the log of size {old_cp[1].size} is a prefix of the log "
                 f"of size {new_cp[1].size}")


@audit.command("verify-proof", epilog="""\b
Examples:
  kyso audit verify-proof entry41.proof.json --cert audit-signer.pem
  kyso audit verify-proof grow.proof.json --trust root.pem""")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The audit-signer certificate (PEM) you trust.")
@click.option("--trust", "trust_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A root certificate (PEM) the bundle's signer must chain to.")
@pass_app
def verify_proof_cmd(app: App, bundle: Path, cert_file: Path | None,
                     trust_files: tuple[Path, ...]) -> None:
    """Check a proof bundle offline: no kyso home, only the certificate you trust."""
    if cert_file is None and not trust_files:
        raise UsageError("give --cert (the audit-signer certificate) or --trust (a root)")
    cert = _load_cert(cert_file) if cert_file else None
    roots = [_load_cert(p) for p in trust_files]
    # Offline: no kyso home, so the machine's clock judges checkpoints dated in the future.
    result = verify_bundle(parse_bundle(_read_small(bundle, "proof bundle")), cert, roots,
                           now=SystemClock().now())
    if app.json:
        emit_json(result.to_dict())
        return
    if result.kind == "inclusion":
        assert result.entry is not None
        e = result.entry
        click.echo(f"PASS  entry {result.seq} is in the log {result.origin} of size "
                   f"{result.tree_size}")
        click.echo(f"      {e.get('time')}  {e.get('layer')}  {e.get('action')}  "
                   f"{e.get('outcome')}  {e.get('actor')}  {e.get('object', '')}")
    else:
        click.echo(f"PASS  the log {result.origin} of size {result.old_size} is a prefix of "
                   f"its log of size {result.tree_size}")


def _load_cert(path: Path) -> x509.Certificate:
    data = _read_small(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError:
            raise ConfigError(f"{path} is not a certificate (PEM or DER)") from None


# --- retention -------------------------------------------------------------------------

@audit.command("purge", epilog="""\b
Examples:
  kyso audit purge --dry-run
  kyso audit purge""")
@click.option("--dry-run", is_flag=True, help="Only show what would be purged.")
@pass_app
def purge_cmd(app: App, dry_run: bool) -> None:
    """Remove sealed segments older than the retention period (never below the level's
    minimum), keeping the subtree hashes that keep later entries provable."""
    kyso = app.kyso
    plan = plan_purge(kyso)
    days = retention_days(kyso)
    if dry_run or not plan.segments:
        data = {**plan.to_dict(), "retention_days": days, "purged": False}
        if app.json:
            emit_json(data)
        else:
            click.echo(f"retention {days} days (cut-off {plan.cutoff}); "
                       f"{len(plan.segments)} segment(s) to purge: "
                       + (", ".join(s.name for s in plan.segments) or "none"))
        return
    state = purge(kyso, plan)
    if app.json:
        emit_json({**plan.to_dict(), "retention_days": days, "purged": True})
    else:
        click.echo(f"purged {len(plan.segments)} segment(s); entries before seq "
                   f"{state.size if state else 0} are now represented by their subtree hashes")
    if any(c.status is Status.FAIL for c in verify_with_store(kyso).checks):
        raise AuditError("the log does not verify after the purge")
