"""Evaluating a level: statuses per requirement, evidence files, verdict, exit code, JSON."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from policy_support import good_facts, with_settings

from conftest import T0
from kyso.policies.check import SCHEMA, evaluate
from kyso.policies.facts import CheckpointFact, ClockFact
from kyso.policies.loader import load_levels
from kyso.policies.models import LevelCatalogue, Status


@pytest.fixture(scope="module")
def catalogue() -> LevelCatalogue:
    return load_levels()


def evidence_names(catalogue: LevelCatalogue, regime: str = "current", level: int = 3) -> set[str]:
    return {r.evidence for r in catalogue.get(regime, level).requirements if r.evidence}


def full_evidence(folder: Path, names: set[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.pdf").write_bytes(b"%PDF-1.7 evidence")
    return folder


def test_a_well_run_deployment_without_documents_needs_evidence_but_exits_0(
        catalogue: LevelCatalogue) -> None:
    report = evaluate(3, "current", good_facts(), catalogue=catalogue)
    statuses = {i.requirement.id: i.status for i in report.items}
    automatic = [i for i in report.items if i.requirement.check]
    assert all(i.status is Status.PASS for i in automatic), [
        (i.requirement.id, i.detail.en) for i in automatic if i.status is not Status.PASS]
    assert statuses["CUR-L1-GOV-01"] is Status.EVIDENCE
    assert report.verdict is Status.EVIDENCE
    assert report.exit_code == 0
    assert report.mandatory_failures == ()


def test_with_every_evidence_file_level_3_is_met(catalogue: LevelCatalogue, tmp_path: Path) -> None:
    folder = full_evidence(tmp_path / "evidence", evidence_names(catalogue))
    report = evaluate(3, "current", good_facts(), folder, catalogue=catalogue)
    assert report.verdict is Status.PASS
    assert report.counts()[Status.PASS] == len(report.items)
    policy = next(i for i in report.items if i.requirement.id == "CUR-L1-GOV-01")
    assert policy.detail.en == "evidence provided: security-policy.pdf"
    assert policy.detail.vi == "đã có bằng chứng: security-policy.pdf"
    assert policy.evidence_file == "security-policy.pdf"
    # an automatic check that could measure is not overridden by its evidence file
    ntp = next(i for i in report.items if i.requirement.check == "clock_offset")
    assert ntp.evidence_file is None
    assert "ms from ntp.example.vn" in ntp.detail.en


def test_an_empty_evidence_file_does_not_count(catalogue: LevelCatalogue, tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "security-policy.pdf").write_bytes(b"")
    report = evaluate(3, "current", good_facts(), folder, catalogue=catalogue)
    policy = next(i for i in report.items if i.requirement.id == "CUR-L1-GOV-01")
    assert policy.status is Status.EVIDENCE
    assert policy.detail.en == "evidence file security-policy.pdf is empty"
    missing = next(i for i in report.items if i.requirement.id == "CUR-L3-NET-01")
    assert missing.detail.en == f"no file network-diagram in {folder}"


def test_an_unmeasured_clock_falls_back_to_its_evidence_file(catalogue: LevelCatalogue,
                                                             tmp_path: Path) -> None:
    facts = good_facts(clock=ClockFact(""))
    item = next(i for i in evaluate(3, "current", facts, catalogue=catalogue).items
                if i.requirement.check == "clock_offset")
    assert item.status is Status.EVIDENCE
    assert item.detail.en == ("no NTP server configured ([security] ntp_server); the clock offset "
                              "cannot be measured; needs the file ntp-sync")
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "ntp-sync.txt").write_text("Leap status: Normal")
    item = next(i for i in evaluate(3, "current", facts, folder, catalogue=catalogue).items
                if i.requirement.check == "clock_offset")
    assert item.status is Status.PASS
    assert item.evidence_file == "ntp-sync.txt"


def test_a_failed_check_is_not_rescued_by_evidence(catalogue: LevelCatalogue,
                                                   tmp_path: Path) -> None:
    facts = good_facts(clock=ClockFact("ntp.example.vn", offset_ms=5000.0))
    folder = full_evidence(tmp_path / "evidence", {"ntp-sync"})
    item = next(i for i in evaluate(3, "current", facts, folder, catalogue=catalogue).items
                if i.requirement.check == "clock_offset")
    assert item.status is Status.FAIL


def test_a_mandatory_failure_makes_the_verdict_fail_and_exit_1(catalogue: LevelCatalogue) -> None:
    facts = with_settings(good_facts(), "authn", max_login_failures=10)
    report = evaluate(3, "current", facts, catalogue=catalogue)
    assert report.verdict is Status.FAIL
    assert report.exit_code == 1
    assert [i.requirement.id for i in report.mandatory_failures] == ["CUR-L2-AUTH-03"]


def test_a_failing_recommendation_does_not_fail_the_level(catalogue: LevelCatalogue,
                                                          tmp_path: Path) -> None:
    stale = CheckpointFact(time=T0 - dt.timedelta(days=1), size=120, log_size=121)
    facts = good_facts(checkpoint=stale)
    folder = full_evidence(tmp_path / "evidence", evidence_names(catalogue))
    report = evaluate(3, "current", facts, folder, catalogue=catalogue)
    checkpoints = next(i for i in report.items if i.requirement.check == "audit_checkpoints")
    assert checkpoints.status is Status.FAIL
    assert not checkpoints.requirement.mandatory
    assert report.verdict is Status.PASS
    assert report.exit_code == 0


def test_partial_outranks_missing_evidence_in_the_verdict(catalogue: LevelCatalogue) -> None:
    facts = with_settings(good_facts(), "backup", offsite=False)
    report = evaluate(3, "current", facts, catalogue=catalogue)
    assert report.counts()[Status.PARTIAL] == 1
    assert report.verdict is Status.PARTIAL
    assert report.exit_code == 0


def test_json_shape(catalogue: LevelCatalogue) -> None:
    facts = with_settings(good_facts(), "authn", admin_mfa=False)
    data = evaluate(3, "current", facts, catalogue=catalogue).to_dict("vi")
    assert set(data) == {"schema", "regime", "level", "title", "documents", "time", "lang",
                         "evidence_dir", "verdict", "summary", "requirements", "notes"}
    assert (data["schema"], data["regime"], data["level"], data["lang"]) == (SCHEMA, "current", 3,
                                                                             "vi")
    assert data["time"] == "2026-11-23T09:00:00+07:00"
    assert data["verdict"] == {"status": "fail", "label": "Chưa đạt",
                               "mandatory_failed": ["CUR-L2-AUTH-01"]}
    summary = data["summary"]
    assert summary["total"] == len(data["requirements"])
    assert sum(summary[s.value] for s in Status) == summary["total"]
    assert sum(summary["mandatory"].values()) == sum(r["mandatory"] for r in data["requirements"])
    mfa = next(r for r in data["requirements"] if r["id"] == "CUR-L2-AUTH-01")
    assert set(mfa) == {"id", "title", "status", "label", "mandatory", "source", "check", "params",
                        "evidence", "evidence_file", "detail"}
    assert (mfa["status"], mfa["label"], mfa["check"]) == ("fail", "Chưa đạt", "admin_mfa")
    assert mfa["title"] == "Xác thực đa yếu tố cho quản trị"
    assert mfa["source"].startswith("Decree 331/2026/NĐ-CP")
    hashes = next(r for r in data["requirements"] if r["check"] == "signature_hashes")
    assert hashes["params"] == {"allowed": ["sha256", "sha384", "sha512"]}


def test_english_report(catalogue: LevelCatalogue) -> None:
    report = evaluate(3, "current", good_facts(), catalogue=catalogue)
    data = report.to_dict("en")
    mfa = next(r for r in data["requirements"] if r["id"] == "CUR-L2-AUTH-01")
    assert (mfa["title"], mfa["label"]) == ("MFA for administrators", "Met")
    assert report.summary_line("en").startswith("Level 3 (current): 29 requirements — ")
    assert report.summary_line("en").endswith("verdict: Evidence needed")
    assert report.summary_line("vi").endswith("kết luận: Cần bằng chứng")


def test_legacy_regime_after_its_end_says_so(catalogue: LevelCatalogue) -> None:
    late = good_facts(now=dt.datetime(2027, 8, 1, tzinfo=dt.UTC))
    notes = [n.en for n in evaluate(3, "legacy", late, catalogue=catalogue).notes]
    assert "the legacy regime applied until 2027-07-01; use --regime current" in notes
    early = good_facts(now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    notes = [n.en for n in evaluate(3, "current", early, catalogue=catalogue).notes]
    assert "the current regime applies from 2026-07-01" in notes


def test_checking_another_level_than_configured_is_noted(catalogue: LevelCatalogue) -> None:
    notes = [n.en for n in evaluate(2, "current", good_facts(), catalogue=catalogue).notes]
    assert "this deployment is configured for level 3 ([security] level)" in notes
    assert any("at least level 3" in n for n in notes)


@pytest.mark.parametrize("regime", ["current", "legacy"])
@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_every_level_evaluates_on_a_deployment_without_a_ca(catalogue: LevelCatalogue,
                                                           regime: str, level: int) -> None:
    facts = replace(good_facts(ca_present=False, keys=(), audit_retention_days=400),
                    security=replace(good_facts().security, level=level))
    report = evaluate(level, regime, facts, catalogue=catalogue)
    for i in report.items:
        if i.requirement.check in ("key_strength", "signature_hashes", "certificates_valid",
                                   "key_files_protected"):
            assert i.status is Status.EVIDENCE
            assert "ca-key-inventory" in i.detail.en
    assert report.exit_code == 0
