"""Password policies (vneid-compat, nist-aal2) and argon2id hashing."""

from __future__ import annotations

import unicodedata
from collections import Counter
from importlib import resources
from typing import Any

import argon2
import pytest

from kyso.authn import passwords
from kyso.authn.passwords import (
    COMMON_PASSWORDS_FILE,
    NIST_AAL2,
    OWASP,
    RFC9106_LOW_MEMORY,
    TEST_FAST,
    VNEID_COMPAT,
    HashParams,
    PasswordHasher,
    PolicyRule,
    blocklist,
    check_password,
    hash_params,
    password_policy,
    require_password_policy,
)
from kyso.errors import AuthenticationFailedError, ConfigError, PasswordPolicyError

CITIZEN_ID = "033301000123"
PHONE = "0912345678"
NAME = "Trần Thị Bình"
CONTEXT = (CITIZEN_ID, PHONE, NAME)
VIETNAMESE = "Sông Hồng chảy về biển Đông"
STRONG_COMPAT = "Xk9#mQ2$vT"


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(TEST_FAST)


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count argon2's own hash and verify calls (a spy, not a stopwatch)."""
    calls: Counter[str] = Counter()
    real_verify, real_hash = argon2.PasswordHasher.verify, argon2.PasswordHasher.hash

    def verify(self: argon2.PasswordHasher, hash: Any, password: Any) -> Any:
        calls["verify"] += 1
        return real_verify(self, hash, password)

    def hash_(self: argon2.PasswordHasher, password: Any, **kwargs: Any) -> Any:
        calls["hash"] += 1
        return real_hash(self, password, **kwargs)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    monkeypatch.setattr(argon2.PasswordHasher, "hash", hash_)
    return calls


def rules(password: str, policy: str = "nist-aal2", **kwargs: Any) -> set[PolicyRule]:
    return set(check_password(password, policy, **kwargs).violations)


# -- vneid-compat ------------------------------------------------------------------------


def test_vneid_compat_accepts_eight_to_twenty_characters_with_every_class() -> None:
    assert check_password(STRONG_COMPAT, VNEID_COMPAT).ok
    assert check_password("Ab1#wxyz", VNEID_COMPAT).ok
    assert check_password("Ab1#" + "wxyzpqrs" + "tuvwklmn", VNEID_COMPAT).ok  # 20


@pytest.mark.parametrize(("password", "rule"), [
    ("Xk#mQ$vTzz", PolicyRule.DIGIT),
    ("xk9#mq2$vt", PolicyRule.UPPER),
    ("XK9#MQ2$VT", PolicyRule.LOWER),
    ("Xk9mQ2vTzw", PolicyRule.SPECIAL),
    ("Xk9#mQ2", PolicyRule.MIN_LENGTH),
    ("Xk9#mQ2$vT" * 2 + "a", PolicyRule.MAX_LENGTH),
])
def test_vneid_compat_names_the_rule_a_password_breaks(password: str, rule: PolicyRule) -> None:
    assert rules(password, "vneid-compat") == {rule}


def test_vneid_compat_still_refuses_common_passwords_that_meet_the_composition_rule() -> None:
    assert PolicyRule.BLOCKLIST in rules("Matkhau@123", "vneid-compat")
    assert PolicyRule.BLOCKLIST in rules("P@ssw0rd123", "vneid-compat")


# -- nist-aal2 ---------------------------------------------------------------------------


def test_nist_refuses_fewer_than_eight_characters_and_reports_below_fifteen() -> None:
    assert rules("xk9mq2v") == {PolicyRule.MIN_LENGTH}
    eight = check_password("xk9mq2vt")
    assert eight.ok
    assert eight.below_recommended
    assert not check_password("xk9mq2vt-lwp-rz").below_recommended  # 15


def test_nist_has_no_composition_rules() -> None:
    assert check_password("correct horse battery staple").ok
    assert check_password("zq9x7k2m").ok


def test_nist_accepts_vietnamese_with_diacritics() -> None:
    assert check_password(VIETNAMESE, NIST_AAL2, context=CONTEXT).ok
    assert check_password("Đồng hồ chạy nhanh quá").ok


def test_nist_allows_at_least_64_characters_up_to_128() -> None:
    passphrase = "gió mùa đông bắc tràn về " * 6  # 150 characters
    assert check_password(passphrase[:64]).ok
    assert check_password(passphrase[:128]).ok
    assert rules(passphrase[:129]) == {PolicyRule.MAX_LENGTH}
    assert rules("x" * 5000) == {PolicyRule.MAX_LENGTH}  # not even normalised


def test_length_counts_code_points_of_the_nfkc_form() -> None:
    decomposed = unicodedata.normalize("NFD", "mật khẩu")  # 8 code points composed
    assert len(decomposed) > 8
    assert check_password(decomposed + "!").length == check_password("mật khẩu!").length == 9


