"""SQL implementations of the authenticator stores (schema v3 tables).

Each keeps the atomicity contract written on its protocol in :mod:`kyso.authn.otp` and
:mod:`kyso.authn.lockout`, with one write transaction per call
(:meth:`kyso.store.Store.write`: ``BEGIN IMMEDIATE`` on SQLite, row locks on PostgreSQL):

- :class:`SqlTotpStepStore` — ``otp_credentials.last_step``, advanced by
  ``UPDATE … WHERE id = ? AND (last_step IS NULL OR last_step < ?)``; the row count says who won;
- :class:`SqlLockoutStore` — ``lockout_states``: the state as JSON, compare-and-set on
  ``version``; version 0 is an ``INSERT`` that loses cleanly to a concurrent one;
- :class:`SqlSmsChallengeStore` — ``sms_challenges`` (the live code's keyed hash) and
  ``sms_sends`` (throttling); consume is a compare-and-delete;
- :class:`SqlSmsOutbox` — ``sms_outbox``, the simulated phone network the demo and tests read.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kyso.authn.lockout import DamagedLockoutStateError, Factor, LockoutState, LockReason
from kyso.authn.otp import SmsChallenge, SmsMessage
from kyso.store import Store
from kyso.store.schema import (
    lockout_states,
    otp_credentials,
    sms_challenges,
    sms_outbox,
    sms_sends,
)

__all__ = [
    "SqlLockoutStore",
    "SqlSmsChallengeStore",
    "SqlSmsOutbox",
    "SqlTotpStepStore",
    "decode_lockout_state",
    "encode_lockout_state",
    "sms_code_in",
]


# -- TOTP steps ---------------------------------------------------------------------------


class SqlTotpStepStore:
    """The replay guard of TOTP credentials: ``otp_credentials.last_step``.

    Only existing credential rows have a step: :meth:`advance_step` on an unknown id refuses.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def last_step(self, credential_id: str) -> int | None:
        with self._store.read() as conn:
            value = conn.execute(
                sa.select(otp_credentials.c.last_step).where(otp_credentials.c.id == credential_id)
            ).scalar()
        return None if value is None else int(value)

    def advance_step(self, credential_id: str, step: int) -> bool:
        c = otp_credentials.c
        stmt = (sa.update(otp_credentials)
                .where(c.id == credential_id, sa.or_(c.last_step.is_(None), c.last_step < step))
                .values(last_step=step))
        return bool(self._store.write(lambda conn: conn.execute(stmt).rowcount) == 1)


# -- lockout ------------------------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("naive time")
    return parsed.astimezone(dt.UTC)


def encode_lockout_state(state: LockoutState) -> str:
    """The JSON text stored for a state (its version lives in its own column)."""
    return json.dumps({
        "failures": {Factor(k).value: int(v) for k, v in sorted(state.failures.items())},
        "consecutive": state.consecutive,
        "last_failure": _time(state.last_failure),
        "not_before": _time(state.not_before),
        "reason": state.reason.value,
        "temporary_lockouts": state.temporary_lockouts,
        "permanent": state.permanent,
    }, sort_keys=True)


def decode_lockout_state(version: int, text: str) -> LockoutState:
    """The state stored as ``text``; :class:`~kyso.authn.lockout.DamagedLockoutStateError`
    (an ``AuthnError``, carrying ``version`` if it is a valid one) if it is damaged (the
    login then fails closed instead of starting from zero failures)."""
    try:
        data = json.loads(text)
        return LockoutState(
            version=int(version),
            failures={Factor(k): int(v) for k, v in dict(data.get("failures", {})).items()},
            consecutive=int(data.get("consecutive", 0)),
            last_failure=_parse_time(data.get("last_failure")),
            not_before=_parse_time(data.get("not_before")),
            reason=LockReason(data.get("reason", LockReason.NONE.value)),
            temporary_lockouts=int(data.get("temporary_lockouts", 0)),
            permanent=bool(data.get("permanent", False)),
        )
    except (ValueError, TypeError, AttributeError):
        stored = version if isinstance(version, int) and version >= 1 else None
        raise DamagedLockoutStateError("the stored lockout state of an account is damaged",
                                       version=stored) from None


