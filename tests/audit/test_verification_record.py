"""The record of the last full verification (``<audit>/verified.json``), written by
``kyso audit verify`` and by ``kyso demo`` through :func:`record_verification`, and read by
``kyso policy check``."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import T0
from kyso.audit import Layer, Outcome
from kyso.audit.segments import Layout
from kyso.audit.signer import record_verification, verify_with_store
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.policies.facts import Verification, read_verification


def _log(kyso: Kyso, n: int) -> Path:
    for i in range(n):
        kyso.record(Layer.AUDIT, "TEST_EVENT", Outcome.SUCCESS, object=f"e{i}")
    return Layout(kyso.settings.audit_dir).verified


def test_a_recorded_verification_is_what_the_policy_check_reads(kyso: Kyso,
                                                                 clock: FrozenClock) -> None:
    path = _log(kyso, 3)
    report = verify_with_store(kyso)
    assert report.ok, report.to_dict()
    record_verification(kyso, report)
    assert read_verification(path, clock.now()) == Verification(
        recorded=True, time=T0, ok=True, size=3)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["time"] == "2026-11-23T09:00:00+07:00"  # T0 in Vietnam time
    assert report.root is not None
    assert data["root"] == report.root.hex()


def test_a_failed_verification_is_recorded_as_failed(kyso: Kyso, clock: FrozenClock) -> None:
    path = _log(kyso, 3)
    segment = next((kyso.settings.audit_dir / "segments").glob("*.jsonl"))
    segment.write_text(segment.read_text(encoding="utf-8").replace('"e1"', '"e9"'),
                       encoding="utf-8")
    report = verify_with_store(kyso)
    assert not report.ok
    record_verification(kyso, report)
    seen = read_verification(path, clock.now())
    assert (seen.recorded, seen.ok) == (True, False)


def test_a_record_that_cannot_be_written_is_skipped_without_an_error(kyso: Kyso) -> None:
    path = _log(kyso, 1)
    path.mkdir()  # not a file: the new record cannot replace it (even for root)
    record_verification(kyso, verify_with_store(kyso))
    assert path.is_dir()
    assert list(path.iterdir()) == []