@pytest.mark.parametrize("password", [
    "password", "iloveyou", "P@ssw0rd123", "Password2024!", "MẬT KHẨU 123", "anhyeuem",
    "ＰＡＳＳＷＯＲＤ", "qwertyuiop", "1q2w3e4r5t", "hanoi@2024", "88888888",
])
def test_nist_refuses_blocklisted_passwords_with_case_diacritics_spaces_and_leet(
        password: str) -> None:
    assert PolicyRule.BLOCKLIST in rules(password)


def _common_passwords() -> list[str]:
    """The shipped data file's entries, most common first (read here, not through the code)."""
    text = resources.files("kyso.authn").joinpath("data", COMMON_PASSWORDS_FILE).read_text("utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_blocklist_holds_at_least_ten_thousand_common_passwords() -> None:
    common = _common_passwords()
    assert len(common) >= 10_000
    assert len(set(common)) == len(common)
    assert set(common) <= blocklist()
    assert len(blocklist()) >= 10_000
    assert {"matkhau123", "anhyeuem", "vneid123"} <= blocklist()  # kyso's own list stays


def test_the_common_passwords_file_is_folded_and_carries_its_licence() -> None:
    common = _common_passwords()
    assert all(passwords._fold(w) == w for w in common)  # no folding is needed at load time
    text = resources.files("kyso.authn").joinpath("data", COMMON_PASSWORDS_FILE).read_text("utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("zxcvbn" in line for line in header)
    assert "# MIT License" in header
    assert any("Permission is hereby granted" in line for line in header)


def test_the_blocklist_is_read_once() -> None:
    assert blocklist() is blocklist()


@pytest.mark.parametrize(("password", "core"), [
    ("jellybean", "jellybean"), ("Nightwish", "nightwish"), ("Skateboard2024!", "skateboard")])
def test_nist_refuses_a_mid_frequency_common_password_the_old_list_lacked(
        password: str, core: str) -> None:
    common = _common_passwords()
    assert 1000 < common.index(core) < 10_000  # neither a top-1000 password nor a rarity
    assert core not in passwords._BLOCKLIST_TEXT.split()  # not one of the old 377
    assert rules(password) == {PolicyRule.BLOCKLIST}
    with pytest.raises(PasswordPolicyError) as caught:
        require_password_policy(password, "nist-aal2")
    message = str(caught.value)
    assert "blocklist (a commonly used password)" in message
    assert password not in message


def test_vneid_compat_refuses_a_common_password_that_meets_the_composition_rule() -> None:
    assert rules("Skateboard1!", "vneid-compat") == {PolicyRule.BLOCKLIST}


@pytest.mark.parametrize("password", [
    "correct horse battery staple", "purple-otter-drives-slowly", "tre xanh bên lũy làng",
    "Phở bò tái nạm gầu gân 2026", VIETNAMESE, "xk9mq2vt-lwp-rz",
])
def test_strong_passphrases_are_not_on_the_larger_blocklist(password: str) -> None:
    assert check_password(password, NIST_AAL2, context=CONTEXT).ok


@pytest.mark.parametrize("password", [
    "aaaaaaaa", "zzzzzzzzzz!!", "12345678", "87654321", "78901234", "abcdefgh", "hgfedcba",
    "abcabcabc", "12121212", "qwertyui", "ăăăăăăăă", "lkjhgfds",
])
def test_nist_refuses_repeats_and_sequences(password: str) -> None:
    assert PolicyRule.PATTERN in rules(password)


@pytest.mark.parametrize("password", [
    CITIZEN_ID, f"{CITIZEN_ID}ab", "0912345678!", "+84912345678", "Binh@1999", "TranThiBinh",
    "trần thị bình 12", "vneid123456", "vneid12345678", "kyso-kyso-kyso", "000123xyz",
])
def test_nist_refuses_passwords_made_of_context_words(password: str) -> None:
    assert PolicyRule.CONTEXT in rules(password, context=CONTEXT)


def test_context_words_inside_a_long_passphrase_are_fine() -> None:
    assert check_password("binh thích đi dạo ven hồ Gươm", context=CONTEXT).ok
    assert check_password("my vneid passphrase is long", context=CONTEXT).ok


def test_short_name_parts_are_not_context_words() -> None:
    assert check_password("an toàn là bạn", context=["Nguyễn Văn An"]).ok


def test_control_characters_are_refused() -> None:
    assert PolicyRule.CHARACTERS in rules("xk9mq2vt\x00zz")


def test_policy_error_names_the_rule_and_never_the_password() -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        require_password_policy("Binh@99", "nist-aal2", context=CONTEXT)
    message = str(caught.value)
    assert "nist-aal2" in message
    assert "min-length" in message
    assert "at least 8" in message
    assert "Binh@99" not in message


def test_report_never_holds_the_password() -> None:
    report = check_password("hunter2hunter2", context=CONTEXT)
    assert "hunter2" not in repr(report)
    assert "hunter2" not in str(report.to_dict())
    assert report.to_dict()["policy"] == "nist-aal2"


def test_require_returns_the_report_when_the_password_is_acceptable() -> None:
    assert require_password_policy(VIETNAMESE, "nist-aal2").ok


def test_unknown_policy_names_are_refused() -> None:
    assert password_policy("vneid-compat") is VNEID_COMPAT
    with pytest.raises(ConfigError, match="unknown password policy"):
        check_password("whatever-it-is", "nist-aal1")


# -- hashing -----------------------------------------------------------------------------


def test_the_default_parameters_are_owasps_argon2id() -> None:
    assert (OWASP.time_cost, OWASP.memory_kib, OWASP.parallelism) == (2, 19 * 1024, 1)
    assert (RFC9106_LOW_MEMORY.time_cost, RFC9106_LOW_MEMORY.memory_kib,
            RFC9106_LOW_MEMORY.parallelism) == (3, 64 * 1024, 4)
    params = argon2.extract_parameters(PasswordHasher().hash(VIETNAMESE))
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 19456, 1)


def test_hash_settings_are_looked_up_by_name() -> None:
    assert hash_params("test-fast") is TEST_FAST
    with pytest.raises(ConfigError, match="unknown password hash"):
        hash_params("md5")
    with pytest.raises(ConfigError):
        HashParams("silly", time_cost=0, memory_kib=64, parallelism=1)


def test_a_hash_is_argon2id_salted_and_verifies(hasher: PasswordHasher) -> None:
    first, second = hasher.hash(VIETNAMESE), hasher.hash(VIETNAMESE)
    assert first.startswith("$argon2id$")
    assert first != second
    assert VIETNAMESE not in first
    assert not hasher.verify(first, VIETNAMESE).needs_rehash


def test_a_wrong_password_and_an_unknown_account_fail_alike(hasher: PasswordHasher) -> None:
    stored = hasher.hash(VIETNAMESE)
    with pytest.raises(AuthenticationFailedError) as wrong:
        hasher.verify(stored, "Sông Hồng chảy về biển Tây")
    with pytest.raises(AuthenticationFailedError) as unknown:
        hasher.verify(None, VIETNAMESE)
    assert str(wrong.value) == str(unknown.value) == "invalid credentials"


@pytest.mark.parametrize("case", ["right", "wrong", "unknown", "malformed-hash", "huge-input"])
def test_every_verification_runs_argon2_exactly_once(
        case: str, argon2_calls: Counter[str]) -> None:
    hasher = PasswordHasher(TEST_FAST)
    stored: str | None = hasher.hash(VIETNAMESE)
    password = VIETNAMESE
    if case == "wrong":
        password = "not the password"
    elif case == "unknown":
        stored = None
    elif case == "malformed-hash":
        stored = "$argon2id$v=19$garbage"
    elif case == "huge-input":
        password = "x" * 100_000
    argon2_calls.clear()
    try:
        hasher.verify(stored, password)
    except AuthenticationFailedError:
        assert case != "right"
    else:
        assert case == "right"
    assert argon2_calls == {"verify": 1}  # and no hash: the dummy was made up front


def test_the_dummy_hash_is_made_once_per_hasher(argon2_calls: Counter[str]) -> None:
    hasher = PasswordHasher(TEST_FAST)
    assert argon2_calls["hash"] == 1
    for _ in range(3):
        with pytest.raises(AuthenticationFailedError):
            hasher.verify(None, VIETNAMESE)
    assert argon2_calls == {"hash": 1, "verify": 3}


def test_a_hash_with_old_parameters_is_replaced_after_a_good_login() -> None:
    old = PasswordHasher(TEST_FAST).hash(VIETNAMESE)
    stronger = PasswordHasher(HashParams("stronger", time_cost=2, memory_kib=128, parallelism=1))
    assert stronger.needs_rehash(old)
    match = stronger.verify(old, VIETNAMESE)
    assert match.needs_rehash
    assert match.new_hash is not None
    assert argon2.extract_parameters(match.new_hash).memory_cost == 128
    assert not stronger.verify(match.new_hash, VIETNAMESE).needs_rehash
    with pytest.raises(AuthenticationFailedError):
        stronger.verify(old, "a wrong guess gets no new hash")


def test_nfkc_equivalent_passwords_verify(hasher: PasswordHasher) -> None:
    stored = hasher.hash(unicodedata.normalize("NFC", VIETNAMESE))
    assert hasher.verify(stored, unicodedata.normalize("NFD", VIETNAMESE))
    ascii_stored = hasher.hash("Xk9#mQ2$vT")
    assert hasher.verify(ascii_stored, "Ｘｋ９＃ｍＱ２＄ｖＴ")  # typed full-width


def test_hashing_refuses_absurdly_long_input(hasher: PasswordHasher) -> None:
    with pytest.raises(PasswordPolicyError, match="longer than"):
        hasher.hash("x" * 5000)
