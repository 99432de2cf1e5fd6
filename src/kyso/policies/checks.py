"""The automatic checks: pure functions of :class:`~kyso.policies.facts.Facts` and the
parameters a requirement gives them, each returning a status and a sentence in both languages.

A check that cannot measure (no NTP server, no CA in this home) says EVIDENCE, never PASS:
the requirement's evidence file, if it names one, then decides. This module holds the checks of
the audit log, the clock and authentication; :mod:`kyso.policies.checks_assets` those of keys,
backups and personal data. Both register into :data:`CHECKS`.
"""

from __future__ import annotations

from kyso.clock import vn_iso
from kyso.policies import checks_assets  # noqa: F401 - registers the key, backup and data checks
from kyso.policies.checkbase import (
    CHECKS,
    CheckResult,
    CheckSpec,
    Param,
    Params,
    age_hours,
    decimal,
    int_param,
    register,
    result,
)
from kyso.policies.facts import Facts
from kyso.policies.models import Status

__all__ = ["CHECKS", "CheckResult", "CheckSpec", "Param", "run_check"]

def run_check(name: str, facts: Facts, params: Params) -> CheckResult:
    """Run one check; a check that raises is a FAIL naming the error, never a pass."""
    try:
        return CHECKS[name].function(facts, params)
    except Exception as exc:  # fail closed
        return result(Status.FAIL, f"kiểm tra {name} gặp lỗi: {type(exc).__name__}",
                      f"check {name} failed with {type(exc).__name__}")


# --- audit log -------------------------------------------------------------------------------

@register("audit_log_present", "Có nhật ký kiểm toán các sự kiện an toàn",
          "An audit log of security events exists")
def audit_log_present(facts: Facts, _p: Params) -> CheckResult:
    if facts.audit_files:
        return result(Status.PASS, f"nhật ký kiểm toán có {facts.audit_files} tệp trong {facts.home}/audit",
                      f"the audit log has {facts.audit_files} file(s) in {facts.home}/audit")
    return result(Status.FAIL, f"chưa có nhật ký kiểm toán trong {facts.home}/audit",
                  f"no audit log in {facts.home}/audit")


@register("audit_retention",
          "Nhật ký được giữ ít nhất min_days ngày trước khi `kyso audit purge` xóa: [audit] "
          "retention_days, không dưới mức tối thiểu của cấp độ cấu hình ([security] level)",
          "The log is kept at least min_days days before `kyso audit purge` removes it: [audit] "
          "retention_days, never below the floor of the configured level ([security] level)",
          min_days=Param(int))
def audit_retention(facts: Facts, p: Params) -> CheckResult:
    need = int_param(p, "min_days", 90)
    days, level = facts.audit_retention_days, facts.security.level
    if facts.audit.retention_days >= days:
        how_vi, how_en = "[audit] retention_days", "[audit] retention_days"
    else:
        how_vi, how_en = f"mức tối thiểu của cấp độ {level}", f"level-{level} floor"
    if days >= need:
        return result(Status.PASS, f"lưu {days} ngày ({how_vi}); yêu cầu ≥ {need} ngày",
                      f"kept {days} days ({how_en}); required ≥ {need}")
    return result(Status.FAIL, f"chỉ lưu {days} ngày ({how_vi}); yêu cầu ≥ {need} ngày",
                  f"kept only {days} days ({how_en}); required ≥ {need}")


@register("audit_integrity",
          "`kyso audit verify` đã chứng minh nhật ký nguyên vẹn trong max_age_hours giờ qua "
          "(mặc định [audit] verify_max_age_hours)",
          "`kyso audit verify` proved the log intact within max_age_hours "
          "(default [audit] verify_max_age_hours)",
          max_age_hours=Param(int, required=False))
