"""Human-readable verification reports, Vietnamese by default, English on request."""

from __future__ import annotations

from kyso.clock import vn_iso
from kyso.signing.verdict import FileReport, Indication, SignatureReport

TEXT = {
    "vi": {
        "file": "Tệp", "passed": "Chữ ký hợp lệ", "failed": "Chữ ký không hợp lệ",
        "indeterminate": "Chưa xác định được", "modified": "Tài liệu đã bị thay đổi sau khi ký",
        "no_sig": "Tệp không có chữ ký số", "signer": "Người ký", "time": "Thời gian ký (khai báo)",
        "ts": "Dấu thời gian", "tsa": "Đơn vị cấp dấu thời gian", "doc_ts": "Dấu thời gian tài liệu",
        "revocation": "Trạng thái thu hồi", "level": "Mức PAdES", "coverage": "Phạm vi ký",
        "mods": "Thay đổi sau khi ký", "reason": "Lý do", "serial": "Số hiệu chứng thư",
        "issuer": "Tổ chức cấp", "field": "Trường chữ ký", "certified": "Chữ ký chứng thực",
        "valid": "hợp lệ", "invalid": "không hợp lệ", "summary": "Kết luận",
        "error": "Lỗi",
    },
    "en": {
        "file": "File", "passed": "Signature is valid", "failed": "Signature is NOT valid",
        "indeterminate": "Signature could not be confirmed",
        "modified": "The document was changed after signing", "no_sig": "The file has no signature",
        "signer": "Signer", "time": "Claimed signing time", "ts": "Timestamp",
        "tsa": "Timestamping authority", "doc_ts": "Document timestamp",
        "revocation": "Revocation status", "level": "PAdES level", "coverage": "Coverage",
        "mods": "Changes after signing", "reason": "Reason", "serial": "Certificate serial",
        "issuer": "Issuer", "field": "Signature field", "certified": "Certification signature",
        "valid": "valid", "invalid": "not valid", "summary": "Verdict", "error": "Error",
    },
}


def _headline(report: SignatureReport, t: dict[str, str]) -> str:
    if report.indication is Indication.TOTAL_PASSED:
        return t["passed"]
    if any(c.name == "modifications" and c.ok is False for c in report.checks):
        return t["modified"]
    return t["failed"] if report.indication is Indication.TOTAL_FAILED else t["indeterminate"]


def render_text(report: FileReport, lang: str = "vi") -> str:
    t = TEXT[lang]
    verdict = report.indication.value + (f" / {report.sub_indication}"
                                         if report.sub_indication else "")
    lines = [f"{t['file']}: {report.path}", f"{t['summary']}: {verdict}"]
    if report.error:
        lines.append(f"  {t['error']}: {report.error}")
    if not report.signatures and not report.error:
        lines.append(f"  {t['no_sig']}")
    for s in report.signatures:
        sub = f" / {s.sub_indication}" if s.sub_indication else ""
        kind = t["doc_ts"] if s.kind == "document-timestamp" else _headline(s, t)
        lines.append(f"- {t['field']} {s.field}: {kind} — {s.indication.value}{sub}")
        if s.signer is not None:
            lines.append(f"    {t['signer']}: {s.signer.common_name} ({s.signer.subject})")
            lines.append(f"    {t['serial']}: {s.signer.serial}; {t['issuer']}: {s.signer.issuer}")
        if s.claimed_time is not None:
            lines.append(f"    {t['time']}: {vn_iso(s.claimed_time)}")
        if s.timestamp is not None:
            state = t["valid"] if s.timestamp.valid and s.timestamp.trusted else t["invalid"]
            lines.append(f"    {t['ts']}: {vn_iso(s.timestamp.time)} ({state}); "
                         f"{t['tsa']}: {s.timestamp.tsa}")
        if s.kind == "signature":
            lines.append(f"    {t['revocation']}: {s.revocation} ({s.revocation_source}); "
                         f"{t['level']}: {s.pades_level or '-'}"
                         + (f"; {t['certified']}" if s.certified else ""))
        lines.append(f"    {t['coverage']}: {s.coverage}; {t['mods']}: {s.modification_level}")
        lines.extend(f"    {t['reason']}: {r}" for r in s.reasons)
    return "\n".join(lines)
