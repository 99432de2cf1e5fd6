"""``kyso cert issue-batch``: good rows issued, bad rows reported by line, --all-or-nothing,
malformed rosters refused clearly, a manifest written."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from cli_support import (
    P12_PASSPHRASE,
    Outcome,
    assert_refused,
    ca_cert,
    cli_env,  # noqa: F401 - autouse fixture
    init_ca,
    listed,
    mode,
    run_main,
    run_ok,
    serials,
    tree,
    verifies,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

HEADER = "name,id,dob,title,unit,email"
GOOD = [
    "Nguyễn Văn An,019099012345,1999-04-02,Chuyên viên,Văn phòng UBND xã Phú Đình,an.nv@thainguyen.gov.vn",
    "Lê Thị Cúc,019185000111,1985-07-09,Phó Chủ tịch,UBND xã Phú Đình,cuc.lt@thainguyen.gov.vn",
    "Phạm Minh Đức,019090000222,1990-01-01,Văn thư,Văn phòng UBND xã Phú Đình,duc.pm@thainguyen.gov.vn",
]
BAD_ID = "999090000333"
BAD = f"Hoàng Văn Em,{BAD_ID},1990-01-01,Chuyên viên,UBND xã,em.hv@thainguyen.gov.vn"


@pytest.fixture
def ca_home(home: Path) -> Path:
    init_ca(home)
    return home


def roster(*rows: str, header: str = HEADER, name: str = "roster.csv") -> Path:
    path = Path(name)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def batch(capsys: pytest.CaptureFixture[str], home: Path, path: Path, *extra: str) -> Outcome:
    return run_main(capsys, home, "cert", "issue-batch", str(path), "--profile", "staff", *extra)


def test_batch_with_one_bad_row_reports_its_line_and_issues_the_others(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = serials(ca_home)
    outcome = batch(capsys, ca_home, roster(GOOD[0], BAD, GOOD[1]), "--out-dir", "out")
    assert outcome.code == 1
    assert "Traceback" not in outcome.text
    assert "line 3" in outcome.err
    assert "line 2" not in outcome.err
    assert "line 4" not in outcome.err
    assert BAD_ID not in outcome.text

    new = [r for r in listed(ca_home, "--profile", "staff") if r["serial"] not in before]
    assert sorted(r["common_name"] for r in new) == ["Lê Thị Cúc", "Nguyễn Văn An"]
    staff_ca = ca_cert(ca_home, "staff")
    for r in new:
        p12 = Path("out") / f"{r['serial']}.p12"
        crt = Path("out") / f"{r['serial']}.crt.pem"
        assert mode(p12) == 0o600
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        assert verifies(cert, staff_ca)
        key, p12_cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(),
                                                            P12_PASSPHRASE.encode())
        assert key is not None
        assert p12_cert == cert

    manifest = list(csv.DictReader(io.StringIO(
        (Path("out") / "manifest.csv").read_text(encoding="utf-8"))))
    assert [(m["line"], m["common_name"]) for m in manifest] == [
        ("2", "Nguyễn Văn An"), ("4", "Lê Thị Cúc")]
    assert {m["serial"] for m in manifest} == {r["serial"] for r in new}
    assert all((Path("out") / m["p12"]).is_file() and (Path("out") / m["certificate"]).is_file()
               for m in manifest)
    assert "019099012345" not in (Path("out") / "manifest.csv").read_text(encoding="utf-8")


def test_batch_all_or_nothing_with_a_bad_row_issues_nothing(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = serials(ca_home)
    outcome = batch(capsys, ca_home, roster(GOOD[0], BAD, GOOD[1]), "--out-dir", "out",
                    "--all-or-nothing")
    assert_refused(outcome, 1, "line 3", "nothing issued")
    assert BAD_ID not in outcome.text
    assert serials(ca_home) == before
    assert tree(Path("out")) == {}
    assert tree(ca_home / "issued") == {}


def test_batch_all_good_rows_issue_into_the_default_folder_with_a_manifest(
        ca_home: Path) -> None:
    before = serials(ca_home)
    result = run_ok(ca_home, "cert", "issue-batch", str(roster(*GOOD)), "--profile", "staff",
                    "--all-or-nothing")
    assert "issued 3 certificate(s)" in result.stdout
    new = serials(ca_home) - before
    assert len(new) == 3
    manifests = list((ca_home / "issued").glob("batch-*/manifest.csv"))
    assert len(manifests) == 1
    rows = list(csv.DictReader(io.StringIO(manifests[0].read_text(encoding="utf-8"))))
    assert {r["serial"] for r in rows} == new
    assert [r["line"] for r in rows] == ["2", "3", "4"]


def test_batch_json_output_lists_issued_and_failed_rows(ca_home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    outcome = batch(capsys, ca_home, roster(GOOD[0], BAD), "--out-dir", "out", "--format", "json")
    assert outcome.code == 1
    data = json.loads(outcome.out)
    assert [r["line"] for r in data["issued"]] == [2]
    assert [r["line"] for r in data["failed"]] == [3]
    assert data["manifest"].endswith("manifest.csv")


def _write(name: str, data: bytes) -> Path:
    Path(name).write_bytes(data)
    return Path(name)


ROSTERS = {
    "unknown column": (f"{HEADER},favourite_colour\n{GOOD[0]},blue\n".encode(),
                       ("favourite_colour", "column")),
    "not UTF-8": ((HEADER + "\n" + GOOD[0] + "\n").encode("cp1258", errors="replace"),
                  ("UTF-8",)),
    "Latin-1 bytes": (b"name,id,title,unit,email\nNguy\xe9n,019099012345,T,U,a@thainguyen.gov.vn\n",
                      ("UTF-8",)),
    "empty": (b"", ("empty",)),
    "header only": ((HEADER + "\n").encode(), ("no rows",)),
    "column named twice": (b"name,name\nA B,C D\n", ("twice",)),
    "NUL bytes": (b"name,id\x00\n", ("NUL",)),
}


@pytest.mark.parametrize("case", list(ROSTERS))
def test_a_malformed_roster_is_refused_clearly_and_nothing_is_issued(
        ca_home: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    data, needles = ROSTERS[case]
    before = serials(ca_home)
    outcome = batch(capsys, ca_home, _write("roster.csv", data), "--out-dir", "out")
    assert_refused(outcome, 1, *needles)
    assert serials(ca_home) == before
    assert tree(Path("out")) == {}


def test_a_missing_roster_file_is_refused(ca_home: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    outcome = batch(capsys, ca_home, Path("no-such-roster.csv"))
    assert outcome.code in (1, 2)
    assert_refused(outcome, outcome.code, "no-such-roster.csv")


def test_a_roster_without_a_header_line_does_not_echo_the_id_numbers(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Forgetting the header is a common spreadsheet-export mistake: the first data row is then
    read as the header. The refusal must name the problem without repeating the row's raw
    personal ID number (errors never carry raw ID numbers)."""
    before = serials(ca_home)
    outcome = batch(capsys, ca_home, _write("roster.csv", ("\n".join(GOOD) + "\n").encode()),
                    "--out-dir", "out")
    assert_refused(outcome, 1, "column")
    assert serials(ca_home) == before
    assert "019099012345" not in outcome.text
    assert "019185000111" not in outcome.text


def test_a_row_with_the_wrong_number_of_fields_is_reported_by_line(
        ca_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = serials(ca_home)
    outcome = batch(capsys, ca_home, roster(GOOD[0], GOOD[1], "Trần Văn Ba,019090000444"),
                    "--out-dir", "out")
    assert outcome.code == 1
    assert "Traceback" not in outcome.text
    assert "line 4" in outcome.err
    assert "fields" in outcome.err
    assert len(serials(ca_home) - before) == 2


def test_batch_with_a_wrong_ca_passphrase_issues_nothing(
        ca_home: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", "not-the-ca-passphrase")
    outcome = batch(capsys, ca_home, roster(*GOOD), "--out-dir", "out")
    assert_refused(outcome, 1, "passphrase")
    monkeypatch.setenv("KYSO_CA_PASSPHRASE", "test-ca-passphrase")
    assert len(serials(ca_home)) == 5  # the service certificates only
    assert tree(Path("out")) == {}
