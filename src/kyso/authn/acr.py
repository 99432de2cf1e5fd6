"""Authentication context classes: the VNeID levels as ``acr`` values, and their aliases.

``urn:vn:vneid:loa:1`` / ``urn:vn:vneid:loa:2`` are the values kyso issues. The eIDAS
level-of-assurance URIs are accepted as aliases in requests (``acr_values``, an essential
``acr`` claim) and by relying parties: *low* is level 1, *substantial* and *high* are level 2
(an in-person, chip-checked identity with two factors). Relying parties must compare the
level of the token they received, never trust the ``acr_values`` they sent: a user can edit
the URL.
"""

from __future__ import annotations

from kyso.authn.registry import Level

ACR_LEVEL_1 = "urn:vn:vneid:loa:1"
ACR_LEVEL_2 = "urn:vn:vneid:loa:2"
EIDAS_LOW = "http://eidas.europa.eu/LoA/low"
EIDAS_SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
EIDAS_HIGH = "http://eidas.europa.eu/LoA/high"

_LEVELS: dict[str, Level] = {
    ACR_LEVEL_1: Level.ONE,
    ACR_LEVEL_2: Level.TWO,
    EIDAS_LOW: Level.ONE,
    EIDAS_SUBSTANTIAL: Level.TWO,
    EIDAS_HIGH: Level.TWO,
}
SUPPORTED_ACR_VALUES = (ACR_LEVEL_1, ACR_LEVEL_2, EIDAS_LOW, EIDAS_SUBSTANTIAL, EIDAS_HIGH)


def level_of(acr: object) -> Level | None:
    """The level an ``acr`` value stands for; None for anything unknown (never a default)."""
    return _LEVELS.get(acr) if isinstance(acr, str) else None


def acr_for(level: Level) -> str:
    """The ``acr`` kyso puts in tokens for an authentication at ``level``."""
    return ACR_LEVEL_2 if level >= Level.TWO else ACR_LEVEL_1
