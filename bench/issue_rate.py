#!/usr/bin/env python3
"""Certificate issuance rate: kyso against a bare ``cryptography`` loop, in one run.

Section 1 (per CA key type): a temporary home and CA hierarchy are created, the ``staff`` CA
key is unlocked once, and then, in alternating rounds,

* **peer**: a bare loop that generates an EC P-256 leaf key and builds + signs a certificate
  comparable to a kyso ``staff`` certificate (same subject attributes and values, BC, KU, EKU,
  SKI, AKI, SAN, CRL DP, AIA, certificate policies) with the *same* CA key object and CA
  certificate, then takes the DER;
* **kyso**: ``issuance.issue(kyso, ca, "staff", ...)`` for staff holders with distinct, valid
  personal IDs: profile checks, subject resolution, EC P-256 key generation, signing, the
  SQLite write transaction and the fsynced JSON-lines audit event are all included — one
  transaction and one fsync per certificate (what ``kyso cert issue`` does);
* **kyso-group**: ``issuance.issue_many`` for the same work with group commit (64
  certificates per transaction and per audit fsync), the path ``kyso cert issue-batch`` uses.

The verdict compares the median per-round rates: kyso must reach at least 50 % of the peer,
on the bulk path (kyso-group) for every CA key and on the one-at-a-time path as well for the
default RSA-4096 CA. The one-at-a-time ratio is always printed.

Section 2: batch key generation for RSA-2048, ``kyso.pki.batch.generate_keys`` with
``jobs=1`` against ``jobs=2``: wall time, speed-up, and CPU time of this process plus its
(reaped) worker processes divided by wall time, i.e. how many cores were busy on average.

Run: ``python3 bench/issue_rate.py`` (``--help`` for options; docs/benchmarks.md explains the
figures). Exit status 1 when kyso misses the target for a CA key measured. Timing only;
nothing here is a test and nothing is kept: every home is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cryptography
import sqlalchemy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki import batch, issuance
from kyso.pki.authority import CertificateAuthority, init_ca
from kyso.pki.keys import KeyType
from kyso.pki.subjects import SubjectRequest

TARGET_RATIO = 0.50
PASSPHRASE = secrets.token_urlsafe(18)  # throw-away CA, deleted with its home
ORG = "UBND tỉnh Thái Nguyên"
PROVINCE_SLUG = "thai-nguyen"
PROVINCE_NAME = "Thái Nguyên"
EMAIL_DOMAIN = "thainguyen.gov.vn"
BASE_URL = "http://pki.thainguyen.gov.vn"
POLICY_OID = "1.3.6.1.4.1.32473.704.1.2.1"  # the staff profile's policy
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
STAFF_DAYS = 1095
WARMUP = 5

SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi")
GIVEN = ("Văn An", "Thị Bình", "Đức Cường", "Thu Hà", "Minh Khoa", "Ngọc Lan")


# --------------------------------------------------------------------------- holders


@dataclass(frozen=True)
class Holder:
    name: str
    id: str
    title: str
    unit: str
    email: str

    def request(self) -> SubjectRequest:
        return SubjectRequest.of(name=self.name, id=self.id, title=self.title, unit=self.unit,
                                 email=self.email)


def holders() -> Iterator[Holder]:
    """Distinct staff with valid personal IDs: Thái Nguyên (019), born 1960–1999."""
    i = 0
    while True:
        surname = SURNAMES[i % len(SURNAMES)]
        given = GIVEN[(i // len(SURNAMES)) % len(GIVEN)]
        sex_century = "01"[i % 2]  # born in the 1900s: 0 = male, 1 = female
        year = 60 + i % 40
        number = f"019{sex_century}{year:02d}{i:06d}"
        yield Holder(
            name=f"{surname} {given}",
            id=number,
            title="Chuyên viên",
            unit="Văn phòng UBND xã Phú Đình",
            email=f"cb{i:06d}@{EMAIL_DOMAIN}",
        )
        i += 1


# --------------------------------------------------------------------------- meters


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (Linux /proc/stat), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # all but idle and iowait (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time, our CPU time, and the CPU time other processes took meanwhile."""

    def __enter__(self) -> Meter:
        self._machine0 = _machine_busy_seconds()
        self._cpu0 = _cpu_seconds()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        own, kids = _cpu_seconds()
        self.parent_cpu = own - self._cpu0[0]
        self.workers_cpu = kids - self._cpu0[1]
        machine1 = _machine_busy_seconds()
        self.other_cores: float | None = None
        if self._machine0 is not None and machine1 is not None:
            other = (machine1 - self._machine0) - (self.parent_cpu + self.workers_cpu)
            self.other_cores = max(0.0, other) / self.wall



