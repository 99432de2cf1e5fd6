"""Evaluate a security level against a deployment: one status per requirement, a summary and a
verdict.

Each automatic requirement runs its check over the :class:`~kyso.policies.facts.Facts`; each
evidence requirement looks for its file in the evidence folder (``name`` or ``name.<ext>``,
non-empty). A check that cannot measure falls back to its evidence file when it names one.

The verdict is the worst status among the mandatory requirements, in the order FAIL, PARTIAL,
EVIDENCE, PASS; only a mandatory FAIL makes ``kyso policy check`` exit 1.

:func:`record_policy_check` records a report as the ``POLICY_CHECK`` audit event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyso.audit import Layer, Outcome
from kyso.clock import vn_iso
from kyso.policies.checks import run_check
from kyso.policies.facts import Evidence, Facts, scan_evidence
from kyso.policies.loader import load_levels
from kyso.policies.models import Level, LevelCatalogue, Localised, Requirement, Status

if TYPE_CHECKING:
    from kyso.context import Kyso

SCHEMA = "kyso-policy-check/1"
_SEVERITY = (Status.FAIL, Status.PARTIAL, Status.EVIDENCE, Status.PASS)


@dataclass(frozen=True)
class ItemResult:
    requirement: Requirement
    status: Status
    detail: Localised
    evidence_file: str | None = None

    def to_dict(self, lang: str) -> dict[str, Any]:
        r = self.requirement
        return {
            "id": r.id,
            "title": r.title.get(lang),
            "status": self.status.value,
            "label": self.status.label(lang),
            "mandatory": r.mandatory,
            "source": r.source,
            "check": r.check,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in r.params.items()},
            "evidence": r.evidence,
            "evidence_file": self.evidence_file,
            "detail": self.detail.get(lang),
        }


@dataclass(frozen=True)
class PolicyReport:
    level: Level
    time: dt.datetime
    items: tuple[ItemResult, ...]
    evidence_dir: str | None = None
    notes: tuple[Localised, ...] = ()

    def counts(self, mandatory_only: bool = False) -> dict[Status, int]:
        out = dict.fromkeys(Status, 0)
        for item in self.items:
            if item.requirement.mandatory or not mandatory_only:
                out[item.status] += 1
        return out

    @property
    def mandatory_failures(self) -> tuple[ItemResult, ...]:
        return tuple(i for i in self.items if i.requirement.mandatory and i.status is Status.FAIL)

    @property
    def verdict(self) -> Status:
        mandatory = {i.status for i in self.items if i.requirement.mandatory}
        return next((s for s in _SEVERITY if s in mandatory), Status.PASS)

    @property
    def exit_code(self) -> int:
        return 1 if self.mandatory_failures else 0

    def summary_line(self, lang: str = "vi") -> str:
        counts = self.counts()
        parts = ", ".join(f"{counts[s]} {s.label(lang)}" for s in
                          (Status.PASS, Status.FAIL, Status.PARTIAL, Status.EVIDENCE))
        failed = len(self.mandatory_failures)
        if lang == "en":
            head = f"Level {self.level.level} ({self.level.regime}): {len(self.items)} requirements"
            tail = f"verdict: {self.verdict.label(lang)}"
            if failed:
                tail += f" ({failed} mandatory requirement{'s' if failed != 1 else ''} not met)"
        else:
            head = f"Cấp độ {self.level.level} ({self.level.regime}): {len(self.items)} yêu cầu"
            tail = f"kết luận: {self.verdict.label(lang)}"
            if failed:
                tail += f" ({failed} yêu cầu bắt buộc chưa đạt)"
        return f"{head} — {parts} — {tail}"

    def to_dict(self, lang: str = "vi") -> dict[str, Any]:
        counts = self.counts()
        mandatory = self.counts(mandatory_only=True)
        return {
            "schema": SCHEMA,
            "regime": self.level.regime,
            "level": self.level.level,
            "title": self.level.title.get(lang),
            "documents": list(self.level.documents),
            "time": vn_iso(self.time),
            "lang": lang,
            "evidence_dir": self.evidence_dir,
            "verdict": {
                "status": self.verdict.value,
                "label": self.verdict.label(lang),
                "mandatory_failed": [i.requirement.id for i in self.mandatory_failures],
            },
            "summary": {
                **{s.value: counts[s] for s in Status},
                "total": len(self.items),
                "mandatory": {s.value: mandatory[s] for s in Status},
            },
            "requirements": [i.to_dict(lang) for i in self.items],
            "notes": [n.get(lang) for n in self.notes],
        }


def evaluate(level: int, regime: str, facts: Facts, evidence_dir: Path | None = None, *,
             catalogue: LevelCatalogue | None = None) -> PolicyReport:
    """Load the level (shipped files unless ``catalogue`` is given) and evaluate it."""
    chosen = (catalogue or load_levels()).get(regime, level)
    evidence = scan_evidence(evidence_dir) if evidence_dir is not None else None
    return evaluate_level(chosen, facts, evidence)


def evaluate_level(level: Level, facts: Facts, evidence: Evidence | None) -> PolicyReport:
    items = tuple(_item(r, facts, evidence) for r in level.requirements)
    return PolicyReport(level=level, time=facts.now, items=items,
                        evidence_dir=evidence.dir if evidence else None,
                        notes=_notes(level, facts))


def record_policy_check(kyso: Kyso, report: PolicyReport) -> None:
    """The ``POLICY_CHECK`` event (layer audit) of ``report``: a failure when a mandatory
    requirement is not met; the level as object; the verdict, the counts per status and the
    ids of the mandatory requirements not met. :class:`~kyso.errors.AuditError` when the log
    cannot take it."""
    counts = report.counts()  # keys avoid "pass", which the audit scrubber redacts
    kyso.record(Layer.AUDIT, "POLICY_CHECK",
                Outcome.FAILURE if report.exit_code else Outcome.SUCCESS,
                object=report.level.name, verdict=report.verdict.value,
                met=counts[Status.PASS], not_met=counts[Status.FAIL],
                partly_met=counts[Status.PARTIAL], evidence_needed=counts[Status.EVIDENCE],
                mandatory_failed=[i.requirement.id for i in report.mandatory_failures])


def _item(req: Requirement, facts: Facts, evidence: Evidence | None) -> ItemResult:
    if req.check is not None:
        result = run_check(req.check, facts, req.params)
        if result.status is Status.EVIDENCE and req.evidence:
            return _from_evidence(req, evidence, result.detail)
        return ItemResult(req, result.status, result.detail)
    return _from_evidence(req, evidence, None)


def _from_evidence(req: Requirement, evidence: Evidence | None, why: Localised | None
                   ) -> ItemResult:
    name = req.evidence or ""
    found = evidence.find(name) if evidence else None
    if found and found[1] > 0:
        return ItemResult(req, Status.PASS, Localised(f"đã có bằng chứng: {found[0]}",
                                                      f"evidence provided: {found[0]}"), found[0])
    if found:
        detail = Localised(f"tệp bằng chứng {found[0]} rỗng", f"evidence file {found[0]} is empty")
    elif evidence is None:
        detail = Localised(f"cần tệp {name}", f"needs the file {name}")
    else:
        detail = Localised(f"thiếu tệp {name} trong {evidence.dir}",
                           f"no file {name} in {evidence.dir}")
    if why is not None:
        detail = Localised(f"{why.vi}; {detail.vi}", f"{why.en}; {detail.en}")
    return ItemResult(req, Status.EVIDENCE, detail)


def _notes(level: Level, facts: Facts) -> tuple[Localised, ...]:
    notes = []
    today = facts.now.date()
    if level.in_force and today < level.in_force:
        notes.append(Localised(
            f"chế độ {level.regime} có hiệu lực từ {level.in_force.isoformat()}",
            f"the {level.regime} regime applies from {level.in_force.isoformat()}"))
    if level.applies_until and today >= level.applies_until:
        notes.append(Localised(
            f"chế độ {level.regime} chỉ áp dụng đến {level.applies_until.isoformat()}; "
            "dùng --regime current",
            f"the {level.regime} regime applied until {level.applies_until.isoformat()}; "
            "use --regime current"))
    configured = facts.security.level
    if configured != level.level:
        notes.append(Localised(
            f"triển khai này được cấu hình cho cấp độ {configured} ([security] level)",
            f"this deployment is configured for level {configured} ([security] level)"))
    if level.level < 3:
        notes.append(Localised(
            "hệ thống giải quyết thủ tục hành chính hoặc xử lý dữ liệu cá nhân của từ 10.000 "
            "người trở lên phải đạt ít nhất cấp độ 3",
            "a system handling administrative procedures, or personal data of 10,000 people or "
            "more, is at least level 3"))
    return tuple(notes)
