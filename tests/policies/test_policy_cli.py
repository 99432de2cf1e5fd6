"""``kyso policy check|list|show`` end to end: settings flip items, the exit code follows the
mandatory failures, bad input gets a message and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_support import (
    cli_env,  # noqa: F401 - autouse fixture
    item,
    run,
    run_json,
    run_main,
    server_reply,
    sntp_server,
    well_run_home,
    write_config,
)

from kyso.audit import read_events
from kyso.policies.loader import load_levels

AUTOMATIC_NEEDING_EVIDENCE = {"clock_offset"}  # no NTP server in a test home


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    return tmp_path / "offsite-backup"


@pytest.fixture
def well_run(home: Path, backup: Path) -> Path:
    well_run_home(home, backup)
    return home


def test_level_3_on_a_well_run_home_meets_every_automatic_check(well_run: Path) -> None:
    result = run(well_run, "policy", "check", "--level", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["regime"], report["level"]) == ("current", 3)
    for r in report["requirements"]:
        if r["check"] and r["check"] not in AUTOMATIC_NEEDING_EVIDENCE:
            assert r["label"] == "Đạt", r
        assert r["source"]
    assert item(report, "CUR-L1-TIME-01")["label"] == "Cần bằng chứng"
    assert report["verdict"]["status"] == "evidence"


def test_a_lockout_threshold_of_10_flips_the_item_and_the_exit_code(well_run: Path,
                                                                    backup: Path) -> None:
    before = run_json(well_run, "policy", "check", "--level", "3")
    assert item(before, "CUR-L2-AUTH-03")["label"] == "Đạt"
    write_config(well_run, f'[backup]\ndir = "{backup}"\noffsite = true\n'
                           "[authn]\nmax_login_failures = 10\n")
    result = run(well_run, "policy", "check", "--level", "3", "--format", "json")
    assert result.exit_code == 1
    after = json.loads(result.stdout)
    lockout = item(after, "CUR-L2-AUTH-03")
    assert lockout["label"] == "Chưa đạt"
    assert "10" in lockout["detail"]
    assert after["verdict"]["mandatory_failed"] == ["CUR-L2-AUTH-03"]
    table = run(well_run, "policy", "check", "--level", "3")
    assert table.exit_code == 1
    assert "kết luận: Chưa đạt (1 yêu cầu bắt buộc chưa đạt)" in table.stdout


def test_turning_admin_mfa_off_flips_the_mfa_item(home: Path, backup: Path) -> None:
    well_run_home(home, backup, authn="[authn]\nadmin_mfa = false\n")
    result = run(home, "policy", "check", "--format", "json", "--lang", "en")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    mfa = item(report, "CUR-L2-AUTH-01")
    assert (mfa["label"], mfa["detail"]) == ("Not met",
                                             "MFA for administrators: off ([authn] admin_mfa = false)")


def test_table_output_in_vietnamese_and_english(well_run: Path) -> None:
    vi = run(well_run, "policy", "check", "--level", "3")
    assert vi.exit_code == 0, vi.output
    for text in ("mã", "kết quả", "nguồn", "CUR-L3-LOG-01", "Đạt", "Cần bằng chứng",
                 "Decree 331/2026/NĐ-CP", "lưu ý: nộp các tệp bằng chứng bằng --evidence"):
        assert text in vi.stdout, text
    assert vi.stdout.rstrip().splitlines()[-1].startswith("Cấp độ 3 (current): 29 yêu cầu — ")
    en = run(well_run, "policy", "check", "--level", "3", "--lang", "en", "--format", "table")
    assert en.exit_code == 0
    assert "requirement" in en.stdout
    assert "Evidence needed" in en.stdout
    assert "verdict: Evidence needed" in en.stdout


def test_the_global_format_option_gives_json_too(well_run: Path) -> None:
    result = run(well_run, "--format", "json", "policy", "check")
    assert json.loads(result.stdout)["schema"] == "kyso-policy-check/1"


def test_level_and_regime_default_to_the_settings(well_run: Path, backup: Path) -> None:
    write_config(well_run, f'[backup]\ndir = "{backup}"\noffsite = true\n'
                           '[security]\nlevel = 4\nregime = "legacy"\n')
    report = run_json(well_run, "policy", "check")
    assert (report["regime"], report["level"]) == ("legacy", 4)


def test_evidence_folder_meets_the_documentary_requirements(well_run: Path,
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    level = load_levels().get("current", 3)
    for name in {r.evidence for r in level.requirements if r.evidence}:
        (folder / f"{name}.pdf").write_bytes(b"%PDF-1.7")
    result = run(well_run, "policy", "check", "--evidence", str(folder), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["verdict"]["label"] == "Đạt"
    assert report["evidence_dir"] == str(folder)
    assert item(report, "CUR-L3-NET-01")["detail"] == "đã có bằng chứng: network-diagram.pdf"


def test_a_measured_clock_offset_is_met(well_run: Path, backup: Path) -> None:
    with sntp_server(server_reply(ahead_seconds=0.05)) as address:
        write_config(well_run, f'[backup]\ndir = "{backup}"\noffsite = true\n'
                               f'[security]\nntp_server = "{address}"\n')
        report = run_json(well_run, "policy", "check", "--lang", "en")
    clock = item(report, "CUR-L1-TIME-01")
    assert clock["label"] == "Met"
    assert f"ms from {address}" in clock["detail"]


def test_a_home_without_a_ca_is_reported_and_left_untouched(
        capsys: pytest.CaptureFixture[str], home: Path) -> None:
    outcome = run_main(capsys, home, "policy", "check", "--level", "3", "--format", "json")
    assert outcome.code == 1  # no audit log, no backups
    assert "Traceback" not in outcome.out + outcome.err
    report = json.loads(outcome.out)
    keys = item(report, "CUR-L2-CRY-01")
    assert keys["label"] == "Cần bằng chứng"
    assert keys["detail"].startswith(f"không có CA trong {home}")
    assert item(report, "CUR-L2-BAK-01")["label"] == "Chưa đạt"
    assert not home.exists()


@pytest.mark.parametrize(("config", "needles"), [
    ('[authn]\nmax_login_failures = "ten"\n', ("[authn] max_login_failures", "whole number")),
    ("[authn]\nadmin_mfa = 1\n", ("[authn] admin_mfa", "true or false")),
    ("[authn]\nmfa = true\n", ("unknown setting", "mfa")),
    ('[security]\nregime = "future"\n', ("[security] regime", "current, legacy")),
    ("[security]\nlevel = 9\n", ("[security] level", "between 1 and 5")),
    ("[authn\nmax_login_failures = 5\n", ("not valid TOML",)),
])
def test_garbage_in_the_config_is_a_clear_error(capsys: pytest.CaptureFixture[str], home: Path,
                                                config: str, needles: tuple[str, ...]) -> None:
    write_config(home, config)
    outcome = run_main(capsys, home, "policy", "check")
    assert outcome.code == 1
    assert "Traceback" not in outcome.out + outcome.err
    assert "internal error" not in outcome.err
    assert outcome.err.startswith("error: ")
    assert "config.toml" in outcome.err
    for needle in needles:
        assert needle in outcome.err, outcome.err


@pytest.mark.parametrize("args", [("--level", "7"), ("--regime", "future"), ("--lang", "fr"),
                                  ("--format", "csv"), ("--evidence", "/no/such/folder")])
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], home: Path,
                                      args: tuple[str, ...]) -> None:
    outcome = run_main(capsys, home, "policy", "check", *args)
    assert outcome.code == 2
    assert "Traceback" not in outcome.err


# --- list and show -----------------------------------------------------------------------------

def test_policy_list_names_every_level(home: Path) -> None:
    result = run(home, "policy", "list")
    assert result.exit_code == 0
    for name in ("current-1", "current-3", "legacy-5"):
        assert name in result.stdout
    levels = run_json(home, "policy", "list", "--regime", "legacy")
    assert [lv["name"] for lv in levels] == [f"legacy-{n}" for n in range(1, 6)]
    assert levels[2]["requirements"] == 28
    assert not home.exists()


def test_policy_list_of_one_level_lists_its_requirements(home: Path) -> None:
    rows = run_json(home, "policy", "list", "--regime", "current", "--level", "3", "--lang", "en")
    assert len(rows) == 29
    assert {r["level"] for r in rows} == {"current-3"}
    lockout = next(r for r in rows if r["id"] == "CUR-L2-AUTH-03")
    assert lockout["title"] == "Lockout after 5 failed logins"
    table = run(home, "policy", "list", "--level", "3")
    assert "LEG-L3-LOG-04" in table.stdout
    assert "check login_lockout (max_failures=5)" in table.stdout


def test_policy_show_gives_both_languages_source_and_levels(home: Path) -> None:
    result = run(home, "policy", "show", "CUR-L3-LOG-01")
    assert result.exit_code == 0
    for text in ("Lưu nhật ký tối thiểu 3 tháng", "Logs kept at least 3 months",
                 "Decree 331/2026/NĐ-CP and TCVN 14423:2026, level 3: log retention",
                 "check audit_retention (min_days=90)", "CUR-L2-LOG-01", "current-3"):
        assert text in result.stdout, text
    data = run_json(home, "policy", "show", "cur-l2-auth-03")
    assert data["levels"] == ["current-2", "current-3", "current-4", "current-5"]
    assert data["title"] == {"vi": "Khóa sau 5 lần đăng nhập sai",
                             "en": "Lockout after 5 failed logins"}
    assert data["check_description"]["en"].startswith("Accounts lock after at most")


def test_policy_show_of_an_unknown_id_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                        home: Path) -> None:
    outcome = run_main(capsys, home, "policy", "show", "CUR-L3-XYZ-99")
    assert outcome.code == 1
    assert outcome.err == "error: no requirement 'CUR-L3-XYZ-99' in any level file\n"


def test_help_shows_examples(home: Path) -> None:
    result = run(home, "policy", "check", "--help")
    assert "kyso policy check --level 3 --regime legacy --evidence" in result.stdout
    assert "Exit code 1 when a mandatory" in result.stdout


# --- with the audit log ------------------------------------------------------------------------

def test_kyso_audit_verify_meets_the_integrity_item(home: Path, backup: Path) -> None:
    well_run_home(home, backup)
    (home / "audit" / "verified.json").unlink()
    before = run_json(home, "policy", "check", "--lang", "en")
    assert item(before, "CUR-L3-LOG-04")["detail"] == ("the log has never been verified; run "
                                                      "`kyso audit verify`")
    assert run(home, "audit", "verify").exit_code == 0
    after = run_json(home, "policy", "check", "--lang", "en")
    integrity = item(after, "CUR-L3-LOG-04")
    assert integrity["label"] == "Met"
    assert integrity["detail"].startswith("intact at ")


def test_each_check_is_recorded_in_the_audit_log(well_run: Path, backup: Path) -> None:
    write_config(well_run, f'[backup]\ndir = "{backup}"\noffsite = true\n'
                           "[authn]\nmax_login_failures = 10\n")
    assert run(well_run, "policy", "check", "--level", "3").exit_code == 1
    event = read_events(well_run / "audit")[-1]
    assert (event["layer"], event["action"], event["outcome"], event["object"]) == (
        "audit", "POLICY_CHECK", "failure", "current-3")
    details = event["details"]
    assert details["verdict"] == "fail"
    assert details["mandatory_failed"] == ["CUR-L2-AUTH-03"]
    assert details["not_met"] == 1
    assert details["met"] + details["not_met"] + details["partly_met"] \
        + details["evidence_needed"] == 29
