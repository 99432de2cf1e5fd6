"""Security levels as data: a level of a regime is a list of sourced requirements, each met by
an automatic check against this deployment or by an evidence file.

Everything here is a frozen value; :mod:`kyso.policies.loader` builds them from
``policies/levels/*.toml`` and :mod:`kyso.policies.check` evaluates them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from kyso.errors import PolicyError

REGIMES = ("current", "legacy")
LEVELS = (1, 2, 3, 4, 5)
LANGS = ("vi", "en")
ID_PREFIX = {"current": "CUR", "legacy": "LEG"}
# Areas of requirement ids, in the order reports list them.
AREAS = ("GOV", "LOG", "TIME", "AUTH", "CRY", "BAK", "NET", "MON", "PDP")

ParamValue: TypeAlias = int | str | bool | tuple[str, ...]


@dataclass(frozen=True)
class Localised:
    """One text in Vietnamese and English."""

    vi: str
    en: str

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.vi

    def to_dict(self) -> dict[str, str]:
        return {"vi": self.vi, "en": self.en}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise PolicyError(f"unknown language {lang!r}; use vi or en")
    return lang


class Status(Enum):
    """The outcome of one requirement, with the words an auditor reads."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    PARTIAL = "partial"
    EVIDENCE = "evidence"

    def label(self, lang: str = "vi") -> str:
        return _LABELS[self].get(lang)


_LABELS = {
    Status.PASS: Localised("Đạt", "Met"),
    Status.FAIL: Localised("Chưa đạt", "Not met"),
    Status.PARTIAL: Localised("Một phần", "Partly met"),
    Status.EVIDENCE: Localised("Cần bằng chứng", "Evidence needed"),
}


@dataclass(frozen=True)
class Requirement:
    """One requirement of a level.

    ``check`` names an automatic check (:data:`kyso.policies.checks.CHECKS`) run with
    ``params``; ``evidence`` names a file expected in the evidence folder. A requirement has a
    check, an evidence file, or both: then the file is the fallback when the check cannot
    measure (no NTP server configured, no CA in this home, …).
    """

    id: str
    title: Localised
    text: Localised
    source: str
    mandatory: bool
    check: str | None = None
    params: Mapping[str, ParamValue] = field(default_factory=dict, hash=False)
    evidence: str | None = None
    evidence_description: Localised | None = None
    replaces: str | None = None
    defined_in: str = field(default="", compare=False)

    @property
    def automatic(self) -> bool:
        return self.check is not None

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        """Both languages when ``lang`` is None, else the texts in that language."""
        def text(value: Localised | None) -> Any:
            if value is None:
                return None
            return value.to_dict() if lang is None else value.get(lang)

        return {
            "id": self.id,
            "title": text(self.title),
            "text": text(self.text),
            "source": self.source,
            "mandatory": self.mandatory,
            "check": self.check,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
            "evidence": self.evidence,
            "evidence_description": text(self.evidence_description),
            "replaces": self.replaces,
            "defined_in": self.defined_in,
        }


@dataclass(frozen=True)
class Level:
    """A resolved level: its own requirements after those it inherits through ``extends``."""

    name: str  # file stem, e.g. "current-3"
    regime: str
    level: int
    title: Localised
    documents: tuple[str, ...]
    in_force: dt.date | None
    applies_until: dt.date | None
    requirements: tuple[Requirement, ...]
    extends: str | None = None
    source: str = field(default="", compare=False)

    def requirement(self, req_id: str) -> Requirement:
        for r in self.requirements:
            if r.id == req_id:
                return r
        raise PolicyError(f"{self.name} has no requirement {req_id}")

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "regime": self.regime,
            "level": self.level,
            "title": self.title.to_dict() if lang is None else self.title.get(lang),
            "documents": list(self.documents),
            "in_force": self.in_force.isoformat() if self.in_force else None,
            "applies_until": self.applies_until.isoformat() if self.applies_until else None,
            "extends": self.extends,
            "requirements": [r.to_dict(lang) for r in self.requirements],
        }


def report_order(req: Requirement) -> tuple[int, str]:
    """Area first (as :data:`AREAS`), then id: CUR-L2-LOG-02 before CUR-L3-LOG-01."""
    area = req.id.split("-")[2] if req.id.count("-") == 3 else ""
    return (AREAS.index(area) if area in AREAS else len(AREAS), req.id)


def level_name(regime: str, level: int) -> str:
    return f"{regime}-{level}"


@dataclass(frozen=True)
class LevelCatalogue:
    levels: Mapping[str, Level]

    def get(self, regime: str, level: int) -> Level:
        name = level_name(regime, level)
        try:
            return self.levels[name]
        except KeyError:
            known = ", ".join(sorted(self.levels))
            raise PolicyError(f"no security level {name}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self.levels, key=lambda n: (self.levels[n].regime, self.levels[n].level))

    def find(self, req_id: str) -> tuple[Requirement, tuple[Level, ...]]:
        """A requirement by id and every level that includes it (lowest first)."""
        found: Requirement | None = None
        where: list[Level] = []
        for name in self.names():
            level = self.levels[name]
            for r in level.requirements:
                if r.id == req_id.upper():
                    found = found or r
                    where.append(level)
        if found is None:
            raise PolicyError(f"no requirement {req_id!r} in any level file")
        return found, tuple(where)
