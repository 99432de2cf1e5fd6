"""Automatic checks of the CA and service keys, the backups and personal data (see
:mod:`kyso.policies.checks`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from kyso.clock import vn_iso
from kyso.policies.checkbase import (
    CHECKS,
    CheckResult,
    Param,
    Params,
    age_hours,
    decimal,
    int_param,
    register,
    result,
)
from kyso.policies.facts import Facts, KeyFact
from kyso.policies.models import Status

__all__ = ["CHECKS"]


# --- CA and service keys ---------------------------------------------------------------------

def _no_ca(facts: Facts) -> CheckResult:
    return result(Status.EVIDENCE, f"không có CA trong {facts.home}", f"no CA in {facts.home}")


def _over_keys(facts: Facts, bad: Callable[[KeyFact], str | None], ok_vi: str, ok_en: str
               ) -> CheckResult:
    if not facts.ca_present:
        return _no_ca(facts)
    problems = [f"{k.name}: {why}" for k in facts.keys if (why := bad(k))]
    if problems:
        listing = "; ".join(problems)
        return result(Status.FAIL, f"{len(problems)}/{len(facts.keys)} khóa không đạt: {listing}",
                      f"{len(problems)} of {len(facts.keys)} keys fail: {listing}")
    return result(Status.PASS, f"{len(facts.keys)} khóa CA và dịch vụ: {ok_vi}",
                  f"{len(facts.keys)} CA and service keys: {ok_en}")


@register("key_strength",
          "Khóa của CA và các dịch vụ (OCSP, TSA, ký nhật ký): RSA ≥ min_rsa_bits bit, "
          "đường cong elliptic ≥ min_ec_bits bit, hoặc Ed25519",
          "CA and service keys (OCSP, TSA, audit signer): RSA ≥ min_rsa_bits bits, elliptic "
          "curves ≥ min_ec_bits bits, or Ed25519",
          min_rsa_bits=Param(int), min_ec_bits=Param(int))
def key_strength(facts: Facts, p: Params) -> CheckResult:
    rsa_min, ec_min = int_param(p, "min_rsa_bits", 2048), int_param(p, "min_ec_bits", 256)

    def bad(k: KeyFact) -> str | None:
        if k.algorithm == "rsa":
            return None if k.bits >= rsa_min else f"{k.label} < {rsa_min}"
        if k.algorithm in ("ec", "ed25519", "ed448"):
            return None if k.bits >= ec_min else f"{k.label} < {ec_min}"
        return f"{k.label} không được chấp nhận / not allowed"

    labels = ", ".join(sorted({k.label for k in facts.keys}))
    return _over_keys(facts, bad, labels, labels)


@register("signature_hashes",
          "Chứng thư số của CA và dịch vụ được ký với hàm băm trong danh sách allowed "
          "(Ed25519 không cần hàm băm riêng)",
          "CA and service certificates are signed with a hash in allowed (Ed25519 needs none)",
          allowed=Param(tuple))
def signature_hashes(facts: Facts, p: Params) -> CheckResult:
    raw = p.get("allowed", ("sha256", "sha384", "sha512"))
    allowed = raw if isinstance(raw, tuple) else ("sha256", "sha384", "sha512")

    def bad(k: KeyFact) -> str | None:
        if k.signature_hash is None or k.signature_hash in allowed:
            return None
        return f"ký bằng / signed with {k.signature_hash}"

    used = ", ".join(sorted({k.signature_hash or "ed25519" for k in facts.keys}))
    return _over_keys(facts, bad, f"ký bằng {used}", f"signed with {used}")


@register("certificates_valid",
          "Chứng thư số của CA và dịch vụ còn hiệu lực (Một phần khi còn dưới warn_days ngày)",
          "CA and service certificates are valid (partly met when fewer than warn_days days "
          "remain)",
          warn_days=Param(int))
def certificates_valid(facts: Facts, p: Params) -> CheckResult:
    if not facts.ca_present:
        return _no_ca(facts)
    warn = dt.timedelta(days=int_param(p, "warn_days", 7))
    expired = [k.name for k in facts.keys if k.not_after <= facts.now]
    soon = [f"{k.name} ({vn_iso(k.not_after)[:10]})" for k in facts.keys
            if facts.now < k.not_after <= facts.now + warn]
    if expired:
        return result(Status.FAIL, "đã hết hạn: " + ", ".join(expired), "expired: " + ", ".join(expired))
    if soon:
        return result(Status.PARTIAL, "sắp hết hạn, cần gia hạn: " + ", ".join(soon),
                      "expiring soon, renew: " + ", ".join(soon))
    first = min(facts.keys, key=lambda k: k.not_after)
    return result(Status.PASS, f"{len(facts.keys)} chứng thư còn hiệu lực; sớm nhất hết hạn: "
                  f"{first.name} {vn_iso(first.not_after)[:10]}", f"{len(facts.keys)} certificates "
                  f"valid; first to expire: {first.name} {vn_iso(first.not_after)[:10]}")


@register("key_files_protected",
          "Tệp khóa bí mật của CA và dịch vụ được mã hóa (PKCS#8) và chỉ chủ sở hữu đọc được",
          "CA and service private-key files are encrypted (PKCS#8) and readable by their "
          "owner only")
def key_files_protected(facts: Facts, _p: Params) -> CheckResult:
    states = {"missing": "thiếu tệp / missing", "readable by others": "người khác đọc được / "
              "readable by others", "not encrypted": "không mã hóa / not encrypted"}
    return _over_keys(facts, lambda k: states.get(k.key_file_state)
                      if k.key_file_state != "ok" else None,
                      "mã hóa, quyền 0600", "encrypted, mode 0600")


# --- backups ---------------------------------------------------------------------------------

def _newest(facts: Facts) -> tuple[str, float] | None:
    b = facts.backups
    if b.newest is None or b.newest_time is None:
        return None
    return b.newest, age_hours(facts, b.newest_time) / 24


@register("backup_fresh",
          "Có bản sao lưu trong thư mục sao lưu ([backup] dir), mới nhất không quá max_age_days "
          "ngày (mặc định [backup] max_age_days)",
          "A backup exists in the backup folder ([backup] dir), the newest no older than "
          "max_age_days days (default [backup] max_age_days)",
          max_age_days=Param(int, required=False))
def backup_fresh(facts: Facts, p: Params) -> CheckResult:
    limit = int_param(p, "max_age_days", facts.backup.max_age_days)
    newest = _newest(facts)
    if newest is None:
        return result(Status.FAIL, f"không có bản sao lưu trong {facts.backups.dir}",
                      f"no backup in {facts.backups.dir}")
    name, age = newest
    age_vi, age_en = decimal(age)
    if age > limit:
        return result(Status.FAIL, f"bản mới nhất {name} đã {age_vi} ngày, quá {limit} ngày",
                      f"newest backup {name} is {age_en} days old, more than {limit}")
    return result(Status.PASS, f"{facts.backups.files} bản; mới nhất {name}, {age_vi} ngày trước",
                  f"{facts.backups.files} backup file(s); newest {name}, {age_en} days old")


@register("backup_separate",
          "Bản sao lưu nằm tách khỏi hệ thống: ngoài thư mục home, trên thiết bị lưu trữ khác, "
          "hoặc có bản ngoài hệ thống ([backup] offsite)",
          "Backups are kept apart from the system: outside the home, on another storage "
          "device, or copied offsite ([backup] offsite)")
def backup_separate(facts: Facts, _p: Params) -> CheckResult:
    b = facts.backups
    if facts.backup.offsite:
        return result(Status.PASS, "có bản sao ngoài hệ thống (khai báo [backup] offsite = true)",
                      "copied offsite (declared: [backup] offsite = true)")
    if not b.exists:
        return result(Status.FAIL, f"không có thư mục sao lưu {b.dir}", f"no backup folder {b.dir}")
    if b.inside_home:
        return result(Status.FAIL, f"thư mục sao lưu {b.dir} nằm trong home {facts.home}",
                      f"backup folder {b.dir} is inside the home {facts.home}")
    if b.same_device is False:
        return result(Status.PASS, f"{b.dir} nằm trên thiết bị khác với home",
                      f"{b.dir} is on another device than the home")
    return result(Status.PARTIAL, f"{b.dir} ngoài home nhưng trên cùng thiết bị lưu trữ",
                  f"{b.dir} is outside the home but on the same storage device")


@register("backup_321",
          "Sao lưu 3-2-1 tự động, mã hóa: bản sao mới (theo [backup] max_age_days), có bản ngoài "
          "hệ thống ([backup] offsite; nếu chưa có thì ít nhất bản sao trên thiết bị khác), mã "
          "hóa ([backup] encrypted)",
          "Automated, encrypted 3-2-1 backups: a fresh copy (per [backup] max_age_days), an "
          "offsite copy ([backup] offsite; short of it, at least a copy on another device), "
          "encrypted ([backup] encrypted)")
def backup_321(facts: Facts, _p: Params) -> CheckResult:
    newest = _newest(facts)
    if newest is None:
        return result(Status.FAIL, f"không có bản sao lưu trong {facts.backups.dir}",
                      f"no backup in {facts.backups.dir}")
    missing: list[tuple[str, str]] = []
    if newest[1] > facts.backup.max_age_days:
        missing.append(("bản sao lưu chưa được làm mới tự động",
                        f"newest backup older than {facts.backup.max_age_days} days"))
    if not facts.backup.offsite:  # the offsite copy is also the second medium
        missing.append(("chưa có bản ngoài hệ thống ([backup] offsite)",
                        "no offsite copy ([backup] offsite)"))
        if facts.backups.same_device is not False:
            missing.append(("bản sao cùng thiết bị với dữ liệu gốc", "copy on the same device"))
    if not facts.backup.encrypted:
        missing.append(("chưa mã hóa ([backup] encrypted)", "not encrypted ([backup] encrypted)"))
    if missing:
        return result(Status.PARTIAL, "thiếu: " + "; ".join(m[0] for m in missing),
                      "missing: " + "; ".join(m[1] for m in missing))
    return result(Status.PASS, "bản sao mới, khác thiết bị, ngoài hệ thống, mã hóa",
                  "fresh copy, another device, offsite, encrypted")


# --- personal data ---------------------------------------------------------------------------

@register("pseudonymisation",
          "Số định danh trong nhật ký được thay bằng bí danh HMAC có khóa: khóa bí danh tồn tại "
          "và chỉ chủ sở hữu đọc được",
          "ID numbers in the log are replaced by keyed HMAC pseudonyms: the pseudonym key "
          "exists and only its owner can read it")
def pseudonymisation(facts: Facts, _p: Params) -> CheckResult:
    state = facts.pseudonym_key
    if state == "ok":
        return result(Status.PASS, "khóa bí danh có, quyền 0600", "pseudonym key present, mode 0600")
    if state == "missing":
        return result(Status.EVIDENCE, "chưa có khóa bí danh (được tạo ở lần ghi nhật ký đầu tiên)",
                      "no pseudonym key yet (created by the first audit event)")
    return result(Status.FAIL, f"khóa bí danh: {state}", f"pseudonym key: {state}")