def audit_integrity(facts: Facts, p: Params) -> CheckResult:
    v = facts.verification
    limit = int_param(p, "max_age_hours", facts.audit.verify_max_age_hours)
    if not v.recorded or v.time is None:
        if v.problem == "never verified":
            return result(Status.FAIL, "nhật ký chưa từng được kiểm tra tính toàn vẹn; chạy "
                          "`kyso audit verify`", "the log has never been verified; run `kyso audit verify`")
        return result(Status.FAIL, f"không dùng được kết quả kiểm tra: {v.problem}",
                      f"no usable verification record: {v.problem}")
    when = vn_iso(v.time)
    age_vi, age_en = decimal(age_hours(facts, v.time))
    if not v.ok:
        return result(Status.FAIL, f"lần kiểm tra lúc {when} phát hiện nhật ký bị sửa đổi",
                      f"the verification at {when} found the log altered")
    if age_hours(facts, v.time) > limit:
        return result(Status.PARTIAL, f"nguyên vẹn lúc {when} ({v.size} sự kiện), đã {age_vi} giờ, "
                      f"quá {limit} giờ", f"intact at {when} ({v.size} events), {age_en} hours ago, "
                      f"more than {limit}")
    return result(Status.PASS, f"nguyên vẹn lúc {when} ({v.size} sự kiện), {age_vi} giờ trước",
                  f"intact at {when} ({v.size} events), {age_en} hours ago")


@register("audit_checkpoints",
          "Checkpoint ký số mới nhất đã kiểm chứng (chữ ký của audit-signer còn hiệu lực lúc ký) "
          "không cũ hơn max_interval_seconds giây theo đồng hồ; lịch [audit] "
          "checkpoint_interval_seconds được nêu để tham khảo",
          "The newest verified signed checkpoint (signed by an audit signer whose certificate "
          "was valid when it signed) is no older than max_interval_seconds by the clock; the "
          "[audit] checkpoint_interval_seconds schedule is reported as context",
          max_interval_seconds=Param(int))
