"""What the automatic checks look at, gathered once from a deployment.

This is the only module of ``kyso.policies`` that touches files, the store or the network: it
reads the settings, the CA and service certificates, ``<home>/audit/verified.json``, the
newest signed checkpoint that verifies, the backup folder, the key files, the evidence folder,
and asks the NTP server for the clock offset
(SNTP, RFC 4330). Everything it finds becomes a frozen :class:`Facts`; the checks in
:mod:`kyso.policies.checks` are pure functions of it.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from kyso.audit.retention import LEVEL_MIN_DAYS
from kyso.audit.segments import Layout, read_state
from kyso.audit.signer import latest_verified_checkpoint
from kyso.clock import Clock, SystemClock
from kyso.config import AuditSettings, AuthnSettings, BackupSettings, SecuritySettings, Settings
from kyso.context import Kyso
from kyso.errors import AuditError, CANotInitialisedError, KysoError
from kyso.pki.authority import AuthorityInfo, list_authorities, list_services

VERIFIED_FILE = "verified.json"  # written by `kyso audit verify`
SNTP_TIMEOUT_SECONDS = 2.0
# Minimum password lengths of the e-ID service's policies: (every login has a second factor,
# password alone). NIST SP 800-63B rev. 4: 8 with MFA, 15 single-factor; VNeID: 8 characters.
PASSWORD_MIN_LENGTHS = {"nist-aal2": (8, 15), "vneid-compat": (8, 8)}
_FUTURE_SLACK = dt.timedelta(minutes=5)

ClockProbe = Callable[[str, float], float]
"""``probe(server, timeout_seconds)`` → offset of this machine's clock in milliseconds
(positive: the server is ahead). Raises ``OSError`` or ``ValueError`` when it cannot tell."""


@dataclass(frozen=True)
class KeyFact:
    """A CA or service key and the certificate that carries it."""

    name: str
    role: str  # "ca" or "service"
    algorithm: str  # "rsa", "ec", "ed25519", or what else was found
    bits: int  # RSA modulus, EC curve size, 256 for Ed25519
    signature_hash: str | None  # hash of the certificate's signature; None for Ed25519
    not_after: dt.datetime
    key_file: str
    key_file_state: str  # "ok", "missing", "readable by others", "not encrypted"

    @property
    def label(self) -> str:
        """As :class:`kyso.pki.keys.KeyType` writes it: rsa-4096, ec-p384, ed25519."""
        if self.algorithm.startswith("ed"):
            return self.algorithm
        return f"ec-p{self.bits}" if self.algorithm == "ec" else f"{self.algorithm}-{self.bits}"


@dataclass(frozen=True)
class Verification:
    """The last ``kyso audit verify`` as recorded in ``audit/verified.json``."""

    recorded: bool
    time: dt.datetime | None = None
    ok: bool = False
    size: int = 0
    problem: str = ""  # why the record cannot be used


@dataclass(frozen=True)
class BackupFact:
    dir: str
    exists: bool
    files: int = 0
    newest: str | None = None
    newest_time: dt.datetime | None = None
    inside_home: bool = False
    same_device: bool | None = None  # None: cannot tell


@dataclass(frozen=True)
class CheckpointFact:
    """The newest *verified* signed checkpoint (``audit/checkpoints/<size>.note``: signed by
    a trusted audit signer whose certificate was valid when it signed,
    :func:`kyso.audit.signer.latest_verified_checkpoint`) and how far the log has grown
    (``audit/head.json``: the writer's claim)."""

    time: dt.datetime | None = None  # its signed time (the Timestamp line); None: none usable
    size: int = 0  # the tree size it covers
    log_size: int | None = None  # None: no head recorded yet (or unreadable)
    problem: str = ""  # why no (newer) checkpoint could be used
    refused: int = 0  # newer checkpoint files that did not verify


@dataclass(frozen=True)
class ClockFact:
    server: str
    offset_ms: float | None = None
    problem: str = ""


@dataclass(frozen=True)
class Evidence:
    """The evidence folder given with ``--evidence``: regular files and their sizes."""

    dir: str
    files: tuple[tuple[str, int], ...] = ()

    def find(self, name: str) -> tuple[str, int] | None:
        """The file ``name`` itself, else the first ``name.<extension>``."""
        exact = [f for f in self.files if f[0] == name]
        if exact:
            return exact[0]
        candidates = sorted(f for f in self.files if f[0].startswith(name + "."))
        non_empty = [f for f in candidates if f[1] > 0]
        chosen = non_empty or candidates
        return chosen[0] if chosen else None


@dataclass(frozen=True)
class Facts:
    now: dt.datetime
    home: str
    security: SecuritySettings
    audit: AuditSettings
    authn: AuthnSettings
    backup: BackupSettings
    ca_present: bool
    keys: tuple[KeyFact, ...]
    audit_files: int
    audit_retention_days: int  # what `kyso audit purge` keeps: the setting, floored by the level
    verification: Verification
    backups: BackupFact
    clock: ClockFact
    pseudonym_key: str  # "ok", "missing", "readable by others", "too short"
    password_min_length: tuple[int, int] = (8, 15)
    ca_problem: str = field(default="")
    checkpoint: CheckpointFact = field(default_factory=CheckpointFact)


# --- gathering -------------------------------------------------------------------------------

def facts_of(kyso: Kyso, *, probe: ClockProbe | None = None) -> Facts:
    return gather_facts(kyso.settings, kyso.clock, kyso, probe=probe)


def gather_facts(settings: Settings, clock: Clock | None = None, kyso: Kyso | None = None, *,
                 probe: ClockProbe | None = None) -> Facts:
    """Facts of the deployment of ``settings``; ``kyso`` is None for a home without a CA
    database, whose certificate items then need evidence."""
    now = (clock or SystemClock()).now()
    keys: tuple[KeyFact, ...] = ()
    problem = f"no CA in {settings.home}"
    if kyso is not None:
        try:
            keys = _keys(kyso)
            problem = "" if keys else f"no CA certificates in {settings.home}"
        except CANotInitialisedError:
            pass
    return Facts(
        now=now,
        home=str(settings.home),
        security=settings.security,
        audit=settings.audit,
        authn=settings.authn,
        backup=settings.backup,
        ca_present=not problem,
        ca_problem=problem,
        keys=keys,
        audit_files=_audit_files(settings.audit_dir),
        audit_retention_days=effective_retention_days(settings),
        verification=read_verification(settings.audit_dir / VERIFIED_FILE, now),
        backups=_backups(settings),
        clock=_clock(settings.security.ntp_server, probe or sntp_offset_ms),
        pseudonym_key=_pseudonym_key(settings.pseudonym_key_path),
        password_min_length=PASSWORD_MIN_LENGTHS.get(settings.authn.password_policy, (8, 8)),
        checkpoint=_checkpoint(Layout(settings.audit_dir), kyso),
    )


def _checkpoint(layout: Layout, kyso: Kyso | None) -> CheckpointFact:
    """The newest checkpoint that verifies, dated by its signed Timestamp line (never by the
    file's modification time, which anyone can set)."""
    try:
        head = read_state(layout.head, "audit head")
        log_size = head.size if head is not None else None
    except AuditError:
        log_size = None
    if kyso is None:
        held = layout.checkpoints.is_dir() and any(layout.checkpoints.glob("*.note"))
        return CheckpointFact(log_size=log_size, problem=(
            "no CA database in this home, so no audit signer to verify the checkpoints with"
            if held else ""))
    try:
        latest = latest_verified_checkpoint(kyso)
    except KysoError as exc:  # a damaged store or profile: name it, never pass
        return CheckpointFact(log_size=log_size, problem=str(exc))
    refused = "; ".join(f"{name}: {reason}" for name, reason in latest.refused[:2])
    if latest.checkpoint is None:
        return CheckpointFact(log_size=log_size, problem=refused, refused=len(latest.refused))
    if latest.signed_at is None:
        return CheckpointFact(size=latest.checkpoint.size, log_size=log_size,
                              refused=len(latest.refused),
                              problem=f"{Path(latest.path or '').name} carries no signing time "
                                      "(signed before kyso dated checkpoints)")
    return CheckpointFact(time=latest.signed_at, size=latest.checkpoint.size, log_size=log_size,
                          problem=refused, refused=len(latest.refused))


def _keys(kyso: Kyso) -> tuple[KeyFact, ...]:
    out = [_key_fact(a, "ca") for a in list_authorities(kyso)]
    out += [_key_fact(s, "service") for s in list_services(kyso)]
    return tuple(out)


def _key_fact(info: AuthorityInfo, role: str) -> KeyFact:
    cert = info.certificate
    algorithm, bits = _public_key(cert)
    try:
        digest = cert.signature_hash_algorithm
        signature_hash = None if digest is None else digest.name
    except UnsupportedAlgorithm:
        signature_hash = f"unsupported ({cert.signature_algorithm_oid.dotted_string})"
    return KeyFact(name=info.name, role=role, algorithm=algorithm, bits=bits,
                   signature_hash=signature_hash, not_after=cert.not_valid_after_utc,
                   key_file=str(info.key_file), key_file_state=_key_file_state(info.key_file))


def _public_key(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return "unsupported", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 448
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return type(key).__name__, 0


def _key_file_state(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return "missing"
    if mode & 0o077:
        return "readable by others"
    if not head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"):
        return "not encrypted"
    return "ok"


def effective_retention_days(settings: Settings) -> int:
    """The rule of :func:`kyso.audit.retention.retention_days`: ``[audit] retention_days``, or
    the configured level's minimum when it is 0 or lower."""
    minimum = LEVEL_MIN_DAYS.get(settings.security.level, max(LEVEL_MIN_DAYS.values()))
    return max(settings.audit.retention_days or minimum, minimum)


def _audit_files(folder: Path) -> int:
    try:
        return sum(1 for p in folder.rglob("*")
                   if p.name != VERIFIED_FILE and p.is_file() and p.stat().st_size > 0)
    except OSError:
        return 0


def read_verification(path: Path, now: dt.datetime) -> Verification:
    """``{"time": ISO 8601 with offset, "ok": bool, "size": int}``; anything else is named."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Verification(recorded=False, problem="never verified")
    except OSError as exc:
        return Verification(recorded=False, problem=f"cannot read {path.name}: {exc.strerror}")
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        when = dt.datetime.fromisoformat(data["time"]) if isinstance(data.get("time"), str) \
            else None
        ok, size = data.get("ok"), data.get("size")
        if when is None or when.tzinfo is None:
            raise ValueError("time must be ISO 8601 with an offset")
        if not isinstance(ok, bool) or not isinstance(size, int) or isinstance(size, bool) \
                or size < 0:
            raise ValueError("ok must be true/false and size a whole number")
    except (ValueError, UnicodeDecodeError) as exc:
        return Verification(recorded=False, problem=f"{path.name} is unreadable ({exc})")
    when = when.astimezone(dt.UTC)
    if when > now + _FUTURE_SLACK:
        return Verification(recorded=False, problem=f"{path.name} is dated in the future")
    return Verification(recorded=True, time=when, ok=ok, size=size)


def _backups(settings: Settings) -> BackupFact:
    folder = settings.backup_dir
    if not folder.is_dir():
        return BackupFact(dir=str(folder), exists=False)
    home = settings.home.resolve()
    resolved = folder.resolve()
    inside = resolved == home or home in resolved.parents
    try:
        same_device: bool | None = folder.stat().st_dev == settings.home.stat().st_dev
    except OSError:
        same_device = None
    newest: tuple[float, Path] | None = None
    count = 0
    try:
        for p in folder.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                if st.st_size == 0:
                    continue
                count += 1
                if newest is None or st.st_mtime > newest[0]:
                    newest = (st.st_mtime, p)
    except OSError:
        pass
    return BackupFact(
        dir=str(folder), exists=True, files=count,
        newest=str(newest[1].relative_to(folder)) if newest else None,
        newest_time=dt.datetime.fromtimestamp(newest[0], dt.UTC) if newest else None,
        inside_home=inside, same_device=same_device)


def _pseudonym_key(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if st.st_mode & 0o077:
        return "readable by others"
    if st.st_size < 32:
        return "too short"
    return "ok"


def scan_evidence(folder: Path) -> Evidence:
    files = []
    try:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                files.append((p.name, p.stat().st_size))
    except OSError:
        pass
    return Evidence(dir=str(folder), files=tuple(files))


def _clock(server: str, probe: ClockProbe) -> ClockFact:
    if not server:
        return ClockFact(server="", problem="no NTP server configured ([security] ntp_server)")
    try:
        return ClockFact(server=server, offset_ms=probe(server, SNTP_TIMEOUT_SECONDS))
    except (OSError, ValueError) as exc:
        return ClockFact(server=server, problem=f"NTP server {server} did not answer usably "
                                                f"({exc or type(exc).__name__})")


# --- SNTP (RFC 4330) -------------------------------------------------------------------------

_NTP_EPOCH = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def _to_ntp(t: float) -> bytes:
    seconds = int(t)
    return struct.pack("!II", (seconds + _NTP_EPOCH) & 0xFFFFFFFF, int((t - seconds) * 2**32))


def _from_ntp(b: bytes) -> float:
    seconds, fraction = struct.unpack("!II", b)
    return float(seconds - _NTP_EPOCH + fraction / 2**32)


def split_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    host, port = server.strip(), "123"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{server!r} is not host[:port]")
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{server!r} is not host[:port]")
    return host, int(port)


def sntp_offset_ms(server: str, timeout: float = SNTP_TIMEOUT_SECONDS, *,
                   wall: Callable[[], float] = time.time) -> float:
    """One SNTP v4 client exchange (RFC 4330 §5): offset = ((T2 - T1) + (T3 - T4)) / 2.

    It measures this machine's clock (``wall``), not kyso's injected clock. Replies that are
    not a server's answer to this request, unsynchronised or kiss-o'-death are refused."""
    host, port = split_server(server)
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    request = bytearray(48)
    request[0] = (0 << 6) | (4 << 3) | 3  # LI 0, version 4, mode 3 (client)
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout)
        sock.connect(address)  # only the server's datagrams are received
        t1 = wall()
        request[40:48] = _to_ntp(t1)
        sock.send(bytes(request))
        reply = sock.recv(1024)
        t4 = wall()
    if len(reply) < 48:
        raise ValueError("short SNTP reply")
    leap, mode, stratum = reply[0] >> 6, reply[0] & 0x7, reply[1]
    if mode != 4:
        raise ValueError(f"reply mode {mode}, not a server reply")
    if leap == 3 or stratum == 0 or stratum > 15:
        raise ValueError("server not synchronised (kiss-o'-death or alarm)")
    if reply[24:32] != bytes(request[40:48]):
        raise ValueError("reply does not answer this request")
    if reply[40:48] == bytes(8):
        raise ValueError("reply without a transmit time")
    t2, t3 = _from_ntp(reply[32:40]), _from_ntp(reply[40:48])
    return ((t2 - t1) + (t3 - t4)) / 2 * 1000.0
