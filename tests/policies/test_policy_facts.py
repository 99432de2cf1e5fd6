"""Gathering facts from a deployment: the CA, the verification record, backups, the clock."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from policy_support import Reply, server_reply, sntp_server

from conftest import FAST_KDF, PASSPHRASE, T0
from kyso.audit.checkpoint import Checkpoint, sign_checkpoint, timestamp_line
from kyso.audit.signer import create_checkpoint, log_origin, signer_certificates
from kyso.audit.verify import verify_log
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority, list_services
from kyso.pki.keys import load_private_key
from kyso.policies.check import evaluate
from kyso.policies.facts import (
    Evidence,
    effective_retention_days,
    facts_of,
    gather_facts,
    read_verification,
    scan_evidence,
    sntp_offset_ms,
    split_server,
)
from kyso.policies.models import Status


def no_ntp(_server: str, _timeout: float) -> float:
    raise AssertionError("no NTP server is configured, so none may be asked")


def test_facts_of_a_home_with_a_ca(kyso: Kyso, ca: CertificateAuthority) -> None:
    facts = facts_of(kyso, probe=no_ntp)
    assert facts.now == T0
    assert facts.ca_present
    by_name = {k.name: k for k in facts.keys}
    assert set(by_name) == {"root", "staff", "citizen", "services", "ocsp-staff", "ocsp-citizen",
                            "ocsp-services", "tsa", "audit-signer"}
    assert by_name["root"].label == "ec-p384"
    assert by_name["root"].role == "ca"
    assert by_name["audit-signer"].label == "ed25519"
    assert by_name["tsa"].role == "service"
    assert {k.signature_hash for k in facts.keys} == {"sha384"}
    assert all(k.key_file_state == "ok" for k in facts.keys)
    assert facts.pseudonym_key == "ok"
    assert facts.clock.offset_ms is None
    assert "no NTP server configured" in facts.clock.problem


def test_a_key_file_readable_by_others_is_noticed(kyso: Kyso, ca: CertificateAuthority) -> None:
    key_file = kyso.settings.ca_dir / "tsa.key.pem"
    assert key_file.exists()
    key_file.chmod(0o644)
    states = {k.name: k.key_file_state for k in facts_of(kyso).keys}
    assert states["tsa"] == "readable by others"
    key_file.unlink()
    assert {k.name: k.key_file_state for k in facts_of(kyso).keys}["tsa"] == "missing"


def test_a_home_without_a_ca_has_no_keys(kyso: Kyso) -> None:
    facts = facts_of(kyso)
    assert not facts.ca_present
    assert facts.keys == ()
    assert "no CA in" in facts.ca_problem


def test_a_missing_home_is_described_without_creating_anything(tmp_path: Path) -> None:
    home = tmp_path / "nothing-here"
    facts = gather_facts(load_settings(home=home, environ=FAST_KDF), FrozenClock(T0))
    assert not facts.ca_present
    assert facts.audit_files == 0
    assert not facts.verification.recorded
    assert not facts.backups.exists
    assert facts.pseudonym_key == "missing"
    assert not home.exists()


# --- the newest verified checkpoint -------------------------------------------------------------

def _checkpoints(kyso: Kyso) -> Path:
    return kyso.settings.audit_dir / "checkpoints"


def test_the_checkpoint_fact_is_the_signed_time_not_the_file_time(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    result = create_checkpoint(kyso, PASSPHRASE)
    os.utime(result.path, (0, 0))  # anyone can touch a file; nobody can move its Timestamp
    kyso.clock.advance(dt.timedelta(minutes=10))  # type: ignore[attr-defined]
    fact = facts_of(kyso, probe=no_ntp).checkpoint
    assert (fact.time, fact.size, fact.refused, fact.problem) == (T0, result.checkpoint.size, 0, "")


def test_a_newer_checkpoint_that_does_not_verify_is_skipped_and_named(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    create_checkpoint(kyso, PASSPHRASE)
    kyso.clock.advance(dt.timedelta(minutes=30))  # type: ignore[attr-defined]
    newer = create_checkpoint(kyso, PASSPHRASE)
    data = Path(newer.path).read_bytes()
    Path(newer.path).write_bytes(data.replace(b"Timestamp: 17", b"Timestamp: 18"))  # re-dated
    fact = facts_of(kyso, probe=no_ntp).checkpoint
    assert fact.time == T0
    assert fact.refused == 1
    assert fact.problem.startswith(f"{Path(newer.path).name}: forged checkpoint")


def test_a_checkpoint_signed_after_the_signer_expired_is_not_fresh(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    (cert,) = signer_certificates(kyso)
    kyso.clock.set(cert.not_valid_after_utc + dt.timedelta(days=1))  # type: ignore[attr-defined]
    info = {s.name: s for s in list_services(kyso)}["audit-signer"]
    key = load_private_key(info.key_file, PASSPHRASE)
    assert isinstance(key, Ed25519PrivateKey)
    report = verify_log(kyso.settings.audit_dir)
    assert report.root is not None
    note = sign_checkpoint(Checkpoint(log_origin(kyso), report.size, report.root,
                                      (timestamp_line(kyso.now()),)), log_origin(kyso), key)
    _checkpoints(kyso).mkdir(mode=0o700)
    (_checkpoints(kyso) / f"{report.size:012d}.note").write_bytes(note)
    fact = facts_of(kyso, probe=no_ntp).checkpoint
    assert fact.time is None
    assert "expired on" in fact.problem


def test_checkpoints_in_a_home_without_a_ca_cannot_be_verified(kyso: Kyso) -> None:
    assert facts_of(kyso, probe=no_ntp).checkpoint.problem == ""
    _checkpoints(kyso).mkdir(parents=True)
    (_checkpoints(kyso) / "000000000003.note").write_bytes(b"a checkpoint\n")
    fact = facts_of(kyso, probe=no_ntp).checkpoint
    assert fact.time is None
    assert "no CA in this home" in fact.problem
    bare = gather_facts(kyso.settings, kyso.clock, None, probe=no_ntp).checkpoint
    assert "no CA database in this home" in bare.problem


def test_the_policy_item_follows_the_age_of_the_newest_checkpoint(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    create_checkpoint(kyso, PASSPHRASE)

    def status() -> Status:
        item = evaluate(3, "current", facts_of(kyso, probe=no_ntp))
        return next(i for i in item.items if i.requirement.id == "CUR-L3-LOG-05").status

    assert status() is Status.PASS
    kyso.clock.advance(dt.timedelta(hours=1, seconds=1))  # type: ignore[attr-defined]
    assert status() is Status.FAIL
    create_checkpoint(kyso, PASSPHRASE)  # what the hourly schedule does, idle log or not
    assert status() is Status.PASS


# --- verified.json -----------------------------------------------------------------------------

def write_record(folder: Path, content: object) -> Path:
    path = folder / "verified.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_good_verification_record_is_read(tmp_path: Path) -> None:
    path = write_record(tmp_path, {"time": "2026-11-23T08:00:00+07:00", "ok": True, "size": 42})
    v = read_verification(path, T0)
    assert v.recorded
    assert v.ok
    assert v.size == 42
    assert v.time == dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)


def test_an_absent_record_means_never_verified(tmp_path: Path) -> None:
    v = read_verification(tmp_path / "verified.json", T0)
    assert not v.recorded
    assert v.problem == "never verified"


@pytest.mark.parametrize("content", [
    "not json", "[1, 2]", {"ok": True, "size": 1},
    {"time": "2026-11-23T08:00:00", "ok": True, "size": 1},  # no offset
    {"time": "yesterday", "ok": True, "size": 1},
    {"time": "2026-11-23T08:00:00+07:00", "ok": "yes", "size": 1},
    {"time": "2026-11-23T08:00:00+07:00", "ok": True, "size": True},
    {"time": "2026-11-23T08:00:00+07:00", "ok": True, "size": -1},
    {"time": 1700000000, "ok": True, "size": 1},
])
def test_garbage_records_are_not_a_verification(tmp_path: Path, content: object) -> None:
    v = read_verification(write_record(tmp_path, content), T0)
    assert not v.recorded
    assert "unreadable" in v.problem


def test_binary_garbage_is_not_a_verification(tmp_path: Path) -> None:
    path = tmp_path / "verified.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "unreadable" in read_verification(path, T0).problem


def test_a_record_dated_in_the_future_is_not_trusted(tmp_path: Path) -> None:
    path = write_record(tmp_path, {"time": "2027-01-01T00:00:00+00:00", "ok": True, "size": 1})
    v = read_verification(path, T0)
    assert not v.recorded
    assert "future" in v.problem


# --- backups -----------------------------------------------------------------------------------

def touch(path: Path, when: dt.datetime, content: bytes = b"backup") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_the_newest_non_empty_backup_is_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    backups = tmp_path / "backups"
    touch(backups / "2026-11-20.tar.age", T0 - dt.timedelta(days=3))
    touch(backups / "daily" / "2026-11-22.tar.age", T0 - dt.timedelta(days=1))
    touch(backups / "empty.tar.age", T0, b"")
    touch(backups / ".partial", T0)
    home.mkdir()
    (home / "config.toml").write_text(f'[backup]\ndir = "{backups}"\n')
    facts = gather_facts(load_settings(home=home, environ=FAST_KDF), FrozenClock(T0))
    assert facts.backups.exists
    assert facts.backups.files == 2
    assert facts.backups.newest == "daily/2026-11-22.tar.age"
    assert facts.backups.newest_time == T0 - dt.timedelta(days=1)
    assert not facts.backups.inside_home
    assert facts.backups.same_device is True  # both under tmp_path


def test_the_default_backup_folder_is_inside_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    touch(home / "backup" / "x.tar.age", T0)
    facts = gather_facts(load_settings(home=home, environ=FAST_KDF), FrozenClock(T0))
    assert facts.backups.inside_home


# --- evidence ----------------------------------------------------------------------------------

def test_evidence_is_found_by_name_or_name_with_extension(tmp_path: Path) -> None:
    (tmp_path / "log-review.pdf").write_bytes(b"%PDF")
    (tmp_path / "log-review-2025.pdf").write_bytes(b"%PDF")
    (tmp_path / "ntp-sync").write_text("chronyc tracking ...")
    (tmp_path / "network-diagram.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    evidence = scan_evidence(tmp_path)
    assert evidence.find("log-review") == ("log-review.pdf", 4)
    assert evidence.find("ntp-sync") == ("ntp-sync", 20)
    assert evidence.find("network-diagram") == ("network-diagram.png", 0)
    assert evidence.find("sub") is None
    assert evidence.find("log") is None


def test_a_non_empty_evidence_file_wins_over_an_empty_one() -> None:
    evidence = Evidence("/e", (("restore-test.docx", 0), ("restore-test.pdf", 10)))
    assert evidence.find("restore-test") == ("restore-test.pdf", 10)


# --- the clock (SNTP, RFC 4330) ------------------------------------------------------------------

def test_sntp_measures_the_offset_of_a_server() -> None:
    with sntp_server(server_reply(ahead_seconds=2.5)) as address:
        offset = sntp_offset_ms(address, timeout=2.0)
    assert 2400 < offset < 2600


def test_sntp_refuses_a_reply_to_another_request() -> None:
    with sntp_server(server_reply(echo=False)) as address, \
            pytest.raises(ValueError, match="does not answer this request"):
        sntp_offset_ms(address, timeout=2.0)


@pytest.mark.parametrize(("reply", "message"), [
    (server_reply(stratum=0), "not synchronised"),
    (server_reply(mode=3), "not a server reply"),
    (lambda _request: b"short", "short SNTP reply"),
])
def test_sntp_refuses_unusable_replies(reply: Reply, message: str) -> None:
    with sntp_server(reply) as address, pytest.raises(ValueError, match=message):
        sntp_offset_ms(address, timeout=2.0)


def test_a_silent_ntp_server_times_out_and_needs_evidence(tmp_path: Path) -> None:
    with sntp_server(lambda _request: None) as address:
        with pytest.raises(TimeoutError):
            sntp_offset_ms(address, timeout=0.2)
        home = tmp_path / "home"
        home.mkdir()
        (home / "config.toml").write_text(f'[security]\nntp_server = "{address}"\n')
        facts = gather_facts(load_settings(home=home, environ=FAST_KDF), FrozenClock(T0),
                             probe=lambda server, _t: sntp_offset_ms(server, 0.2))
    assert facts.clock.offset_ms is None
    assert f"NTP server {address} did not answer usably" in facts.clock.problem


def test_gathering_uses_the_injected_probe(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[security]\nntp_server = "ntp.example.vn"\n')
    asked: list[str] = []

    def probe(server: str, timeout: float) -> float:
        asked.append(server)
        assert timeout == 2.0
        return -42.0

    facts = gather_facts(load_settings(home=home, environ=FAST_KDF), FrozenClock(T0), probe=probe)
    assert asked == ["ntp.example.vn"]
    assert facts.clock.offset_ms == -42.0


@pytest.mark.parametrize(("server", "parsed"), [
    ("pool.ntp.org", ("pool.ntp.org", 123)),
    ("time.gov.vn:1123", ("time.gov.vn", 1123)),
    ("[2001:db8::1]:123", ("2001:db8::1", 123)),
    ("[2001:db8::1]", ("2001:db8::1", 123)),
    ("2001:db8::1", ("2001:db8::1", 123)),
])
def test_ntp_server_forms(server: str, parsed: tuple[str, int]) -> None:
    assert split_server(server) == parsed


@pytest.mark.parametrize("server", ["host:port", "host:0", "host:70000", ":123", "[::1]x"])
def test_bad_ntp_server_forms_are_refused(server: str) -> None:
    with pytest.raises(ValueError, match="not host"):
        split_server(server)


@pytest.mark.parametrize(("level", "configured", "kept"), [
    (3, 0, 92), (3, 30, 92), (3, 120, 120), (4, 0, 183), (5, 0, 366), (2, 0, 90),
])
def test_retention_is_what_audit_purge_keeps(tmp_path: Path, level: int, configured: int,
                                             kept: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"[security]\nlevel = {level}\n"
                                      f"[audit]\nretention_days = {configured}\n")
    settings = load_settings(home=home, environ=FAST_KDF)
    assert effective_retention_days(settings) == kept
    assert gather_facts(settings, FrozenClock(T0)).audit_retention_days == kept