# --------------------------------------------------------------------------- the peer


def _hash_for(key: Any) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def make_peer(ca_cert: x509.Certificate, ca_key: Any, now: dt.datetime) -> Callable[[Holder], bytes]:
    """A bare issuance step with the given CA: key, subject, extensions, sign, DER."""
    issuer_name = ca_cert.subject
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    algorithm = _hash_for(ca_key)
    not_before = now.replace(microsecond=0)
    ca_end = ca_cert.not_valid_after_utc
    not_after = min(not_before + dt.timedelta(days=STAFF_DAYS), ca_end)
    crl = f"{BASE_URL}/crl/staff.crl"
    ocsp = f"{BASE_URL}/ocsp/staff"
    crt = f"{BASE_URL}/crt/staff.crt"

    def issue_one(h: Holder) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
        surname, given = h.name.split(" ", 1)
        subject = x509.Name([x509.RelativeDistinguishedName([a]) for a in (
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, PROVINCE_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, h.unit),
            x509.NameAttribute(NameOID.TITLE, h.title),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.GIVEN_NAME, given),
            x509.NameAttribute(NameOID.COMMON_NAME, h.name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IDCVN-{h.id}"),
            x509.NameAttribute(NameOID.USER_ID, f"CCCD:{h.id}"),
        )])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(h.email)]),
                           critical=False)
            .add_extension(x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(POLICY_OID), None)]), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl)], None, None, None)]), critical=False)
            .add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(ocsp)),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(crt)),
            ]), critical=False)
        )
        cert = builder.sign(ca_key, algorithm)
        return cert.public_bytes(serialization.Encoding.DER)

    return issue_one


# --------------------------------------------------------------------------- section 1


@dataclass
class RateResult:
    ca_key: str
    count: int
    rounds: int
    peer_rates: list[float]
    kyso_rates: list[float]
    group_rates: list[float]
    peer_median: float
    kyso_median: float
    group_median: float
    ratio_group_median: float
    single_required: bool
    peer_best: float
    kyso_best: float
    ratio_median: float
    ratio_best: float
    target: float
    passed: bool
    peer_der_bytes: int
    kyso_der_bytes: int
    setup_seconds: float
    other_processes_cores: float | None


def _timed_group(n: int, kyso: Kyso, ca: CertificateAuthority, people: Iterator[Holder]) -> float:
    requests = [next(people).request() for _ in range(n)]
    start = time.perf_counter()
    issued = issuance.issue_many(kyso, ca, "staff", requests)
    elapsed = time.perf_counter() - start
    assert len(issued) == n
    return n / elapsed


def _timed(n: int, step: Callable[[Holder], object], people: Iterator[Holder]) -> float:
    batch_of = [next(people) for _ in range(n)]
    start = time.perf_counter()
    for h in batch_of:
        step(h)
    return n / (time.perf_counter() - start)


