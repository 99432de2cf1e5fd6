"""Retention (kyso.audit.retention): old sealed segments are purged only past the security
level's minimum, only under a signed checkpoint, and the purge keeps the log verifiable,
appendable and provable — base.json stands in for what was removed, and a forged one is caught."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import FAST_KDF, PASSPHRASE, audit_events
from kyso.audit import Layer, Outcome
from kyso.audit.proofs import inclusion_bundle, verify_bundle
from kyso.audit.retention import LEVEL_MIN_DAYS, plan_purge, purge, retention_days
from kyso.audit.segments import Layout, list_segments
from kyso.audit.signer import create_checkpoint, signer_certificates, verify_with_store
from kyso.audit.verify import Kind, Status, VerifyReport
from kyso.config import load_settings
from kyso.context import Kyso
from kyso.errors import AuditError
from kyso.pki.authority import CertificateAuthority


def configure(kyso: Kyso, text: str) -> None:
    """Write the home's config.toml and reload the settings the way start-up does."""
    (kyso.settings.home / "config.toml").write_text(text, encoding="utf-8")
    kyso.settings = load_settings(home=kyso.settings.home, environ=FAST_KDF)


def daily_events(kyso: Kyso, days: int, per_day: int = 2) -> None:
    """Events on each of ``days`` days, so daily rotation makes one segment a day."""
    for day in range(days):
        kyso.clock.advance(dt.timedelta(days=1))  # type: ignore[attr-defined]
        for i in range(per_day):
            kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object=f"d{day}-{i}")


def segment_names(kyso: Kyso) -> list[str]:
    return [s.name for s in list_segments(Layout(kyso.settings.audit_dir))[0]]


def statuses(report: VerifyReport) -> dict[str, str]:
    return {c.name: c.status.value for c in report.checks}


def base_path(kyso: Kyso) -> Path:
    return kyso.settings.audit_dir / "base.json"


# --- the retention period -------------------------------------------------------------------

@pytest.mark.parametrize(("config", "days"), [
    ("", 92),  # the default level is 3: three months
    ("[security]\nlevel = 1\n", 90),
    ("[security]\nlevel = 2\n", 90),
    ("[security]\nlevel = 3\n", 92),
    ("[security]\nlevel = 4\n", 183),
    ("[security]\nlevel = 5\n", 366),
    ("[security]\nlevel = 3\n[audit]\nretention_days = 30\n", 92),  # raised to the minimum
    ("[security]\nlevel = 5\n[audit]\nretention_days = 365\n", 366),
    ("[security]\nlevel = 3\n[audit]\nretention_days = 400\n", 400),  # longer is kept longer
    ("[security]\nlevel = 2\n[audit]\nretention_days = 0\n", 90),  # 0: the level's minimum
], ids=["default", "L1", "L2", "L3", "L4", "L5", "L3-too-short", "L5-too-short", "L3-longer",
        "L2-zero"])
def test_retention_days_follow_the_security_level(kyso: Kyso, config: str, days: int) -> None:
    configure(kyso, config)
    assert retention_days(kyso) == days


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_a_purge_shorter_than_the_levels_minimum_is_refused(kyso: Kyso, level: int) -> None:
    configure(kyso, f"[security]\nlevel = {level}\n")
    minimum = LEVEL_MIN_DAYS[level]
    with pytest.raises(AuditError, match=f"at least {minimum} days"):
        plan_purge(kyso, days=minimum - 1)
    assert plan_purge(kyso, days=minimum).segments == ()


# --- the plan ---------------------------------------------------------------------------------

