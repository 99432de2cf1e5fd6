"""What every automatic check shares: the result and parameter types, the registry, and the
small helpers that write a status with its sentence in both languages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kyso.policies.facts import Facts
from kyso.policies.models import Localised, ParamValue, Status

Params = Mapping[str, ParamValue]
CheckFunction = Callable[[Facts, Params], "CheckResult"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    detail: Localised


@dataclass(frozen=True)
class Param:
    kind: type  # int, str, bool, or tuple (a list of strings)
    required: bool = True


@dataclass(frozen=True)
class CheckSpec:
    name: str
    function: CheckFunction
    description: Localised
    params: Mapping[str, Param] = field(default_factory=dict)


CHECKS: dict[str, CheckSpec] = {}


def register(name: str, vi: str, en: str, **params: Param
             ) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under ``name`` with its description and its parameters."""
    def wrap(function: CheckFunction) -> CheckFunction:
        CHECKS[name] = CheckSpec(name, function, Localised(vi, en), params)
        return function
    return wrap


def result(status: Status, vi: str, en: str) -> CheckResult:
    return CheckResult(status, Localised(vi, en))


def int_param(params: Params, key: str, default: int) -> int:
    value = params.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def decimal(value: float) -> tuple[str, str]:
    """One decimal; Vietnamese writes a decimal comma."""
    text = f"{value:.1f}"
    return text.replace(".", ","), text


def age_hours(facts: Facts, when: dt.datetime) -> float:
    return max(0.0, (facts.now - when).total_seconds() / 3600)
