"""Passwords: two named policies and argon2id hashing.

Policies (a check returns a :class:`PasswordReport`; :func:`require_password_policy` raises a
:class:`PasswordPolicyError` naming the rules, never the password):

- ``vneid-compat`` — what the VNeID app asks at activation: 8–20 characters with a digit, an
  upper-case letter, a lower-case letter and a special character. kyso also refuses common
  passwords, trivial patterns and context words here (VNeID says nothing against that, and
  ``Matkhau@123`` passes its composition rule).
- ``nist-aal2`` — NIST SP 800-63B-4 for a password used with a second factor: at least 8
  characters (15 recommended, reported), up to 128, any Unicode, no composition rules; refused
  when on the blocklist, repetitive or sequential, or made of context words (the service, the
  user's ID number, phone and name parts).

The blocklist (:func:`blocklist`, both policies) is the 30,000 most common passwords of
zxcvbn's frequency list (MIT; ``kyso/authn/data/common-passwords.txt``, attribution in its
header) plus kyso's own Vietnamese favourites, read once on first use into a frozenset. A
password is on it when its folded form (case, diacritics and spaces removed), its leet reading,
or its core without leading and trailing digits and symbols is.

Every password is NFKC-normalised before it is checked or hashed, and length counts code
points of that form, so a Vietnamese password typed composed or decomposed, or digits typed
full-width, verify the same.

Hashing: argon2id with OWASP's parameters by default (m = 19 MiB, t = 2, p = 1); RFC 9106's
second recommendation (m = 64 MiB, t = 3, p = 4) is available, and a deliberately weak setting
for test suites. A login for an unknown account runs one argon2 verification against a dummy
hash made once, exactly like a known account's; a hash made with other parameters is replaced
after a successful login (:attr:`PasswordMatch.new_hash`).
"""

from __future__ import annotations

import functools
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from itertools import pairwise
from typing import Any

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from kyso.authn.lockout import INVALID_CREDENTIALS
from kyso.errors import AuthenticationFailedError, ConfigError, PasswordPolicyError
from kyso.pki.identifiers import ascii_fold

# Longer input is refused without being normalised (a cheap guard against huge bodies).
MAX_INPUT_CHARS = 1024


@dataclass(frozen=True)
class HashParams:
    """argon2id cost parameters (memory in KiB)."""

    name: str
    time_cost: int
    memory_kib: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1 or self.memory_kib < 8 * self.parallelism:
            raise ConfigError(f"argon2 parameters {self.name!r} are out of range")


# OWASP Password Storage Cheat Sheet, first argon2id line: 19 MiB, 2 passes, 1 lane.
OWASP = HashParams("owasp", time_cost=2, memory_kib=19 * 1024, parallelism=1)
# RFC 9106 §4, second recommended option (for memory-constrained environments).
RFC9106_LOW_MEMORY = HashParams("rfc9106-low-memory", time_cost=3, memory_kib=64 * 1024,
                                parallelism=4)
# Test suites only: about a thousand times cheaper than OWASP. Never for real passwords.
TEST_FAST = HashParams("test-fast", time_cost=1, memory_kib=64, parallelism=1)
HASH_PARAMS = {p.name: p for p in (OWASP, RFC9106_LOW_MEMORY, TEST_FAST)}


def hash_params(name: str) -> HashParams:
    try:
        return HASH_PARAMS[name]
    except KeyError:
        raise ConfigError(f"unknown password hash setting {name!r}: use one of "
                          f"{', '.join(HASH_PARAMS)}") from None


