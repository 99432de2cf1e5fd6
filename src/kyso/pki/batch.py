"""Issuing from a roster (CSV): every row validated first, bad rows reported by line number.

Without ``all_or_nothing`` the good rows are issued and the bad ones reported; with it, one
bad row stops everything and all certificates are stored in a single transaction. RSA keys
are generated in worker processes, one per core.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kyso.clock import vn_iso
from kyso.config import check_new_passphrase
from kyso.context import Kyso
from kyso.errors import KysoError, RosterError
from kyso.files import StagedFiles, atomic_write, ensure_private_dir, spreadsheet_safe
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.issuance import IssuedCertificate, Prepared
from kyso.pki.keys import KeyType, PrivateKey, as_private_key, generate_key
from kyso.pki.pkcs12 import build_pkcs12
from kyso.pki.profiles import INPUTS
from kyso.pki.records import common_name_of
from kyso.pki.serials import serial_hex
from kyso.pki.subjects import SubjectRequest, resolve

MAX_ROSTER_BYTES = 16 * 1024 * 1024
MAX_ROWS = 50_000


@dataclass(frozen=True)
class RosterRow:
    line: int
    request: SubjectRequest


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass(frozen=True)
class IssuedRow:
    line: int
    issued: IssuedCertificate
    files: tuple[Path, ...]


@dataclass(frozen=True)
class BatchResult:
    issued: tuple[IssuedRow, ...]
    failed: tuple[RowError, ...]
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "issued": [{"line": r.line, "serial": r.issued.record.serial,
                        "common_name": r.issued.record.common_name,
                        "files": [str(f) for f in r.files]} for r in self.issued],
            "failed": [{"line": e.line, "error": e.message} for e in self.failed],
            "manifest": str(self.manifest) if self.manifest else None,
        }


@dataclass
class _Plan:
    rows: list[RosterRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def parse_roster(data: bytes) -> _Plan:
    """Read a UTF-8 CSV roster (a BOM from spreadsheet exports is fine). Header names are the
    profile inputs: name, id, dob, title, unit, email, tax_code, budget_code, locality, …"""
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"roster is larger than {MAX_ROSTER_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError(f"roster is not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise RosterError("roster contains NUL bytes; it is not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RosterError("roster is empty; the first line must name the columns") from None
    except csv.Error as exc:
        raise RosterError(f"line 1: {exc}") from None
    columns = [h.strip().lower().replace("-", "_") for h in header]
    unknown = [c for c in columns if c not in INPUTS]
    if any(not re.fullmatch(r"[a-z_]{1,32}", c) for c in unknown):
        # Probably a data row where the header should be: never echo it (ID numbers, names).
        raise RosterError("line 1 is not a header: the first line must name the columns, e.g. "
                          f"{','.join(INPUTS[:6])}")
    if unknown:
        raise RosterError(f"line 1: unknown column(s) {', '.join(unknown)}; columns are "
                          f"{', '.join(INPUTS)}")
    if len(set(columns)) != len(columns):
        raise RosterError("line 1: a column is named twice")
    plan = _Plan()
    try:
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(plan.rows) + len(plan.errors) >= MAX_ROWS:
                raise RosterError(f"roster has more than {MAX_ROWS} rows; split it")
            if len(fields) != len(columns):
                plan.errors.append(RowError(line, f"has {len(fields)} fields, the header has "
                                                  f"{len(columns)}"))
                continue
            values = {c: v for c, v in zip(columns, fields, strict=True) if v.strip()}
            plan.rows.append(RosterRow(line, SubjectRequest(values)))
    except csv.Error as exc:
        raise RosterError(f"line {reader.line_num}: {exc}") from None
    if not plan.rows and not plan.errors:
        raise RosterError("roster has a header but no rows")
    return plan


COMMIT_GROUP = 64  # rows per transaction and per audit fsync when issuing a roster


def _generate_der(key_type_value: str) -> bytes:
    key = generate_key(KeyType(key_type_value))
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_own_key(der: bytes) -> PrivateKey:
    # These keys come from our own worker processes a moment ago; re-running OpenSSL's full
    # RSA consistency check costs about as much as generating the key (measured ~45 ms).
    return as_private_key(serialization.load_der_private_key(
        der, None, unsafe_skip_rsa_key_validation=True))


def _workers(jobs: int | None) -> int:
    return jobs or os.cpu_count() or 1


def generate_keys(key_type: KeyType, count: int, jobs: int | None) -> list[PrivateKey]:
    """``count`` fresh keys; RSA in ``jobs`` worker processes (default: one per core)."""
    workers = _workers(jobs)
    if not key_type.is_rsa or workers <= 1 or count < 2:
        return [generate_key(key_type) for _ in range(count)]
    with ProcessPoolExecutor(max_workers=min(workers, count)) as pool:
        ders = pool.map(_generate_der, [key_type.value] * count,
                        chunksize=max(1, count // (workers * 4)))
        return [_load_own_key(der) for der in ders]  # overlaps with the workers


def _p12_job(args: tuple[bytes, bytes, list[bytes], str, str]) -> bytes:
    key_der, cert_der, chain_ders, passphrase, name = args
    return build_pkcs12(_load_own_key(key_der), x509.load_der_x509_certificate(cert_der),
                        [x509.load_der_x509_certificate(d) for d in chain_ders], passphrase, name)


def build_pkcs12_many(
    items: list[tuple[PrivateKey, x509.Certificate]],
    chain: list[x509.Certificate],
    passphrase: str,
    jobs: int | None,
) -> list[bytes]:
    """PKCS#12 files for many holders; the PBKDF2 work runs on every core."""
    check_new_passphrase(passphrase, "PKCS#12 passphrase")
    workers = _workers(jobs)
    if workers <= 1 or len(items) < 4:
        return [build_pkcs12(k, c, chain, passphrase, common_name_of(c)) for k, c in items]
    chain_ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    jobs_args = [
        (k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption()),
         c.public_bytes(serialization.Encoding.DER), chain_ders, passphrase, common_name_of(c))
        for k, c in items
    ]
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(_p12_job, jobs_args, chunksize=max(1, len(items) // (workers * 4))))


def issue_batch(
    kyso: Kyso,
    ca: CertificateAuthority,
    profile_name: str,
    roster: bytes,
    *,
    p12_passphrase: str,
    out_dir: Path,
    key_type: KeyType | None = None,
    days: int | None = None,
    all_or_nothing: bool = False,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    profile = kyso.profiles.get(profile_name)
    issuer_name = profile.issuers[0]
    kt = key_type or profile.default_key
    issuance._check_key(profile, kt)
    plan = parse_roster(roster)
    today = kyso.now().date()
    valid: list[RosterRow] = []
    errors = list(plan.errors)
    for row in plan.rows:
        try:
            resolve(profile, row.request, ca.settings, issuer_name, today)
        except KysoError as exc:
            errors.append(RowError(row.line, str(exc)))
        else:
            valid.append(row)
    errors.sort(key=lambda e: e.line)
    if all_or_nothing and errors:
        detail = "; ".join(f"line {e.line}: {e.message}" for e in errors[:20])
        raise RosterError(f"{len(errors)} bad row(s), nothing issued (--all-or-nothing): {detail}")
    ca.issuer(issuer_name)  # unlock (and fail on a wrong passphrase) before generating keys
    check_new_passphrase(p12_passphrase, "PKCS#12 passphrase")
    try:
        ensure_private_dir(out_dir)
    except OSError as exc:
        raise RosterError(f"cannot use output folder {out_dir}: {exc.strerror}") from None
    keys = generate_keys(kt, len(valid), jobs)
    prepared: list[tuple[RosterRow, Prepared]] = []
    for row, key in zip(valid, keys, strict=True):
        try:
            prepared.append((row, issuance.prepare(kyso, ca, profile.name, row.request,
                                                   private_key=key, days=days)))
        except KysoError as exc:
            if all_or_nothing:
                raise RosterError(f"line {row.line}: {exc}; nothing issued") from None
            errors.append(RowError(row.line, str(exc)))
    chain = ca.chain(issuer_name)
    group_size = len(prepared) if all_or_nothing else COMMIT_GROUP
    issued_rows: list[IssuedRow] = []
    for start in range(0, len(prepared), max(group_size, 1)):
        group = prepared[start:start + group_size]
        issued_rows += _issue_group(kyso, ca, group, chain, p12_passphrase, out_dir, jobs,
                                    errors, all_or_nothing)
        if progress:
            progress(min(start + len(group), len(prepared)), len(prepared))
    errors.sort(key=lambda e: e.line)
    manifest = None
    if issued_rows:
        manifest = _write_manifest(out_dir, issued_rows)
        pem_chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        atomic_write(out_dir / f"chain-{issuer_name}.pem", pem_chain)
    return BatchResult(tuple(issued_rows), tuple(errors), manifest)


def _issue_group(
    kyso: Kyso,
    ca: CertificateAuthority,
    group: list[tuple[RosterRow, Prepared]],
    chain: list[x509.Certificate],
    p12_passphrase: str,
    out_dir: Path,
    jobs: int | None,
    errors: list[RowError],
    all_or_nothing: bool,
) -> list[IssuedRow]:
    """Build and stage the group's files, store the group in one transaction (a failing group
    is retried row by row unless all-or-nothing), then publish the files of what was stored.
    A stored certificate always has its PKCS#12 on disk."""
    p12s = build_pkcs12_many([(p.private_key, p.certificate)  # type: ignore[misc]
                              for _row, p in group], chain, p12_passphrase, jobs)
    staged: list[tuple[RosterRow, Prepared, StagedFiles]] = []
    try:
        for (row, item), p12 in zip(group, p12s, strict=True):
            files = StagedFiles()
            staged.append((row, item, files))
            name = serial_hex(item.certificate.serial_number)
            files.add(out_dir / f"{name}.p12", p12, mode=0o600)
            files.add(out_dir / f"{name}.crt.pem",
                      item.certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        for _r, _i, files in staged:
            files.discard()
        raise RosterError(f"cannot write into {out_dir}: {exc.strerror}; this group of "
                          f"{len(group)} row(s) was not issued") from None
    done: dict[int, IssuedCertificate] = {}
    try:
        try:
            stored = issuance.commit(kyso, ca, [item for _r, item, _f in staged])
            done = {r.line: i for (r, _i, _f), i in zip(staged, stored, strict=True)}
        except KysoError as exc:
            if all_or_nothing:
                raise RosterError(f"{exc}; nothing issued") from None
            for row, item, _files in staged:
                try:
                    done[row.line] = issuance.commit(kyso, ca, [item])[0]
                except KysoError as row_exc:
                    errors.append(RowError(row.line, str(row_exc)))
    finally:  # even on Ctrl-C: what was stored gets its files, the rest is removed
        out = []
        for row, _item, files in staged:
            if row.line in done:
                paths = tuple(files.finals)
                files.publish()
                out.append(IssuedRow(row.line, done[row.line], paths))
            else:
                files.discard()
    return out


def _write_manifest(out_dir: Path, rows: list[IssuedRow]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["line", "serial", "common_name", "holder", "not_after", "p12", "certificate"])
    for r in sorted(rows, key=lambda r: r.line):
        rec = r.issued.record
        writer.writerow([r.line, rec.serial, spreadsheet_safe(rec.common_name), rec.holder_hint or "",
                         vn_iso(rec.not_after), r.files[0].name, r.files[1].name])
    data = buf.getvalue().encode("utf-8")
    for n in range(1, 1000):  # a second batch into the same folder keeps the first manifest
        path = out_dir / ("manifest.csv" if n == 1 else f"manifest-{n}.csv")
        try:
            atomic_write(path, data, exclusive=True)
        except FileExistsError:
            continue
        return path
    raise RosterError(f"too many manifests in {out_dir}")
