"""Security levels are data: ``policies/levels/<regime>-<level>.toml``, one file per regime and
level.

Loading is strict, in the manner of the certificate profiles: unknown keys, wrong types, a
requirement without a source, an unknown check or check parameter, duplicate ids and
``extends`` cycles are errors naming the file and the requirement. A level may ``extends`` another
level of its regime: it inherits that level's requirements, adds its own, and may replace an
inherited one (``replaces = "<id>"``) with a stricter version.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kyso.errors import PolicyError
from kyso.policies.checks import CHECKS
from kyso.policies.models import (
    AREAS,
    ID_PREFIX,
    LEVELS,
    REGIMES,
    Level,
    LevelCatalogue,
    Localised,
    ParamValue,
    Requirement,
    report_order,
)

_ID = re.compile(r"(CUR|LEG)-L([1-5])-([A-Z]{2,8})-[0-9]{2}")
_EVIDENCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_TYPE_NAMES = {int: "a whole number", str: "a string", bool: "true or false",
               tuple: "a list of strings", dict: "a table", list: "a list", dt.date: "a date"}


class _Reader:
    """One TOML table read key by key; whatever is never asked for is an unknown key."""

    def __init__(self, where: str, data: Mapping[str, Any]) -> None:
        self.where, self.data = where, data
        self.seen: set[str] = set()

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise PolicyError(f"{self.where}: {key} is missing")
            return default
        value = self.data[key]
        wrong = (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind) \
            or (kind is dt.date and isinstance(value, dt.datetime))
        if wrong:
            raise PolicyError(f"{self.where}: {key} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                              f"not {_toml_type(value)}")
        return value

    def text(self, key: str, default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if isinstance(value, str) and not value.strip():
            raise PolicyError(f"{self.where}: {key} must not be empty")
        return value

    def localised(self, key: str) -> Localised:
        value = self.optional_localised(key, required=True)
        if value is None:  # pragma: no cover - get() raised already
            raise PolicyError(f"{self.where}: {key} is missing")
        return value

    def optional_localised(self, key: str, required: bool = False) -> Localised | None:
        table = self.get(key, dict, ... if required else None)
        if table is None:
            return None
        sub = _Reader(f"{self.where}: {key}", table)
        value = Localised(vi=sub.text("vi"), en=sub.text("en"))
        sub.done()
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise PolicyError(f"{self.where}: {key} must be a list of non-empty strings")
        return tuple(value)

    def done(self) -> None:
        unknown = set(self.data) - self.seen
        if unknown:
            raise PolicyError(f"{self.where}: unknown key(s) {', '.join(sorted(unknown))}")


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dt.datetime):
        return "a date-time"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class RawLevel:
    """One file as written, before ``extends`` is resolved."""

    name: str
    regime: str
    level: int
    title: Localised
    documents: tuple[str, ...]
    in_force: dt.date | None
    applies_until: dt.date | None
    extends: str | None
    requirements: tuple[Requirement, ...]
    source: str


def parse_level(text: str, source: str) -> RawLevel:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML ({exc})") from None
    top = _Reader(source, data)
    regime = top.get("regime", str)
    if regime not in REGIMES:
        raise PolicyError(f"{source}: regime must be one of {', '.join(REGIMES)}, not {regime!r}")
    level = top.get("level", int)
    if level not in LEVELS:
        raise PolicyError(f"{source}: level must be 1 to 5, not {level}")
    title = top.localised("title")
    documents = top.strings("documents")
    in_force = top.get("in_force", dt.date, None)
    until = top.get("applies_until", dt.date, None)
    if in_force and until and until <= in_force:
        raise PolicyError(f"{source}: applies_until must come after in_force")
    extends = top.get("extends", str, None)
    items = top.get("requirement", list, [])
    top.done()
    requirements: list[Requirement] = []
    seen: set[str] = set()
    for index, item in enumerate(items, 1):
        req = _requirement(source, index, item, regime, level)
        if req.id in seen:
            raise PolicyError(f"{source}: requirement {req.id}: duplicate id")
        seen.add(req.id)
        requirements.append(req)
    return RawLevel(name=f"{regime}-{level}", regime=regime, level=level, title=title,
                    documents=documents, in_force=in_force, applies_until=until, extends=extends,
                    requirements=tuple(requirements), source=source)


def _requirement(source: str, index: int, item: object, regime: str, level: int) -> Requirement:
    if not isinstance(item, dict):
        raise PolicyError(f"{source}: requirement #{index} must be a table ([[requirement]])")
    req_id = item.get("id")
    where = f"{source}: requirement {req_id}" if isinstance(req_id, str) else \
        f"{source}: requirement #{index}"
    r = _Reader(where, item)
    req_id = r.text("id")
    match = _ID.fullmatch(req_id)
    prefix = f"{ID_PREFIX[regime]}-L{level}-"
    if not match or not req_id.startswith(prefix):
        raise PolicyError(f"{where}: id must look like {prefix}LOG-01 (regime, level, area, "
                          "number)")
    if match.group(3) not in AREAS:
        raise PolicyError(f"{where}: unknown area {match.group(3)}; areas: {', '.join(AREAS)}")
    title = r.localised("title")
    text = r.localised("text")
    if "source" not in item:
        raise PolicyError(f"{where}: no source; every requirement must cite the document and "
                          "article, clause or topic it comes from")
    req_source = r.text("source")
    mandatory = r.get("mandatory", bool)
    check = r.get("check", str, None)
    raw_params = r.get("params", dict, None)
    evidence = r.get("evidence", str, None)
    description = r.optional_localised("evidence_description")
    replaces = r.get("replaces", str, None)
    r.done()
    if check is None and evidence is None:
        raise PolicyError(f"{where}: needs a check (automatic) or an evidence file name")
    if check is not None and check not in CHECKS:
        raise PolicyError(f"{where}: unknown check {check!r}; known checks: "
                          f"{', '.join(sorted(CHECKS))}")
    if raw_params is not None and check is None:
        raise PolicyError(f"{where}: params belong to a check, and there is none")
    params = _params(where, check, raw_params or {}) if check else {}
    if evidence is not None:
        if not _EVIDENCE_NAME.fullmatch(evidence):
            raise PolicyError(f"{where}: evidence {evidence!r} must be a plain file name "
                              "(lowercase letters, digits, '.', '_', '-')")
        if description is None:
            raise PolicyError(f"{where}: evidence_description (vi, en) must say what "
                              f"{evidence} is")
    elif description is not None:
        raise PolicyError(f"{where}: evidence_description without evidence")
    if replaces is not None and not _ID.fullmatch(replaces):
        raise PolicyError(f"{where}: replaces {replaces!r} is not a requirement id")
    return Requirement(id=req_id, title=title, text=text, source=req_source, mandatory=mandatory,
                       check=check, params=params, evidence=evidence,
                       evidence_description=description, replaces=replaces, defined_in=source)


def _params(where: str, check: str, raw: Mapping[str, Any]) -> dict[str, ParamValue]:
    spec = CHECKS[check].params
    unknown = set(raw) - set(spec)
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise PolicyError(f"{where}: unknown parameter(s) {', '.join(sorted(unknown))} of check "
                          f"{check} (its parameters: {known})")
    out: dict[str, ParamValue] = {}
    for name, param in spec.items():
        if name not in raw:
            if param.required:
                raise PolicyError(f"{where}: check {check} needs the parameter {name}")
            continue
        value: object = raw[name]
        if param.kind is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PolicyError(f"{where}: parameter {name} must be a list of strings")
            out[name] = tuple(value)
            continue
        if isinstance(value, bool) is not (param.kind is bool) or not isinstance(value, param.kind):
            raise PolicyError(f"{where}: parameter {name} must be {_TYPE_NAMES[param.kind]}, "
                              f"not {_toml_type(value)}")
        if isinstance(value, bool | str):
            out[name] = value
        elif isinstance(value, int):
            if value < 0:
                raise PolicyError(f"{where}: parameter {name} must not be negative")
            out[name] = value
    return out


# --- resolving extends -----------------------------------------------------------------------

def resolve(raws: Mapping[str, RawLevel]) -> LevelCatalogue:
    done: dict[str, Level] = {}
    for name in sorted(raws):
        _resolve(name, raws, done, ())
    return LevelCatalogue(done)


def _resolve(name: str, raws: Mapping[str, RawLevel], done: dict[str, Level],
             stack: tuple[str, ...]) -> Level:
    if name in done:
        return done[name]
    raw = raws[name]
    if name in stack:
        chain = " → ".join((*stack[stack.index(name):], name))
        raise PolicyError(f"{raw.source}: extends cycle: {chain}")
    inherited: list[Requirement] = []
    documents: tuple[str, ...] = ()
    in_force, until = raw.in_force, raw.applies_until
    if raw.extends is not None:
        if raw.extends not in raws:
            raise PolicyError(f"{raw.source}: extends {raw.extends!r}, which is not a level file")
        parent_raw = raws[raw.extends]
        if parent_raw.regime != raw.regime:
            raise PolicyError(f"{raw.source}: extends {raw.extends}, a level of another regime")
        parent = _resolve(raw.extends, raws, done, (*stack, name))
        inherited = list(parent.requirements)
        documents = parent.documents
        in_force = in_force or parent.in_force
        until = until or parent.applies_until
    positions = {r.id: i for i, r in enumerate(inherited)}
    replaced: set[str] = set()
    merged = list(inherited)
    for req in raw.requirements:
        if req.id in positions:
            raise PolicyError(f"{raw.source}: requirement {req.id}: duplicate id (inherited "
                              f"from {raw.extends})")
        if req.replaces is None:
            merged.append(req)
            continue
        if req.replaces not in positions:
            raise PolicyError(f"{raw.source}: requirement {req.id}: replaces {req.replaces}, "
                              "which this level does not inherit")
        if req.replaces in replaced:
            raise PolicyError(f"{raw.source}: requirement {req.id}: {req.replaces} is already "
                              "replaced by another requirement")
        replaced.add(req.replaces)
        merged[positions[req.replaces]] = req
    if not merged:
        raise PolicyError(f"{raw.source}: the level has no requirements")
    level = Level(name=name, regime=raw.regime, level=raw.level, title=raw.title,
                  documents=tuple(dict.fromkeys(documents + raw.documents)), in_force=in_force,
                  applies_until=until, requirements=tuple(sorted(merged, key=report_order)),
                  extends=raw.extends, source=raw.source)
    done[name] = level
    return level


# --- files -----------------------------------------------------------------------------------

def shipped_level_texts() -> dict[str, tuple[str, str]]:
    """``{file stem: (text, source label)}`` for every shipped level file."""
    folder = resources.files("kyso.policies").joinpath("levels")
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = (entry.read_text(encoding="utf-8"), f"levels/{entry.name}")
    return out


def level_texts(folder: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            out[path.stem] = (path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read level file {path}: {exc}") from None
    return out


def load_levels(folder: Path | None = None) -> LevelCatalogue:
    """Every level file of ``folder`` (default: the shipped ones), resolved."""
    texts = shipped_level_texts() if folder is None else level_texts(folder)
    raws: dict[str, RawLevel] = {}
    for stem, (text, source) in sorted(texts.items()):
        raw = parse_level(text, source)
        if raw.name != stem:
            raise PolicyError(f"{source}: regime {raw.regime} and level {raw.level} need the "
                              f"file name {raw.name}.toml")
        raws[stem] = raw
    return resolve(raws)
