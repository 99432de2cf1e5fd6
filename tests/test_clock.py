from __future__ import annotations

import datetime as dt

import pytest

from kyso.clock import FrozenClock, SystemClock, vn_iso


def test_frozen_clock_stands_still_until_advanced() -> None:
    clock = FrozenClock(dt.datetime(2026, 11, 23, 15, 32, 28, tzinfo=dt.UTC))
    assert clock.now() == clock.now()
    clock.advance(dt.timedelta(days=1))
    assert clock.now().day == 24


def test_frozen_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(dt.datetime(2026, 1, 1))


def test_system_clock_is_utc_with_whole_seconds() -> None:
    now = SystemClock().now()
    assert now.tzinfo == dt.UTC
    assert now.microsecond == 0


def test_vietnam_time_is_shown_with_plus_seven_offset() -> None:
    moment = dt.datetime(2026, 11, 23, 15, 32, 28, tzinfo=dt.UTC)
    assert vn_iso(moment) == "2026-11-23T22:32:28+07:00"