def test_plan_takes_only_segments_wholly_older_than_the_cutoff(kyso: Kyso,
                                                              ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    plan = plan_purge(kyso)
    names = segment_names(kyso)
    assert plan.cutoff == (kyso.now() - dt.timedelta(days=92)).astimezone(
        dt.timezone(dt.timedelta(hours=7))).date()
    assert [s.name for s in plan.segments] == names[:len(plan.segments)]
    assert plan.segments
    segments = list_segments(Layout(kyso.settings.audit_dir))[0]
    kept = segments[len(plan.segments)]
    assert plan.cut == kept.first
    for i in range(len(plan.segments)):  # each is followed by a segment that starts by the cutoff
        assert dt.datetime.strptime(segments[i + 1].day, "%Y%m%d").date() <= plan.cutoff
    after = dt.datetime.strptime(segments[len(plan.segments) + 1].day, "%Y%m%d").date()
    assert after > plan.cutoff
    assert plan.to_dict()["segments"] == [s.name for s in plan.segments]


def test_plan_never_includes_the_last_segment(kyso: Kyso, ca: CertificateAuthority) -> None:
    daily_events(kyso, 5)
    kyso.clock.advance(dt.timedelta(days=1000))  # type: ignore[attr-defined]
    plan = plan_purge(kyso)
    names = segment_names(kyso)
    assert [s.name for s in plan.segments] == names[:-1]
    assert plan.cut == list_segments(Layout(kyso.settings.audit_dir))[0][-1].first


def test_plan_of_a_single_segment_log_is_empty(kyso: Kyso, ca: CertificateAuthority) -> None:
    kyso.clock.advance(dt.timedelta(days=1000))  # type: ignore[attr-defined]
    plan = plan_purge(kyso)
    assert plan.segments == ()
    assert plan.cut == 0
    assert purge(kyso, plan) is None
    assert not base_path(kyso).exists()


# --- refusals -------------------------------------------------------------------------------

def test_purge_without_a_checkpoint_covering_the_cut_is_refused(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    create_checkpoint(kyso, PASSPHRASE)  # covers only the CA's first events, not the cut
    daily_events(kyso, 100)
    plan = plan_purge(kyso)
    before = segment_names(kyso)
    with pytest.raises(AuditError, match="no signed checkpoint covers"):
        purge(kyso, plan)
    assert segment_names(kyso) == before
    assert not base_path(kyso).exists()
    assert not any(e["action"] == "AUDIT_PURGE" for e in audit_events(kyso))


def test_purge_of_a_log_that_does_not_verify_is_refused(kyso: Kyso,
                                                        ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)
    victim = plan.segments[-1].path
    data = victim.read_bytes()
    victim.chmod(0o600)
    victim.write_bytes(data.replace(b'"actor":"admin:test"', b'"actor":"admin:tesT"', 1))
    before = segment_names(kyso)
    with pytest.raises(AuditError, match="does not verify"):
        purge(kyso, plan)
    assert segment_names(kyso) == before
    assert not base_path(kyso).exists()


# --- a purge ----------------------------------------------------------------------------------

def test_purge_after_a_checkpoint_removes_old_segments_and_keeps_the_log_verifiable(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    covering = create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)
    purged_bytes = {s.name: s.path.read_bytes() for s in plan.segments}
    kept = segment_names(kyso)[len(plan.segments):]

    state = purge(kyso, plan)

    assert state is not None
    assert state.size == plan.cut
    assert segment_names(kyso) == kept
    assert not any(s.path.exists() for s in plan.segments)
    record = json.loads(base_path(kyso).read_text())
    assert record["size"] == plan.cut
    assert len(record["frontier"]) == bin(plan.cut).count("1")
    assert record["purged"] == [{"segment": name, "sha256": hashlib.sha256(data).hexdigest()}
                                for name, data in purged_bytes.items()]
    assert record["checkpoint"] == covering.note.decode()
    last_purged = purged_bytes[plan.segments[-1].name].rstrip(b"\n").split(b"\n")[-1]
    assert record["last_hash"] == hashlib.sha256(b"\x00" + last_purged).hexdigest()

    event = audit_events(kyso)[-1]
    assert (event["action"], event["outcome"]) == ("AUDIT_PURGE", "success")
    assert event["details"]["cut"] == plan.cut
    assert len(event["details"]["segments"]) == len(purged_bytes)
    assert event["object"] == f"before-seq:{plan.cut}"

    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    checks = statuses(report)
    assert checks["checkpoints"] == "PASS"
    assert checks["purge record"] == "PASS"
    assert report.first == plan.cut


def test_after_a_purge_appends_chain_on_and_proofs_still_work(kyso: Kyso,
                                                              ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)
    purge(kyso, plan)

    daily_events(kyso, 3)
    latest = create_checkpoint(kyso, PASSPHRASE)
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    assert report.size == latest.checkpoint.size + 1
    events = audit_events(kyso)
    assert events[0]["seq"] == plan.cut
    assert [e["seq"] for e in events] == list(range(plan.cut, report.size))

    cert = signer_certificates(kyso)[-1]
    for seq in (plan.cut, plan.cut + 1, latest.checkpoint.size - 1):
        bundle = inclusion_bundle(kyso.settings.audit_dir, seq, latest.note, latest.checkpoint,
                                  cert)
        assert verify_bundle(bundle, cert).seq == seq


def test_a_second_purge_later_keeps_everything_provable(kyso: Kyso,
                                                        ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    first = plan_purge(kyso)
    purge(kyso, first)
    daily_events(kyso, 20)
    create_checkpoint(kyso, PASSPHRASE)
    second = plan_purge(kyso)
    assert second.segments
    assert second.cut > first.cut
    purge(kyso, second)
    assert json.loads(base_path(kyso).read_text())["size"] == second.cut
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    assert statuses(report)["checkpoints"] == "PASS"


def test_the_purge_event_names_the_purged_segments_exactly(kyso: Kyso,
                                                           ca: CertificateAuthority) -> None:
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)
    purge(kyso, plan)
    event = audit_events(kyso)[-1]
    assert event["action"] == "AUDIT_PURGE"
    # first seq and day, unpadded: a zero-padded 12-digit seq would be masked as an ID number
    assert event["details"]["segments"] == [f"{s.first}-{s.day}" for s in plan.segments]


# --- a forged or damaged purge record -----------------------------------------------------------

def _purged_log(kyso: Kyso) -> int:
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)
    purge(kyso, plan)
    create_checkpoint(kyso, PASSPHRASE)
    return plan.cut


def test_a_forged_frontier_in_base_json_is_caught_by_the_signed_checkpoints(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    _purged_log(kyso)
    record = json.loads(base_path(kyso).read_text())
    first = bytearray(base64.b64decode(record["frontier"][0]))
    first[0] ^= 0x01
    record["frontier"][0] = base64.b64encode(bytes(first)).decode()
    base_path(kyso).write_text(json.dumps(record))

    report = verify_with_store(kyso)
    assert not report.ok
    assert statuses(report)["checkpoints"] == "FAIL"
    assert Kind.REWRITTEN in {f.kind for f in report.findings}


def test_a_forged_last_hash_in_base_json_breaks_the_chain(kyso: Kyso,
                                                          ca: CertificateAuthority) -> None:
    cut = _purged_log(kyso)
    record = json.loads(base_path(kyso).read_text())
    record["last_hash"] = "ab" * 32
    base_path(kyso).write_text(json.dumps(record))

    report = verify_with_store(kyso)
    assert not report.ok
    assert statuses(report)["entries and hash chain"] == "FAIL"
    assert report.findings[0].seq in (cut - 1, cut)


@pytest.mark.parametrize("damage", [b"not json", b"{}", b'{"size": 3, "last_hash": "00", '
                                    b'"frontier": []}'], ids=["not-json", "empty", "bad-state"])
def test_a_damaged_base_json_fails_verification_without_a_traceback(
        kyso: Kyso, ca: CertificateAuthority, damage: bytes) -> None:
    _purged_log(kyso)
    base_path(kyso).write_bytes(damage)
    report = verify_with_store(kyso)
    assert not report.ok
    assert report.findings[0].kind is Kind.DAMAGED
    assert any(c.status is Status.FAIL and c.name == "purge record" for c in report.checks)


# --- an interrupted purge -----------------------------------------------------------------------

class _Crash(Exception):
    pass


def _interrupted_purge(kyso: Kyso, monkeypatch: pytest.MonkeyPatch) -> int:
    """A purge that stops after writing base.json, before deleting any segment."""
    daily_events(kyso, 100)
    create_checkpoint(kyso, PASSPHRASE)
    plan = plan_purge(kyso)

    def crash(*_a: object, **_k: object) -> None:
        raise _Crash

    with monkeypatch.context() as m:
        m.setattr(os, "unlink", crash)
        with pytest.raises(_Crash):
            purge(kyso, plan)
    assert base_path(kyso).exists()
    assert all(s.path.exists() for s in plan.segments)
    return plan.cut


def test_an_interrupted_purge_still_verifies(kyso: Kyso, ca: CertificateAuthority,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cut = _interrupted_purge(kyso, monkeypatch)
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    assert statuses(report)["checkpoints"] == "PASS"
    assert report.first == cut


def test_after_an_interrupted_purge_appends_continue_and_the_purge_can_finish(
        kyso: Kyso, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    cut = _interrupted_purge(kyso, monkeypatch)
    kyso.record(Layer.ADMIN, "TEST_EVENT", Outcome.SUCCESS, object="after-the-crash")
    assert audit_events(kyso)[-1]["object"] == "after-the-crash"
    assert verify_with_store(kyso).ok
    plan = plan_purge(kyso)
    assert plan.cut == cut
    state = purge(kyso, plan)
    assert state is not None
    assert state.size == cut
    assert not any(s.path.exists() for s in plan.segments)
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    assert [e["action"] for e in audit_events(kyso)].count("AUDIT_PURGE") == 1
