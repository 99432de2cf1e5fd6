from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PASSPHRASE
from kyso.context import Kyso
from kyso.errors import RosterError
from kyso.pki.authority import CertificateAuthority
from kyso.pki.batch import generate_keys, issue_batch, parse_roster
from kyso.pki.keys import KeyType, key_type_of
from kyso.pki.pkcs12 import load_pkcs12
from kyso.store import schema

HEADER = "name,id,dob,title,unit,email\n"
GOOD = [
    "Nguyễn Văn An,019099012345,1999-04-02,Chuyên viên,Văn phòng UBND xã Phú Đình,an.nv@thainguyen.gov.vn",
    "Lê Thị Cúc,019185000111,1985-07-09,Phó Chủ tịch,UBND xã Phú Đình,cuc.lt@thainguyen.gov.vn",
    "Phạm Minh Đức,019090000222,1990-01-01,Văn thư,Văn phòng UBND xã Phú Đình,duc.pm@thainguyen.gov.vn",
]
BAD_ID = "Hoàng Văn Em,999090000333,1990-01-01,Chuyên viên,UBND xã,em.hv@thainguyen.gov.vn"
P12_PASS = "holder-p12-passphrase"


def _roster(*rows: str) -> bytes:
    return (HEADER + "\n".join(rows) + "\n").encode("utf-8")


def _count(kyso: Kyso, profile: str = "staff") -> int:
    c = schema.certificates
    with kyso.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(c.c.profile == profile)).scalar_one())


def test_good_rows_are_issued_and_a_bad_row_is_reported_by_line(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = issue_batch(kyso, ca, "staff", _roster(GOOD[0], BAD_ID, GOOD[1]),
                         p12_passphrase=P12_PASS, out_dir=tmp_path / "out",
                         progress=lambda d, t: seen.append((d, t)))
    assert [r.line for r in result.issued] == [2, 4]
    assert [(e.line, "province code" in e.message) for e in result.failed] == [(3, True)]
    assert _count(kyso) == 2
    assert seen[-1] == (2, 2)
    for row in result.issued:
        p12, pem = row.files
        assert stat.S_IMODE(p12.stat().st_mode) == 0o600
        bundle = load_pkcs12(p12.read_bytes(), P12_PASS)
        assert bundle.cert is not None
        assert bundle.cert.certificate.serial_number == int(row.issued.record.serial, 16)
        assert pem.read_bytes() == row.issued.record.pem
    assert result.manifest is not None
    manifest = result.manifest.read_text(encoding="utf-8")
    assert "Nguyễn Văn An" in manifest
    assert "019099012345" not in manifest


def test_all_or_nothing_issues_nothing_when_one_row_is_bad(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="line 3"):
        issue_batch(kyso, ca, "staff", _roster(GOOD[0], BAD_ID), p12_passphrase=P12_PASS,
                    out_dir=tmp_path / "out", all_or_nothing=True)
    assert _count(kyso) == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_all_or_nothing_stores_every_row_when_all_are_good(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    result = issue_batch(kyso, ca, "staff", _roster(*GOOD), p12_passphrase=P12_PASS,
                         out_dir=tmp_path / "out", all_or_nothing=True)
    assert len(result.issued) == 3
    assert result.failed == ()
    assert _count(kyso) == 3


def test_same_person_twice_in_a_roster_gets_two_keys(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    result = issue_batch(kyso, ca, "staff", _roster(GOOD[0], GOOD[0]), p12_passphrase=P12_PASS,
                         out_dir=tmp_path / "out")
    keys = {r.issued.record.certificate.public_key().public_numbers() for r in result.issued}  # type: ignore[union-attr]
    assert len(keys) == 2


def test_rsa_batch_generates_keys_of_the_requested_size_in_workers() -> None:
    keys = generate_keys(KeyType.RSA_2048, 4, jobs=2)
    assert [key_type_of(k.public_key()) for k in keys] == [KeyType.RSA_2048] * 4
    assert len({k.public_key().public_numbers().n for k in keys}) == 4  # type: ignore[union-attr]


def test_wrong_ca_passphrase_fails_before_any_key_is_generated(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    wrong = CertificateAuthority(kyso, PASSPHRASE + "x")
    from kyso.errors import PassphraseError

    with pytest.raises(PassphraseError):
        issue_batch(kyso, wrong, "staff", _roster(*GOOD), p12_passphrase=P12_PASS,
                    out_dir=tmp_path / "out")
    assert _count(kyso) == 0


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"name,id,colour\nx,y,z\n", "unknown column"),
    (b"name,name\nx,y\n", "named twice"),
    (HEADER.encode(), "no rows"),
    ("name,id\nTrần Thị Bình,033301000123\n".encode("cp1258", errors="replace") + b"\xfe", "not UTF-8"),
    (b"name,id\n\x00\x00\n", "NUL"),
])
def test_malformed_rosters_are_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(RosterError, match=message):
        parse_roster(data)


def test_row_with_too_many_fields_is_a_row_error_with_its_line() -> None:
    plan = parse_roster(_roster(GOOD[0], GOOD[1] + ",extra"))
    assert [r.line for r in plan.rows] == [2]
    assert [(e.line, "fields") for e in plan.errors] == [(3, "fields")]
    assert "fields" in plan.errors[0].message


def test_spreadsheet_bom_and_blank_lines_are_accepted() -> None:
    plan = parse_roster(b"\xef\xbb\xbf" + _roster(GOOD[0], "", GOOD[1]))
    assert [r.line for r in plan.rows] == [2, 4]
    assert plan.rows[0].request.values["name"] == "Nguyễn Văn An"


def test_a_write_failure_leaves_no_stored_certificate_without_its_key(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kyso.files as files

    real = files.atomic_write
    calls = {"p12": 0}

    def flaky(path: Path, data: bytes, **kw: object) -> None:
        if path.name.endswith(".p12.staged"):
            calls["p12"] += 1
            if calls["p12"] == 2:
                raise OSError(28, "No space left on device")
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "atomic_write", flaky)
    out = tmp_path / "out"
    with pytest.raises(RosterError, match="No space left"):
        issue_batch(kyso, ca, "staff", _roster(*GOOD), p12_passphrase=P12_PASS, out_dir=out)
    assert _count(kyso) == 0
    assert list(out.iterdir()) == []


def test_every_stored_batch_certificate_has_its_pkcs12(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    result = issue_batch(kyso, ca, "staff", _roster(*GOOD), p12_passphrase=P12_PASS,
                         out_dir=tmp_path / "out")
    c = schema.certificates
    with kyso.store.read() as conn:
        serials = set(conn.execute(sa.select(c.c.serial).where(c.c.profile == "staff")).scalars())
    assert {p.name.removesuffix(".p12") for p in (tmp_path / "out").glob("*.p12")} == serials
    assert not list((tmp_path / "out").glob(".*staged"))
    assert len(result.issued) == 3


def test_unusable_output_folder_is_a_clear_error(
        kyso: Kyso, ca: CertificateAuthority, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RosterError, match="cannot use output folder"):
        issue_batch(kyso, ca, "staff", _roster(*GOOD), p12_passphrase=P12_PASS,
                    out_dir=blocker / "out")
    assert _count(kyso) == 0