def measure_rates(ca_key: KeyType, count: int, rounds: int, base: Path | None,
                  log: Callable[[str], None]) -> RateResult:
    per_round = max(1, count // rounds)
    with tempfile.TemporaryDirectory(prefix="kyso-bench-", dir=base) as tmp:
        t0 = time.perf_counter()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        kyso: Kyso = open_kyso(load_settings(home=Path(tmp) / "home", environ={}),
                               clock=FrozenClock(now), actor="admin:bench")
        try:
            init_ca(kyso, passphrase=PASSPHRASE, org=ORG, province=PROVINCE_SLUG,
                    key_type=ca_key, base_url=BASE_URL)
            ca = CertificateAuthority(kyso, PASSPHRASE)
            issuer = ca.issuer("staff")  # unlocked once; the peer signs with this very object
            setup = time.perf_counter() - t0
            log(f"  CA {ca_key.value} ready in {setup:.1f} s (home {tmp})")

            people = holders()
            peer = make_peer(issuer.certificate, issuer.key, now)

            def kyso_step(h: Holder) -> object:
                return issuance.issue(kyso, ca, "staff", h.request())

            # Warm-up (not timed): first-use costs of SQLAlchemy, OpenSSL, imports.
            peer_der = peer(next(people))
            issued = kyso_step(next(people))
            assert isinstance(issued, issuance.IssuedCertificate)
            kyso_der = issued.record.der
            for _ in range(WARMUP):
                peer(next(people))
                kyso_step(next(people))

            peer_rates: list[float] = []
            kyso_rates: list[float] = []
            group_rates: list[float] = []
            others: list[float | None] = []
            for r in range(rounds):
                # Alternate which side goes first, so slow drift hits both alike.
                order = (("peer", peer), ("kyso", kyso_step))
                if r % 2:
                    order = order[::-1]
                with Meter() as m:
                    for side, step in order:
                        rate = _timed(per_round, step, people)
                        (peer_rates if side == "peer" else kyso_rates).append(rate)
                    group_rates.append(_timed_group(per_round, kyso, ca, people))
                other = "" if m.other_cores is None else f"; other processes {m.other_cores:.2f} cores"
                others.append(m.other_cores)
                log(f"  round {r + 1}/{rounds}: peer {peer_rates[-1]:8.1f}/s   "
                    f"kyso {kyso_rates[-1]:8.1f}/s   kyso-group {group_rates[-1]:8.1f}/s   "
                    f"({per_round} certificates each{other})")
        finally:
            kyso.close()

    peer_med, kyso_med = statistics.median(peer_rates), statistics.median(kyso_rates)
    group_med = statistics.median(group_rates)
    ratio = kyso_med / peer_med
    ratio_group = group_med / peer_med
    single_required = ca_key is KeyType.RSA_4096
    return RateResult(
        ca_key=ca_key.value, count=per_round * rounds, rounds=rounds,
        peer_rates=[round(x, 2) for x in peer_rates], kyso_rates=[round(x, 2) for x in kyso_rates],
        group_rates=[round(x, 2) for x in group_rates],
        peer_median=round(peer_med, 2), kyso_median=round(kyso_med, 2),
        group_median=round(group_med, 2), ratio_group_median=round(ratio_group, 4),
        single_required=single_required,
        peer_best=round(max(peer_rates), 2), kyso_best=round(max(kyso_rates), 2),
        ratio_median=round(ratio, 4), ratio_best=round(max(kyso_rates) / max(peer_rates), 4),
        target=TARGET_RATIO,
        passed=ratio_group >= TARGET_RATIO and (ratio >= TARGET_RATIO or not single_required),
        peer_der_bytes=len(peer_der), kyso_der_bytes=len(kyso_der), setup_seconds=round(setup, 2),
        other_processes_cores=(None if None in others
                               else round(statistics.median(o or 0.0 for o in others), 2)),
    )


# --------------------------------------------------------------------------- section 2


@dataclass
class KeygenRun:
    jobs: int
    wall_seconds: float
    cpu_seconds: float
    parent_cpu_seconds: float
    workers_cpu_seconds: float
    cores_busy: float
    other_processes_cores: float | None


@dataclass
class KeygenResult:
    key_type: str
    keys: int
    repeats: int
    cpu_count: int
    runs: list[KeygenRun]
    jobs1_wall_median: float
    jobs2_wall_median: float
    speedup: float
    jobs2_cores_busy_median: float
    jobs2_parent_cpu_median: float
    jobs2_workers_cpu_median: float


def measure_keygen(n: int, repeats: int, log: Callable[[str], None]) -> KeygenResult:
    runs: list[KeygenRun] = []
    for r in range(repeats):
        for jobs in ((1, 2) if r % 2 == 0 else (2, 1)):
            with Meter() as m:  # workers are reaped when the pool shuts down: counted
                keys = batch.generate_keys(KeyType.RSA_2048, n, jobs=jobs)
            assert len(keys) == n
            cpu = m.parent_cpu + m.workers_cpu
            runs.append(KeygenRun(
                jobs, round(m.wall, 3), round(cpu, 3), round(m.parent_cpu, 3),
                round(m.workers_cpu, 3), round(cpu / m.wall, 2),
                None if m.other_cores is None else round(m.other_cores, 2)))
            other = "" if m.other_cores is None else f"; other processes {m.other_cores:4.2f} cores"
            log(f"  repeat {r + 1}/{repeats} jobs={jobs}: {m.wall:6.2f} s wall, CPU {cpu:6.2f} s "
                f"(parent {m.parent_cpu:5.2f} + workers {m.workers_cpu:5.2f}) "
                f"-> {cpu / m.wall:4.2f} cores busy{other}")
    w1 = statistics.median(x.wall_seconds for x in runs if x.jobs == 1)
    w2 = statistics.median(x.wall_seconds for x in runs if x.jobs == 2)
    busy2 = statistics.median(x.cores_busy for x in runs if x.jobs == 2)
    return KeygenResult(
        key_type=KeyType.RSA_2048.value, keys=n, repeats=repeats, cpu_count=os.cpu_count() or 1,
        runs=runs, jobs1_wall_median=w1, jobs2_wall_median=w2, speedup=round(w1 / w2, 2),
        jobs2_cores_busy_median=busy2,
        jobs2_parent_cpu_median=statistics.median(x.parent_cpu_seconds for x in runs if x.jobs == 2),
        jobs2_workers_cpu_median=statistics.median(
            x.workers_cpu_seconds for x in runs if x.jobs == 2),
    )


# --------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300,
                        help="certificates per side and CA key, split over the rounds (300)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating peer/kyso rounds; the verdict uses the medians (5)")
    parser.add_argument("--ca-key", choices=["rsa-4096", "ec-p384", "both", "none"], default="both",
                        help="key type of the CA hierarchy (both; none skips section 1)")
    parser.add_argument("--batch-keys", type=int, default=40,
                        help="RSA-2048 keys per generate_keys call in section 2 (40; 0 skips it)")
    parser.add_argument("--batch-repeats", type=int, default=3,
                        help="repeats of each jobs setting in section 2 (3)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to create the temporary homes (system temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1 or args.count < args.rounds:
        parser.error("--count and --rounds must be positive, count >= rounds")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    info = machine()
    log(f"machine: {info['nproc']} CPU(s), {info['cpu_model']}; Python {info['python']}, "
        f"cryptography {info['cryptography']} ({info['openssl']}), "
        f"SQLAlchemy {info['sqlalchemy']}, SQLite {info['sqlite']}")
    if args.ca_key == "both":
        ca_keys = [KeyType.RSA_4096, KeyType.EC_P384]
    elif args.ca_key == "none":
        ca_keys = []
    else:
        ca_keys = [KeyType(args.ca_key)]

    rates: list[RateResult] = []
    for kt in ca_keys:
        log(f"\n[1] issuance rate, EC P-256 leaves, CA key {kt.value}")
        res = measure_rates(kt, args.count, args.rounds, args.dir, log)
        rates.append(res)
        log(f"  peer (bare cryptography): median {res.peer_median:8.1f} certs/s, "
            f"best {res.peer_best:8.1f}")
        log(f"  kyso issuance.issue     : median {res.kyso_median:8.1f} certs/s, "
            f"best {res.kyso_best:8.1f}")
        log(f"  certificate DER size    : peer {res.peer_der_bytes} B, kyso {res.kyso_der_bytes} B")
        log(f"  kyso-group issue_many   : median {res.group_median:8.1f} certs/s")
        log(f"  kyso/peer one at a time = {res.ratio_median:.1%} (best/best {res.ratio_best:.1%})"
            f"{' (required for this CA key)' if res.single_required else ' (informative)'}")
        log(f"  kyso-group/peer         = {res.ratio_group_median:.1%}; target >= "
            f"{TARGET_RATIO:.0%}: {'PASS' if res.passed else 'FAIL'}")

    keygen: KeygenResult | None = None
    if args.batch_keys > 0:
        log(f"\n[2] batch key generation, {args.batch_keys} x RSA-2048, jobs=1 vs jobs=2")
        keygen = measure_keygen(args.batch_keys, args.batch_repeats, log)
        log(f"  median wall: jobs=1 {keygen.jobs1_wall_median:.2f} s, jobs=2 "
            f"{keygen.jobs2_wall_median:.2f} s -> speed-up x{keygen.speedup:.2f}; "
            f"jobs=2 keeps {keygen.jobs2_cores_busy_median:.2f} of {keygen.cpu_count} cores busy")
        log(f"  jobs=2 CPU: workers {keygen.jobs2_workers_cpu_median:.2f} s, parent "
            f"{keygen.jobs2_parent_cpu_median:.2f} s (the parent's part runs on one core)")

    passed = all(r.passed for r in rates)
    if rates:
        log(f"\noverall: {'PASS' if passed else 'FAIL'} (kyso >= {TARGET_RATIO:.0%} of the peer "
            f"for every CA key measured)")
    if args.json:
        print(json.dumps({
            "machine": info,
            "issuance": [asdict(r) for r in rates],
            "batch_keygen": asdict(keygen) if keygen else None,
            "passed": passed,
        }, indent=2, ensure_ascii=False))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
