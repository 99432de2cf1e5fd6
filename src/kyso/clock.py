"""The injectable clock. Nothing in kyso calls ``datetime.now`` directly."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.UTC
VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real time, truncated to whole seconds (X.509 times have second precision)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC).replace(microsecond=0)


class FrozenClock:
    """A clock that stands still until moved; for tests and reproducible runs."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> dt.datetime:
        return self._at

    def advance(self, delta: dt.timedelta) -> None:
        self._at = self._at + delta

    def set(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)


def vn_iso(moment: dt.datetime) -> str:
    """Render a moment as people in Vietnam read it: ISO 8601 with +07:00."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM).isoformat(timespec="seconds")