class SqlLockoutStore:
    """Per-account brute-force state in ``lockout_states`` (compare-and-set on version)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def load(self, account: str) -> LockoutState:
        with self._store.read() as conn:
            row = conn.execute(
                sa.select(lockout_states.c.version, lockout_states.c.state)
                .where(lockout_states.c.account == account)
            ).first()
        if row is None:
            return LockoutState()
        return decode_lockout_state(row.version, row.state)

    def compare_and_set(self, account: str, expected_version: int, state: LockoutState) -> bool:
        if state.version != expected_version + 1:
            raise ValueError("the new state's version must be the expected version + 1")
        text = encode_lockout_state(state)
        c = lockout_states.c

        def work(conn: Connection) -> int:
            if expected_version == 0:
                taken = conn.execute(sa.select(c.version).where(c.account == account)).first()
                if taken is not None:
                    return 0
                conn.execute(sa.insert(lockout_states).values(
                    account=account, version=state.version, state=text))
                return 1
            return int(conn.execute(
                sa.update(lockout_states)
                .where(c.account == account, c.version == expected_version)
                .values(version=state.version, state=text)
            ).rowcount)

        try:
            return self._store.write(work) == 1
        except sa.exc.IntegrityError:  # a concurrent first failure inserted the row first
            return False


# -- SMS ----------------------------------------------------------------------------------


class SqlSmsChallengeStore:
    """The live SMS code of each account (keyed hash only) and its send history."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def issue(self, challenge: SmsChallenge, *, previous_by: dt.datetime,
              window_start: dt.datetime, max_sends: int) -> bool:
        account = challenge.account

        def work(conn: Connection) -> bool:
            sends = [row.sent_at for row in conn.execute(
                sa.select(sms_sends.c.sent_at)
                .where(sms_sends.c.account == account, sms_sends.c.sent_at > window_start)
                .order_by(sms_sends.c.sent_at, sms_sends.c.id))]
            if (sends and sends[-1] > previous_by) or len(sends) >= max_sends:
                return False
            # Sends before the window no longer matter for throttling.
            conn.execute(sa.delete(sms_sends).where(sms_sends.c.account == account,
                                                    sms_sends.c.sent_at <= window_start))
            conn.execute(sa.insert(sms_sends).values(account=account,
                                                     sent_at=challenge.issued_at))
            conn.execute(sa.delete(sms_challenges).where(sms_challenges.c.account == account))
            conn.execute(sa.insert(sms_challenges).values(
                account=account, challenge_id=challenge.challenge_id, digest=challenge.digest,
                issued_at=challenge.issued_at, expires_at=challenge.expires_at,
                misses=challenge.misses))
            return True

        return bool(self._store.write(work))

    def sends(self, account: str, since: dt.datetime) -> tuple[dt.datetime, ...]:
        with self._store.read() as conn:
            return tuple(row.sent_at for row in conn.execute(
                sa.select(sms_sends.c.sent_at)
                .where(sms_sends.c.account == account, sms_sends.c.sent_at > since)
                .order_by(sms_sends.c.sent_at, sms_sends.c.id)))

    def live(self, account: str) -> SmsChallenge | None:
        with self._store.read() as conn:
            row = conn.execute(
                sa.select(sms_challenges).where(sms_challenges.c.account == account)
            ).mappings().first()
        if row is None:
            return None
        return SmsChallenge(challenge_id=row["challenge_id"], account=row["account"],
                            digest=bytes(row["digest"]), issued_at=row["issued_at"],
                            expires_at=row["expires_at"], misses=int(row["misses"] or 0))

    def consume(self, account: str, challenge_id: str) -> bool:
        stmt = sa.delete(sms_challenges).where(sms_challenges.c.account == account,
                                               sms_challenges.c.challenge_id == challenge_id)
        return bool(self._store.write(lambda conn: conn.execute(stmt).rowcount) == 1)

    def record_miss(self, account: str, challenge_id: str, max_misses: int) -> int:
        c = sms_challenges.c
        where = (c.account == account, c.challenge_id == challenge_id)

        def work(conn: Connection) -> int:
            changed = conn.execute(sa.update(sms_challenges).where(*where)
                                   .values(misses=c.misses + 1)).rowcount
            if changed != 1:
                return 0
            misses = int(conn.execute(sa.select(c.misses).where(*where)).scalar_one())
            if misses >= max_misses:
                conn.execute(sa.delete(sms_challenges).where(*where))
            return misses

        return int(self._store.write(work))


_CODE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")


def sms_code_in(text: str) -> str | None:
    """The 6-digit code in an SMS text, as the citizen would read it (None if there is none)."""
    found = _CODE.search(text) if text else None
    return found.group(0) if found else None


class SqlSmsOutbox:
    """Simulated SMS delivery into ``sms_outbox``; the demo and tests read the phone back."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def deliver(self, message: SmsMessage) -> None:
        self._store.write(lambda conn: conn.execute(sa.insert(sms_outbox).values(
            phone=message.to, body=message.text, sent_at=message.sent_at)))

    def messages(self, to: str | None = None) -> tuple[SmsMessage, ...]:
        query = sa.select(sms_outbox).order_by(sms_outbox.c.id)
        if to is not None:
            query = query.where(sms_outbox.c.phone == to)
        with self._store.read() as conn:
            rows = conn.execute(query).mappings().all()
        return tuple(SmsMessage(r["phone"], r["body"], r["sent_at"]) for r in rows)

    def last_code(self, to: str) -> str | None:
        """The code in the latest message to ``to``, as the citizen would read it."""
        query = (sa.select(sms_outbox.c.body).where(sms_outbox.c.phone == to)
                 .order_by(sms_outbox.c.id.desc()).limit(1))
        with self._store.read() as conn:
            body = conn.execute(query).scalar()
        return sms_code_in(body) if body else None
