"""Browser sessions at the OpenID Connect provider (``oidc_sessions``).

The cookie holds 256 random bits; the store keeps only their SHA-256 (``id_hash``), so a read of
the database does not yield a usable cookie. A session dies at its absolute limit
(``[authn] session_max_hours``, never above 24 h — NIST SP 800-63B-4) or after
``session_idle_user_minutes`` without use, whichever comes first, and when it is ended
(logout, a lock, or rotation at login: the pre-login id is then worthless — no session
fixation).

``data`` holds the login transaction as JSON: the CSRF secret, the stage, the pending
authorization request. The CSRF token of a form is HMAC-SHA-256 of the session id under that
per-session secret and is compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.clock import Clock
from kyso.store import Store
from kyso.store.schema import oidc_sessions

__all__ = ["MAX_COOKIE_CHARS", "BrowserSession", "SessionStore", "session_hash"]

MAX_COOKIE_CHARS = 128
LONGEST_SESSION = dt.timedelta(hours=24)


def session_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class BrowserSession:
    """One live session. ``data`` (CSRF secret, pending request) stays out of ``repr``."""

    id_hash: str = field(repr=False)
    subject: str | None
    auth_time: dt.datetime | None
    acr: str | None
    amr: tuple[str, ...]
    data: Mapping[str, Any] = field(repr=False)
    created_at: dt.datetime
    last_seen: dt.datetime
    expires_at: dt.datetime

    @property
    def authenticated(self) -> bool:
        return self.subject is not None and self.auth_time is not None and self.acr is not None

    @property
    def sid(self) -> str:
        """The ``sid`` claim: a random value of its own, never the cookie or its hash."""
        return str(self.data.get("sid", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "acr": self.acr, "amr": list(self.amr),
                "auth_time": self.auth_time.isoformat() if self.auth_time else None,
                "expires_at": self.expires_at.isoformat()}


def _session(row: RowMapping) -> BrowserSession:
    return BrowserSession(id_hash=row["id_hash"], subject=row["subject"],
                          auth_time=row["auth_time"], acr=row["acr"],
                          amr=tuple(json.loads(row["amr"])) if row["amr"] else (),
                          data=json.loads(row["data"]), created_at=row["created_at"],
                          last_seen=row["last_seen"], expires_at=row["expires_at"])


class SessionStore:
    """Create, find, change, rotate and end browser sessions."""

    def __init__(self, store: Store, clock: Clock, *, idle: dt.timedelta,
                 absolute: dt.timedelta) -> None:
        if idle <= dt.timedelta(0) or absolute <= dt.timedelta(0):
            raise ValueError("session limits must be positive")
        self._store = store
        self._clock = clock
        self.idle = idle
        self.absolute = min(absolute, LONGEST_SESSION)

    def _row(self, cookie: str, data: Mapping[str, Any], *, subject: str | None,
             auth_time: dt.datetime | None, acr: str | None, amr: tuple[str, ...]
             ) -> dict[str, Any]:
        now = self._clock.now()
        payload = {"csrf": secrets.token_hex(32), "sid": secrets.token_urlsafe(16), **data}
        return {"id_hash": session_hash(cookie), "subject": subject, "auth_time": auth_time,
                "acr": acr, "amr": json.dumps(list(amr)) if amr else None,
                "data": json.dumps(payload), "created_at": now, "last_seen": now,
                "expires_at": now + self.absolute}

    def create(self, data: Mapping[str, Any] | None = None) -> tuple[str, BrowserSession]:
        """A new anonymous session: ``(cookie value, session)``."""
        cookie = secrets.token_urlsafe(32)
        row = self._row(cookie, data or {}, subject=None, auth_time=None, acr=None, amr=())
        self._store.write(lambda conn: conn.execute(sa.insert(oidc_sessions).values(**row)))
        found = self.load(cookie)
        assert found is not None
        return cookie, found

    def load(self, cookie: object, *, touch: bool = True) -> BrowserSession | None:
        """The live session of a cookie value, or None (absent, malformed, unknown, ended,
        idle too long, past its absolute limit). ``touch`` records the use."""
        if not isinstance(cookie, str) or not 20 <= len(cookie) <= MAX_COOKIE_CHARS \
                or not cookie.isascii():
            return None
        now = self._clock.now()
        key = session_hash(cookie)
        c = oidc_sessions.c
        with self._store.read() as conn:
            row = conn.execute(sa.select(oidc_sessions).where(
                c.id_hash == key, c.ended_at.is_(None))).mappings().first()
        if row is None:
            return None
        session = _session(row)
        if now >= session.expires_at or now >= session.last_seen + self.idle:
            return None
        if touch and now > session.last_seen:
            self._store.write(lambda conn: conn.execute(sa.update(oidc_sessions).where(
                c.id_hash == key, c.ended_at.is_(None)).values(last_seen=now)))
            session = replace(session, last_seen=now)
        return session

    def save_data(self, session: BrowserSession, data: Mapping[str, Any]) -> BrowserSession:
        """Replace the session's data (the CSRF secret and sid are kept)."""
        merged = {**data, "csrf": session.data["csrf"], "sid": session.sid}
        text = json.dumps(merged)
        c = oidc_sessions.c
        self._store.write(lambda conn: conn.execute(sa.update(oidc_sessions).where(
            c.id_hash == session.id_hash).values(data=text)))
        return replace(session, data=merged)

    def rotate(self, session: BrowserSession | None, *, subject: str, auth_time: dt.datetime,
               acr: str, amr: tuple[str, ...], data: Mapping[str, Any] | None = None
               ) -> tuple[str, BrowserSession]:
        """End ``session`` and start an authenticated one under a new cookie, in one
        transaction: the id a browser had before login is useless afterwards."""
        cookie = secrets.token_urlsafe(32)
        row = self._row(cookie, data or {}, subject=subject, auth_time=auth_time, acr=acr,
                        amr=amr)
        now = self._clock.now()

        def work(conn: Connection) -> None:
            if session is not None:
                self._end(conn, session.id_hash, now)
            conn.execute(sa.insert(oidc_sessions).values(**row))

        self._store.write(work)
        found = self.load(cookie, touch=False)
        assert found is not None
        return cookie, found

    def end(self, session: BrowserSession) -> bool:
        """End the session; False if it had already ended."""
        now = self._clock.now()
        return bool(self._store.write(lambda conn: self._end(conn, session.id_hash, now)))

    @staticmethod
    def _end(conn: Connection, id_hash: str, now: dt.datetime) -> int:
        c = oidc_sessions.c
        return int(conn.execute(sa.update(oidc_sessions).where(
            c.id_hash == id_hash, c.ended_at.is_(None)).values(ended_at=now)).rowcount)

    # -- CSRF -------------------------------------------------------------------------

    @staticmethod
    def csrf_token(cookie: str, session: BrowserSession) -> str:
        secret = bytes.fromhex(str(session.data["csrf"]))
        return hmac.new(secret, cookie.encode("ascii"), hashlib.sha256).hexdigest()

    @staticmethod
    def check_csrf(cookie: str, session: BrowserSession, token: object) -> bool:
        """True only if ``token`` is the CSRF token of this cookie and session."""
        if not isinstance(token, str) or len(token) != 64 or not token.isascii():
            return False
        return hmac.compare_digest(SessionStore.csrf_token(cookie, session).encode("ascii"),
                                   token.encode("ascii"))