def audit_checkpoints(facts: Facts, p: Params) -> CheckResult:
    limit = int_param(p, "max_interval_seconds", 3600)
    every = facts.audit.checkpoint_interval_seconds
    plan_vi, plan_en = f"lịch đặt mỗi {every} giây", f"scheduled every {every} s"
    if every > limit:
        plan_vi += f", thưa hơn yêu cầu {limit} giây"
        plan_en += f", less often than the required {limit} s"
    cp = facts.checkpoint
    if cp.time is None:
        why = f" ({cp.problem})" if cp.problem else ""
        return result(Status.FAIL, f"không có checkpoint ký số nào được kiểm chứng{why}; chạy "
                      f"`kyso audit checkpoint` ({plan_vi})",
                      f"no verified signed checkpoint{why}; run `kyso audit checkpoint` "
                      f"({plan_en})")
    when = vn_iso(cp.time)
    age = max(0.0, (facts.now - cp.time).total_seconds())
    covers_vi = f"phủ {cp.size}/{cp.log_size} sự kiện" if cp.log_size else f"phủ {cp.size} sự kiện"
    covers_en = f"covers {cp.size} of {cp.log_size} events" if cp.log_size \
        else f"covers {cp.size} events"
    skipped_vi = skipped_en = ""
    if cp.refused:
        skipped_vi = f"; {cp.refused} checkpoint mới hơn không được chấp nhận: {cp.problem}"
        skipped_en = f"; {cp.refused} newer checkpoint(s) refused: {cp.problem}"
    if age <= limit:
        minutes = int(age // 60)
        return result(Status.PASS, f"checkpoint ký số mới nhất đã kiểm chứng lúc {when}, "
                      f"{minutes} phút trước, {covers_vi}; {plan_vi}{skipped_vi}",
                      f"newest verified signed checkpoint at {when}, {minutes} minutes ago, "
                      f"{covers_en}; {plan_en}{skipped_en}")
    hours_vi, hours_en = decimal(age / 3600)
    return result(Status.FAIL, f"checkpoint ký số mới nhất đã kiểm chứng lúc {when}, đã "
                  f"{hours_vi} giờ, cũ hơn {limit} giây; {covers_vi}; {plan_vi}{skipped_vi}",
                  f"newest verified signed checkpoint at {when}, {hours_en} hours ago, older "
                  f"than {limit} s; {covers_en}; {plan_en}{skipped_en}")


# --- time ------------------------------------------------------------------------------------

@register("clock_offset",
          "Đồng hồ lệch so với máy chủ NTP ([security] ntp_server) không quá max_ms ms "
          "(mặc định [security] max_clock_offset_ms)",
          "The clock is within max_ms ms of the NTP server ([security] ntp_server; default "
          "[security] max_clock_offset_ms)",
          max_ms=Param(int, required=False))
def clock_offset(facts: Facts, p: Params) -> CheckResult:
    c = facts.clock
    limit = int_param(p, "max_ms", facts.security.max_clock_offset_ms)
    if c.offset_ms is None:
        if not c.server:
            return result(Status.EVIDENCE, "chưa cấu hình máy chủ NTP ([security] ntp_server); "
                          "không đo được độ lệch đồng hồ", "no NTP server configured "
                          "([security] ntp_server); the clock offset cannot be measured")
        return result(Status.EVIDENCE, f"không đo được độ lệch đồng hồ: {c.problem}",
                      f"clock offset not measured: {c.problem}")
    off_vi, off_en = decimal(c.offset_ms)
    if abs(c.offset_ms) <= limit:
        return result(Status.PASS, f"lệch {off_vi} ms so với {c.server}; cho phép ±{limit} ms",
                      f"{off_en} ms from {c.server}; allowed ±{limit} ms")
    return result(Status.FAIL, f"lệch {off_vi} ms so với {c.server}, vượt ±{limit} ms",
                  f"{off_en} ms from {c.server}, beyond ±{limit} ms")


# --- authentication --------------------------------------------------------------------------

def _everyone_has_mfa(facts: Facts) -> bool:
    return facts.authn.admin_mfa and facts.authn.remote_mfa


@register("password_policy",
          "Độ dài mật khẩu tối thiểu của chính sách [authn] password_policy: min_length_with_mfa "
          "khi mọi đăng nhập có xác thực đa yếu tố, min_length_without_mfa khi không",
          "The minimum length of [authn] password_policy: min_length_with_mfa when every login "
          "has a second factor, else min_length_without_mfa",
          min_length_with_mfa=Param(int), min_length_without_mfa=Param(int))
def password_policy(facts: Facts, p: Params) -> CheckResult:
    mfa = _everyone_has_mfa(facts)
    need = int_param(p, "min_length_with_mfa", 8) if mfa else int_param(p, "min_length_without_mfa", 14)
    with_mfa, single = facts.password_min_length
    has = with_mfa if mfa else single
    policy = facts.authn.password_policy
    ctx_vi = "có" if mfa else "không có"
    ctx_en = "with" if mfa else "without"
    if has >= need:
        return result(Status.PASS, f"{policy}: tối thiểu {has} ký tự {ctx_vi} MFA; yêu cầu ≥ {need}",
                      f"{policy}: at least {has} characters {ctx_en} MFA; required ≥ {need}")
    return result(Status.FAIL, f"{policy}: tối thiểu {has} ký tự {ctx_vi} MFA, dưới {need}",
                  f"{policy}: at least {has} characters {ctx_en} MFA, below {need}")


def _flag(value: bool, key: str, vi: str, en: str) -> CheckResult:
    if value:
        return result(Status.PASS, f"{vi}: bật ([authn] {key} = true)", f"{en}: on ([authn] {key} = true)")
    return result(Status.FAIL, f"{vi}: tắt ([authn] {key} = false)", f"{en}: off ([authn] {key} = false)")


@register("admin_mfa", "Quản trị viên đăng nhập bằng xác thực đa yếu tố ([authn] admin_mfa)",
          "Administrators log in with multi-factor authentication ([authn] admin_mfa)")
def admin_mfa(facts: Facts, _p: Params) -> CheckResult:
    return _flag(facts.authn.admin_mfa, "admin_mfa", "MFA cho quản trị", "MFA for administrators")


@register("remote_mfa", "Mọi truy cập từ xa dùng xác thực đa yếu tố ([authn] remote_mfa)",
          "All remote access uses multi-factor authentication ([authn] remote_mfa)")
def remote_mfa(facts: Facts, _p: Params) -> CheckResult:
    return _flag(facts.authn.remote_mfa, "remote_mfa", "MFA cho truy cập từ xa",
                 "MFA for remote access")


@register("login_lockout",
          "Tài khoản bị khóa sau nhiều nhất max_failures lần đăng nhập sai liên tiếp "
          "([authn] max_login_failures, lockout)",
          "Accounts lock after at most max_failures consecutive failed logins "
          "([authn] max_login_failures, lockout)",
          max_failures=Param(int))
def login_lockout(facts: Facts, p: Params) -> CheckResult:
    limit = int_param(p, "max_failures", 5)
    a = facts.authn
    if a.max_login_failures == 0:
        return result(Status.FAIL, "không khóa tài khoản ([authn] max_login_failures = 0)",
                      "no lockout ([authn] max_login_failures = 0)")
    if a.lockout != "permanent" and a.wait_increment_seconds == 0:
        return result(Status.FAIL, f"khóa {a.lockout} nhưng thời gian chờ bằng 0 "
                      "([authn] wait_increment_seconds)",
                      f"{a.lockout} lockout with no wait ([authn] wait_increment_seconds = 0)")
    if a.max_login_failures <= limit:
        return result(Status.PASS, f"khóa ({a.lockout}) sau {a.max_login_failures} lần sai; "
                      f"yêu cầu ≤ {limit}", f"{a.lockout} lockout after {a.max_login_failures} "
                      f"failures; required ≤ {limit}")
    return result(Status.FAIL, f"khóa sau {a.max_login_failures} lần sai, nhiều hơn {limit}",
                  f"lockout after {a.max_login_failures} failures, more than {limit}")


@register("session_timeout",
          "Phiên làm việc tự khóa khi không hoạt động: quản trị ≤ admin_minutes phút, người "
          "dùng ≤ user_minutes phút ([authn] session_idle_*_minutes)",
          "Idle sessions lock: administrators within admin_minutes, users within user_minutes "
          "([authn] session_idle_*_minutes)",
          admin_minutes=Param(int), user_minutes=Param(int))
def session_timeout(facts: Facts, p: Params) -> CheckResult:
    a = facts.authn
    admin_limit, user_limit = int_param(p, "admin_minutes", 5), int_param(p, "user_minutes", 15)
    admin, user = a.session_idle_admin_minutes, a.session_idle_user_minutes
    wrong_vi, wrong_en = [], []
    if not 0 < admin <= admin_limit:
        wrong_vi.append(f"quản trị {admin} phút (≤ {admin_limit})")
        wrong_en.append(f"administrators {admin} min (≤ {admin_limit})")
    if not 0 < user <= user_limit:
        wrong_vi.append(f"người dùng {user} phút (≤ {user_limit})")
        wrong_en.append(f"users {user} min (≤ {user_limit})")
    if wrong_vi:
        return result(Status.FAIL, "khóa phiên quá muộn hoặc không khóa: " + "; ".join(wrong_vi),
                      "sessions lock too late or never: " + "; ".join(wrong_en))
    return result(Status.PASS, f"khóa sau {admin} phút (quản trị), {user} phút (người dùng)",
                  f"lock after {admin} min (administrators), {user} min (users)")


@register("inactive_accounts",
          "Tài khoản không hoạt động quá max_days ngày bị vô hiệu hóa "
          "([authn] inactive_account_days)",
          "Accounts inactive for more than max_days days are disabled "
          "([authn] inactive_account_days)",
          max_days=Param(int))
def inactive_accounts(facts: Facts, p: Params) -> CheckResult:
    limit, days = int_param(p, "max_days", 45), facts.authn.inactive_account_days
    if 0 < days <= limit:
        return result(Status.PASS, f"vô hiệu hóa sau {days} ngày không hoạt động; yêu cầu ≤ {limit}",
                      f"disabled after {days} inactive days; required ≤ {limit}")
    if days == 0:
        return result(Status.FAIL, "không vô hiệu hóa tài khoản không hoạt động "
                      "([authn] inactive_account_days = 0)",
                      "inactive accounts are never disabled ([authn] inactive_account_days = 0)")
    return result(Status.FAIL, f"vô hiệu hóa sau {days} ngày, quá {limit} ngày",
                  f"disabled after {days} days, more than {limit}")