def normalise(password: str) -> str:
    """The form that is checked and hashed (NFKC, as NIST SP 800-63B-4 recommends)."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class PasswordMatch:
    """A password verified. ``new_hash`` is set when the stored hash used other parameters:
    the caller stores it in place of the old one."""

    new_hash: str | None = None

    @property
    def needs_rehash(self) -> bool:
        return self.new_hash is not None


class PasswordHasher:
    """argon2id hashing and uniform, constant-time verification."""

    def __init__(self, params: HashParams = OWASP) -> None:
        self.params = params
        self._argon2 = argon2.PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_kib,
            parallelism=params.parallelism, hash_len=params.hash_len, salt_len=params.salt_len,
            type=argon2.Type.ID)
        # Made once, so that an unknown account costs one verification, like a known one.
        self._dummy = self._argon2.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        """The PHC string of the normalised password (check the policy first)."""
        if len(password) > MAX_INPUT_CHARS:
            raise PasswordPolicyError(f"password is longer than {MAX_INPUT_CHARS} characters")
        return self._argon2.hash(normalise(password))

    def needs_rehash(self, stored: str) -> bool:
        return self._argon2.check_needs_rehash(stored)

    def verify(self, stored: str | None, password: str) -> PasswordMatch:
        """Verify ``password`` against ``stored`` (``None``: the account does not exist).

        Exactly one argon2 verification runs whatever happens — unknown account, malformed
        hash, over-long input — and every failure raises the same
        :class:`AuthenticationFailedError`.
        """
        candidate = normalise(password) if len(password) <= MAX_INPUT_CHARS else None
        target = stored if stored is not None and _looks_like_argon2(stored) else self._dummy
        try:
            self._argon2.verify(target, candidate if candidate is not None else "")
            matched = True
        except (VerificationError, InvalidHashError):
            matched = False
        if not matched or target is self._dummy or candidate is None:
            raise AuthenticationFailedError(INVALID_CREDENTIALS)
        if self._argon2.check_needs_rehash(target):
            return PasswordMatch(new_hash=self._argon2.hash(candidate))
        return PasswordMatch()


def _looks_like_argon2(stored: str) -> bool:
    try:
        argon2.extract_parameters(stored)
    except (InvalidHashError, ValueError):
        return False
    return True


# -- policies ---------------------------------------------------------------------------


class PolicyRule(StrEnum):
    MIN_LENGTH = "min-length"
    MAX_LENGTH = "max-length"
    CHARACTERS = "characters"  # control, surrogate or unassigned code points
    DIGIT = "digit"
    UPPER = "upper"
    LOWER = "lower"
    SPECIAL = "special"
    BLOCKLIST = "blocklist"
    PATTERN = "repetitive-or-sequential"
    CONTEXT = "context-words"


@dataclass(frozen=True)
class PasswordPolicy:
    name: str
    min_length: int
    max_length: int
    recommended_length: int
    composition: bool  # digit, upper, lower and special required
    blocklist: bool = True
    patterns: bool = True
    context: bool = True


VNEID_COMPAT = PasswordPolicy("vneid-compat", min_length=8, max_length=20, recommended_length=8,
                              composition=True)
NIST_AAL2 = PasswordPolicy("nist-aal2", min_length=8, max_length=128, recommended_length=15,
                           composition=False)
POLICIES = {p.name: p for p in (VNEID_COMPAT, NIST_AAL2)}


def password_policy(name: str) -> PasswordPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown password policy {name!r}: use one of "
                          f"{', '.join(POLICIES)}") from None


@dataclass(frozen=True)
class PasswordReport:
    """The outcome of a policy check. It never holds the password."""

    policy: str
    length: int  # code points of the NFKC form
    violations: tuple[PolicyRule, ...]
    below_recommended: bool  # acceptable, but shorter than the policy recommends

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "ok": self.ok, "length": self.length,
                "violations": [v.value for v in self.violations],
                "below_recommended": self.below_recommended}


def check_password(password: str, policy: PasswordPolicy | str = NIST_AAL2, *,
                   context: Iterable[str] = ()) -> PasswordReport:
    """Check a new password against a policy. ``context``: the user's ID number, phone, name
    and anything else a guesser would try first."""
    if isinstance(policy, str):
        policy = password_policy(policy)
    if len(password) > MAX_INPUT_CHARS:
        return PasswordReport(policy.name, len(password), (PolicyRule.MAX_LENGTH,), False)
    text = normalise(password)
    length = len(text)
    found: list[PolicyRule] = []
    if length < policy.min_length:
        found.append(PolicyRule.MIN_LENGTH)
    if length > policy.max_length:
        found.append(PolicyRule.MAX_LENGTH)
    if any(unicodedata.category(c) in ("Cc", "Cs", "Cn") for c in text):
        found.append(PolicyRule.CHARACTERS)
    if policy.composition:
        if not any(c in "0123456789" for c in text):
            found.append(PolicyRule.DIGIT)
        if not any(c.isupper() for c in text):
            found.append(PolicyRule.UPPER)
        if not any(c.islower() for c in text):
            found.append(PolicyRule.LOWER)
        if not any(not c.isalnum() and not c.isspace() for c in text):
            found.append(PolicyRule.SPECIAL)
    folded = _fold(text)
    if policy.blocklist and _blocklisted(folded):
        found.append(PolicyRule.BLOCKLIST)
    if policy.patterns and _trivial(folded):
        found.append(PolicyRule.PATTERN)
    if policy.context and _from_context(folded, context, policy.min_length):
        found.append(PolicyRule.CONTEXT)
    return PasswordReport(policy.name, length, tuple(found),
                          below_recommended=length < policy.recommended_length)


def require_password_policy(password: str, policy: PasswordPolicy | str = NIST_AAL2, *,
                            context: Iterable[str] = ()) -> PasswordReport:
    """Like :func:`check_password`, but raise :class:`PasswordPolicyError` naming the rules."""
    report = check_password(password, policy, context=context)
    if not report.ok:
        rules = "; ".join(f"{v.value} ({_RULE_TEXT[v].format(p=_policy(policy))})"
                          for v in report.violations)
        raise PasswordPolicyError(f"password does not meet policy {report.policy}: {rules}")
    return report


def _policy(policy: PasswordPolicy | str) -> PasswordPolicy:
    return password_policy(policy) if isinstance(policy, str) else policy


_RULE_TEXT = {
    PolicyRule.MIN_LENGTH: "at least {p.min_length} characters",
    PolicyRule.MAX_LENGTH: "at most {p.max_length} characters",
    PolicyRule.CHARACTERS: "no control or unassigned characters",
    PolicyRule.DIGIT: "needs a digit",
    PolicyRule.UPPER: "needs an upper-case letter",
    PolicyRule.LOWER: "needs a lower-case letter",
    PolicyRule.SPECIAL: "needs a special character",
    PolicyRule.BLOCKLIST: "a commonly used password",
    PolicyRule.PATTERN: "repeated or sequential characters",
    PolicyRule.CONTEXT: "made of the service's name or the user's own data",
}


def _fold(text: str) -> str:
    """Case, diacritics and spaces removed: ``Mật Khẩu`` → ``matkhau``."""
    return re.sub(r"\s+", "", ascii_fold(text.casefold()))


_LEET = str.maketrans("@4$5301!|7", "aasseoiilt")


def _stem(folded: str) -> str:
    """Without leading and trailing digits and symbols: ``!!password2024`` → ``password``."""
    start, end = 0, len(folded)
    while start < end and not folded[start].isalpha():
        start += 1
    while end > start and not folded[end - 1].isalpha():
        end -= 1
    return folded[start:end]


def _blocklisted(folded: str) -> bool:
    stem = _stem(folded)
    candidates = {folded, folded.translate(_LEET)}
    if len(stem) >= 4:
        candidates |= {stem, stem.translate(_LEET)}
    return not candidates.isdisjoint(blocklist())


_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qazwsxedcrfvtgbyhnujmikolp")


def _trivial(folded: str) -> bool:
    """Repeats (``aaaaaaaa``, ``abcabcab``), runs (``12345678``, ``hgfedcba``, ``78901234``),
    keyboard rows (``qwertyui``) — whole, or with only digits and symbols around them."""
    stem = _stem(folded)
    return any(_trivial_run(s) for s in {folded, stem} if len(s) >= 4)


def _trivial_run(s: str) -> bool:
    for period in range(1, 5):
        if len(s) >= 2 * period and s == (s[:period] * len(s))[:len(s)]:
            return True
    steps = {ord(b) - ord(a) for a, b in pairwise(s)}
    if steps in ({1}, {-1}):
        return True
    if s.isdigit() and {(int(b) - int(a)) % 10 for a, b in pairwise(s)} in ({1}, {9}):
        return True
    return any(s in row or s in row[::-1] for row in _KEYBOARD_ROWS)


SERVICE_WORDS = ("vneid", "kyso", "dichvucong", "matkhau", "password", "cancuoc", "dinhdanh")


def _context_tokens(context: Iterable[str]) -> set[str]:
    tokens = set(SERVICE_WORDS)
    for value in context:
        spaced = ascii_fold(normalise(value).casefold())
        digits = re.sub(r"\D", "", spaced)
        if len(digits) >= 6 and digits == re.sub(r"[\s+().-]", "", spaced):
            # An ID number or phone: the whole number, the national forms, the last six.
            national = re.sub(r"^(84|0)", "", digits)
            tokens |= {digits, national, "0" + national, "84" + national, digits[-6:]}
            continue
        parts = [p for p in re.split(r"[\W_]+", spaced) if p]
        tokens |= {p for p in parts if len(p) >= 3}
        if len(parts) > 1:
            tokens.add("".join(parts))
    return tokens


def _from_context(folded: str, context: Iterable[str], min_length: int) -> bool:
    """True when what is left after removing the context words is too short or trivial."""
    rest = folded
    for token in sorted(_context_tokens(context), key=len, reverse=True):
        rest = rest.replace(token, "")
    if rest == folded:
        return False
    return len(rest) < min_length or _blocklisted(rest) or _trivial(rest)


# kyso's own part of the blocklist: passwords common in Vietnam and words of the service, with
# the most common passwords of public breach-frequency lists it started with (lower-case forms;
# checks fold case, diacritics, spaces and leet). The bulk comes from COMMON_PASSWORDS_FILE.
_BLOCKLIST_TEXT = """
123456 1234567 12345678 123456789 1234567890 0123456789 01234567 987654321 9876543210 87654321
111111 1111111 11111111 000000 0000000 00000000 22222222 33333333 44444444 55555555 66666666
77777777 88888888 99999999 121212 12121212 123123 123123123 12341234 123321 112233 11223344
123654 123654789 147258 147258369 159357 159753 258456 321321 456456 456789 654321 666666
696969 789456 789456123 131313 142536 102030 10203040 11112222 12344321 12345612 1234512345
123456a 123456aa 123456abc 123456q a123456 aa123456 abc123 abc12345 abc123456 abcd1234
abcdef abcdefg abcdefgh abcd abc 1qaz2wsx 1qazxsw2 zaq12wsx zaq1xsw2 qazwsx qazwsxedc 1q2w3e
1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y q1w2e3r4 q1w2e3r4t5 qwe123 123qwe qweasd qweasdzxc qwerty
qwerty1 qwerty12 qwerty123 qwerty1234 qwertyui qwertyuiop asdf asdf1234 asdfgh asdfghjk
asdfghjkl zxcv zxcvbn zxcvbnm zxcvbnm123 1234qwer qwer1234 password password1 password12
password123 password1234 passw0rd pass pass123 pass1234 passpass passwd mypassword newpassword
changeme default welcome welcome1 welcome123 letmein letmein123 login admin admin123 admin1234
administrator root toor guest user test test123 testing secret secret123 access master
iloveyou iloveu iloveyou1 iloveyou2 loveyou lovely loveme love princess dragon monkey shadow
sunshine superman batman spiderman starwars football baseball basketball soccer hockey
killer hunter ranger buster tigger charlie michael jordan jordan23 ashley jessica michelle
jennifer daniel thomas robert andrew george joshua maggie pepper ginger cookie cheese summer
winter flower freedom whatever trustno1 hello hello123 hellokitty computer internet samsung
google facebook youtube yahoo microsoft apple iphone android nokia minecraft pokemon naruto
superstar blink182 liverpool chelsea arsenal manchester manutd barcelona realmadrid juventus
ronaldo messi cr7 mustang ferrari porsche mercedes corvette harley matrix zxcvasdf qwertyasdf
aaaaaa aaaaaaaa abcabc abc123abc qazxsw 7777777 999999 888888 555555 333333 222222 010203
matkhau matkhau1 matkhau12 matkhau123 matkhau1234 matkhaumoi matkhaucu mk123456 mkmoi
anhyeuem emyeuanh yeuem yeuanh anhiuem emiuanh iuem iuanh yeuemnhieu anhyeuemnhieu
emyeuanhnhieu maimaiyeuem yeuemmaimai muonnamyeuem tinhyeu tinhyeu123 tinhyeumaimai
hanhphuc thanhcong giadinh giadinh123 giadinhlatatca bome bame mebo boyeu meyeu conyeu
chongyeu voyeu vochong baby babyoi cuncon cuncung cungcon meo meomeo vietnam vietnam1
vietnam123 vietnamvodich vodich hanoi hanoi123 hanoi1 saigon saigon123 hochiminh tphcm
danang haiphong cantho hue nhatrang vungtau dalat thainguyen hungyen tayninh quangninh
hoilamgi khongbiet khongco khongnho quenroi chaoban xinchao hihi hihihi haha hahaha hehe
hehehe huhu keke kaka conga conheo concho conmeo heocon thienthan acquy satthu sieunhan
nguyen nguyenvan tranvan levan phamvan nguyenthi tranthi nguyenvana tranvana nguyenanh
minhanh ngocanh tuananh hoanganh ducanh vietanh quanganh phuonganh thuytien
vneid vneid123 vneid1234 dichvucong congan bocongan cancuoc cancuoccongdan cccd cmnd
chinhphu ubnd motcua kyso kyso123 dinhdanh dinhdanhdientu chuky chukyso
"""
COMMON_PASSWORDS_FILE = "common-passwords.txt"  # in kyso/authn/data/


@functools.cache
def blocklist() -> frozenset[str]:
    """Every blocked password, in folded form: the common-passwords data file (one per line,
    already folded; ``#`` starts a comment line) and kyso's own list. Read on first use, once
    per process."""
    text = resources.files("kyso.authn").joinpath("data", COMMON_PASSWORDS_FILE).read_text("utf-8")
    common = (line for line in text.splitlines() if line and not line.startswith("#"))
    return frozenset((*common, *(_fold(w) for w in _BLOCKLIST_TEXT.split())))
