"""Level files are loaded strictly: every refusal names the file and the requirement."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kyso.errors import ConfigError, PolicyError
from kyso.policies.loader import load_levels, parse_level
from kyso.policies.models import Status

LEVEL_2 = '''
regime = "current"
level = 2
title = { vi = "Cấp độ 2", en = "Level 2" }
documents = ["Decree 331/2026/NĐ-CP"]
in_force = 2026-07-01

[[requirement]]
id = "CUR-L2-AUTH-01"
title = { vi = "Khóa tài khoản", en = "Lockout" }
text = { vi = "Khóa sau 5 lần sai.", en = "Lock after 5 failures." }
source = "Decree 331/2026/NĐ-CP, login management"
mandatory = true
check = "login_lockout"
params = { max_failures = 5 }

[[requirement]]
id = "CUR-L2-GOV-01"
title = { vi = "Chính sách", en = "Policy" }
text = { vi = "Có chính sách.", en = "A policy exists." }
source = "Decree 331/2026/NĐ-CP, security policy"
mandatory = false
evidence = "security-policy"
evidence_description = { vi = "Chính sách đã ban hành", en = "The issued policy" }
'''

LEVEL_3 = '''
regime = "current"
level = 3
extends = "current-2"
title = { vi = "Cấp độ 3", en = "Level 3" }

[[requirement]]
id = "CUR-L3-AUTH-01"
replaces = "CUR-L2-AUTH-01"
title = { vi = "Khóa tài khoản chặt hơn", en = "Stricter lockout" }
text = { vi = "Khóa sau 3 lần sai.", en = "Lock after 3 failures." }
source = "Decree 331/2026/NĐ-CP, login management"
mandatory = true
check = "login_lockout"
params = { max_failures = 3 }

[[requirement]]
id = "CUR-L3-LOG-01"
title = { vi = "Lưu nhật ký", en = "Log retention" }
text = { vi = "Lưu 3 tháng.", en = "Keep 3 months." }
source = "Decree 331/2026/NĐ-CP, log retention"
mandatory = true
check = "audit_retention"
params = { min_days = 90 }
'''


def edit(text: str, old: str, new: str) -> str:
    """Replace ``old``, which must be there, so that a mutation never silently does nothing."""
    assert old in text, old
    return text.replace(old, new, 1)


def write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, text in files.items():
        (folder / f"{stem.replace('_', '-')}.toml").write_text(text, encoding="utf-8")
    return folder


def refused(text: str, *needles: str, source: str = "site/current-2.toml") -> str:
    with pytest.raises(PolicyError) as info:
        parse_level(text, source)
    message = str(info.value)
    assert source in message
    for needle in needles:
        assert needle in message, message
    return message


def test_a_valid_file_parses_into_sourced_requirements() -> None:
    raw = parse_level(LEVEL_2, "site/current-2.toml")
    assert (raw.name, raw.regime, raw.level, raw.in_force) == ("current-2", "current", 2,
                                                               dt.date(2026, 7, 1))
    lockout, policy = raw.requirements
    assert lockout.check == "login_lockout"
    assert dict(lockout.params) == {"max_failures": 5}
    assert policy.evidence == "security-policy"
    assert not policy.mandatory
    assert policy.evidence_description is not None
    assert policy.evidence_description.en == "The issued policy"


def test_policy_error_is_a_config_error_with_exit_code_1() -> None:
    assert issubclass(PolicyError, ConfigError)
    assert PolicyError.exit_code == 1


def test_unknown_top_level_key_is_refused() -> None:
    refused(edit(LEVEL_2, "level = 2\n", "level = 2\nlevle = 3\n"), "unknown key", "levle")


def test_unknown_requirement_key_is_refused_naming_the_requirement() -> None:
    refused(edit(LEVEL_2, "mandatory = true\n", "mandatory = true\nseverity = 'high'\n"),
            "CUR-L2-AUTH-01", "unknown key", "severity")


def test_unknown_key_in_a_localised_text_is_refused() -> None:
    refused(edit(LEVEL_2, 'en = "Lockout" }', 'en = "Lockout", fr = "Verrouillage" }'),
            "CUR-L2-AUTH-01", "fr")


def test_requirement_without_a_source_is_refused() -> None:
    text = edit(LEVEL_2, 'source = "Decree 331/2026/NĐ-CP, login management"\n', "")
    refused(text, "CUR-L2-AUTH-01", "no source")


def test_requirement_with_an_empty_source_is_refused() -> None:
    text = edit(LEVEL_2, '"Decree 331/2026/NĐ-CP, login management"', '"  "')
    refused(text, "CUR-L2-AUTH-01", "source must not be empty")


def test_unknown_check_is_refused_naming_it() -> None:
    message = refused(edit(LEVEL_2, '"login_lockout"', '"login_lockuot"'), "CUR-L2-AUTH-01",
                      "unknown check", "login_lockuot")
    assert "login_lockout" in message  # the known checks are listed


def test_unknown_check_parameter_is_refused() -> None:
    refused(edit(LEVEL_2, "max_failures = 5", "max_failures = 5, min_failures = 1"),
            "CUR-L2-AUTH-01", "unknown parameter", "min_failures")


def test_missing_required_check_parameter_is_refused() -> None:
    refused(edit(LEVEL_2, "params = { max_failures = 5 }\n", ""), "CUR-L2-AUTH-01",
            "needs the parameter max_failures")


@pytest.mark.parametrize(("old", "new", "needle"), [
    ("max_failures = 5", 'max_failures = "5"', "parameter max_failures must be a whole number"),
    ("max_failures = 5", "max_failures = true", "parameter max_failures must be a whole number"),
    ("max_failures = 5", "max_failures = 5.0", "parameter max_failures must be a whole number"),
    ("max_failures = 5", "max_failures = -1", "must not be negative"),
    ("mandatory = true\ncheck", 'mandatory = "yes"\ncheck', "mandatory must be true or false"),
    ("mandatory = true\ncheck", "mandatory = 1\ncheck", "mandatory must be true or false"),
    ("level = 2", 'level = "2"', "level must be a whole number"),
    ("level = 2", "level = 6", "level must be 1 to 5"),
    ('regime = "current"', 'regime = "future"', "regime must be one of"),
    ("in_force = 2026-07-01", 'in_force = "2026-07-01"', "in_force must be a date"),
    ("in_force = 2026-07-01", "in_force = 2026-07-01T00:00:00Z", "in_force must be a date"),
    ('documents = ["Decree 331/2026/NĐ-CP"]', 'documents = "Decree 331"', "documents must be"),
    ('title = { vi = "Cấp độ 2", en = "Level 2" }', 'title = "Cấp độ 2"', "title must be a table"),
    ('title = { vi = "Cấp độ 2", en = "Level 2" }', 'title = { vi = "Cấp độ 2" }', "en is missing"),
])
def test_wrong_types_and_values_are_refused(old: str, new: str, needle: str) -> None:
    refused(edit(LEVEL_2, old, new), needle)


def test_invalid_toml_is_refused() -> None:
    refused("regime = = 'current'", "not valid TOML")


@pytest.mark.parametrize("bad_id", ["CUR-L3-AUTH-01", "LEG-L2-AUTH-01", "CUR-L2-AUTH-1",
                                    "cur-l2-auth-01", "CUR-L2-FOO-01"])
def test_id_must_name_the_files_regime_level_and_a_known_area(bad_id: str) -> None:
    refused(edit(LEVEL_2, '"CUR-L2-AUTH-01"', f'"{bad_id}"'), bad_id)


def test_duplicate_id_in_a_file_is_refused() -> None:
    refused(edit(LEVEL_2, 'id = "CUR-L2-GOV-01"', 'id = "CUR-L2-AUTH-01"'), "CUR-L2-AUTH-01",
            "duplicate id")


def test_requirement_needs_a_check_or_an_evidence_file() -> None:
    text = edit(LEVEL_2, 'check = "login_lockout"\nparams = { max_failures = 5 }\n', "")
    refused(text, "CUR-L2-AUTH-01", "needs a check")


def test_evidence_needs_a_description_and_a_plain_file_name() -> None:
    no_description = edit(LEVEL_2, 'evidence_description = { vi = "Chính sách đã ban hành", '
                                   'en = "The issued policy" }\n', "")
    refused(no_description, "CUR-L2-GOV-01", "evidence_description")
    refused(edit(LEVEL_2, '"security-policy"', '"../etc/passwd"'), "CUR-L2-GOV-01",
            "plain file name")


def test_params_without_a_check_are_refused() -> None:
    text = edit(LEVEL_2, 'evidence = "security-policy"', 'params = { x = 1 }\nevidence = "security-policy"')
    refused(text, "CUR-L2-GOV-01", "params belong to a check")


def test_extends_inherits_replaces_and_adds(tmp_path: Path) -> None:
    catalogue = load_levels(write(tmp_path, current_2=LEVEL_2, current_3=LEVEL_3))
    level3 = catalogue.get("current", 3)
    ids = [r.id for r in level3.requirements]
    assert sorted(ids) == ["CUR-L2-GOV-01", "CUR-L3-AUTH-01", "CUR-L3-LOG-01"]
    assert dict(level3.requirement("CUR-L3-AUTH-01").params) == {"max_failures": 3}
    assert level3.in_force == dt.date(2026, 7, 1)  # inherited
    assert level3.documents == ("Decree 331/2026/NĐ-CP",)
    req, levels = catalogue.find("cur-l2-gov-01")
    assert req.id == "CUR-L2-GOV-01"
    assert [lv.name for lv in levels] == ["current-2", "current-3"]


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    cyclic = edit(LEVEL_2, "level = 2\n", 'level = 2\nextends = "current-3"\n')
    with pytest.raises(PolicyError, match=r"extends cycle: current-[23] → current-[23] → "
                                          r"current-[23]"):
        load_levels(write(tmp_path, current_2=cyclic, current_3=LEVEL_3))


def test_extending_itself_is_a_cycle(tmp_path: Path) -> None:
    selfish = edit(LEVEL_2, "level = 2\n", 'level = 2\nextends = "current-2"\n')
    with pytest.raises(PolicyError, match="extends cycle: current-2 → current-2"):
        load_levels(write(tmp_path, current_2=selfish))


def test_extends_of_a_missing_level_or_another_regime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="extends 'current-2', which is not a level file"):
        load_levels(write(tmp_path / "a", current_3=LEVEL_3))
    legacy = LEVEL_2.replace('"current"', '"legacy"').replace("CUR-", "LEG-")
    other = edit(LEVEL_3, '"current-2"', '"legacy-2"')
    with pytest.raises(PolicyError, match="a level of another regime"):
        load_levels(write(tmp_path / "b", legacy_2=legacy, current_3=other))


def test_replacing_what_is_not_inherited_is_refused(tmp_path: Path) -> None:
    text = edit(LEVEL_3, 'replaces = "CUR-L2-AUTH-01"', 'replaces = "CUR-L2-AUTH-09"')
    with pytest.raises(PolicyError, match="CUR-L3-AUTH-01: replaces CUR-L2-AUTH-09, which this "
                                          "level does not inherit"):
        load_levels(write(tmp_path, current_2=LEVEL_2, current_3=text))


def test_replacing_twice_is_refused(tmp_path: Path) -> None:
    text = edit(LEVEL_3, 'id = "CUR-L3-LOG-01"', 'id = "CUR-L3-LOG-01"\nreplaces = "CUR-L2-AUTH-01"')
    with pytest.raises(PolicyError, match="already replaced"):
        load_levels(write(tmp_path, current_2=LEVEL_2, current_3=text))


def test_file_name_must_match_regime_and_level(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"need the file name current-2\.toml"):
        load_levels(write(tmp_path, current_4=LEVEL_2))


def test_unreadable_level_file_is_a_policy_error(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "current-2.toml").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(PolicyError, match="cannot read level file"):
        load_levels(tmp_path)


def test_unknown_level_is_a_clear_error(tmp_path: Path) -> None:
    catalogue = load_levels(write(tmp_path, current_2=LEVEL_2))
    with pytest.raises(PolicyError, match="no security level legacy-2; known: current-2"):
        catalogue.get("legacy", 2)
    with pytest.raises(PolicyError, match="no requirement 'CUR-L9-X-01'"):
        catalogue.find("CUR-L9-X-01")


def test_status_labels_in_both_languages() -> None:
    assert [s.label("vi") for s in Status] == ["Đạt", "Chưa đạt", "Một phần", "Cần bằng chứng"]
    assert [s.label("en") for s in Status] == ["Met", "Not met", "Partly met", "Evidence needed"]
