"""The identity registry: citizens, their level, their status (Decree 69 locking).

Pure data access over the store; enrolment rules (face match, chip check) live in
:mod:`kyso.authn.enrolment`. The raw ID number is kept here because it is the identifier the
account is for, but it never leaves through ``repr``, ``to_dict`` or an error message: those
carry the masked hint (``019******345``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from kyso.clock import Clock
from kyso.errors import IdentityError, InvalidIdentifierError
from kyso.pki.identifiers import Sex, mask_id, parse_email, parse_personal_id
from kyso.store import Store
from kyso.store.schema import identities

__all__ = [
    "AccountStatus",
    "Identity",
    "Level",
    "LockGround",
    "Person",
    "Registry",
    "new_subject",
    "parse_phone",
]


class Level(IntEnum):
    """VNeID account levels (Decree 69/2024/ND-CP)."""

    ONE = 1  # self-registered in the app, face matched against the population database
    TWO = 2  # in person with the chip ID card, portrait and fingerprints checked by an officer


class AccountStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"


class LockGround(StrEnum):
    """Why an account is locked (Decree 69/2024/ND-CP, Art. 16): each has its unlock rule."""

    HOLDER_REQUEST = "holder-request"  # the holder asked (lost phone, suspected misuse)
    TERMS_BREACH = "terms-breach"  # breach of the terms of use
    CARD_REVOKED = "card-revoked"  # the ID card was revoked or the identity data is wrong
    DECEASED = "deceased"  # the holder died or was declared dead / missing
    AUTHORITY_REQUEST = "authority-request"  # request of a competent authority (investigation)
    RELYING_PARTY_REQUEST = "relying-party-request"  # request of a connected service
    SECURITY = "security"  # the provider's own protection (compromised credentials)

    @property
    def label_vi(self) -> str:
        return _LOCK_LABELS_VI[self]


_LOCK_LABELS_VI = {
    LockGround.HOLDER_REQUEST: "Theo đề nghị của chủ thể danh tính điện tử",
    LockGround.TERMS_BREACH: "Vi phạm thỏa thuận sử dụng",
    LockGround.CARD_REVOKED: "Thẻ căn cước bị thu hồi hoặc thông tin không chính xác",
    LockGround.DECEASED: "Chủ thể đã chết, bị tuyên bố đã chết hoặc mất tích",
    LockGround.AUTHORITY_REQUEST: "Theo yêu cầu của cơ quan có thẩm quyền",
    LockGround.RELYING_PARTY_REQUEST: "Theo đề nghị của cơ quan, tổ chức kết nối",
    LockGround.SECURITY: "Bảo đảm an ninh, an toàn tài khoản",
}

_PHONE_DIGITS = 10


def parse_phone(value: str) -> str:
    """A Vietnamese mobile number: ``0xxxxxxxxx`` or ``+84xxxxxxxxx``, stored as ``+84…``."""
    if not isinstance(value, str):
        raise InvalidIdentifierError("phone number must be text")
    text = value.strip().replace(" ", "").replace(".", "").replace("-", "")
    if text.startswith("+84"):
        text = "0" + text[3:]
    if not (text.isascii() and text.isdigit() and len(text) == _PHONE_DIGITS
            and text.startswith("0") and text[1] in "35789"):
        raise InvalidIdentifierError(
            "phone number must be a Vietnamese mobile number such as 0912345678 or +84912345678"
        )
    return "+84" + text[1:]


def new_subject() -> str:
    """A fresh opaque ``sub`` (128 random bits); never derived from the ID number."""
    return "u-" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Person:
    """Validated personal data of a citizen (what the chip's DG13 or the app form carries)."""

    id_number: str = field(repr=False)
    full_name: str
    birth_date: dt.date
    sex: Sex
    phone: str | None = None
    email: str | None = None

    @classmethod
    def of(cls, *, id_number: str, full_name: str, birth_date: dt.date | str, sex: Sex | str,
           phone: str | None = None, email: str | None = None,
           today: dt.date | None = None) -> Person:
        """Validate every field; the ID number must agree with the birth year and sex."""
        if isinstance(birth_date, str):
            try:
                birth_date = dt.date.fromisoformat(birth_date)
            except ValueError:
                raise InvalidIdentifierError(
                    "date of birth must be an ISO date such as 1990-05-17"
                ) from None
        if isinstance(sex, str):
            try:
                sex = Sex(sex)
            except ValueError:
                raise InvalidIdentifierError("sex must be 'male' or 'female'") from None
        name = " ".join(str(full_name).split())
        if not name or len(name) > 100 or any(not (c.isalpha() or c in " '-.") for c in name):
            raise InvalidIdentifierError("full name must be 1-100 letters, spaces, ' - or .")
        pid = parse_personal_id(id_number, dob=birth_date, sex=sex, today=today)
        return cls(
            id_number=pid.number,
            full_name=name,
            birth_date=birth_date,
            sex=sex,
            phone=parse_phone(phone) if phone else None,
            email=parse_email(email) if email else None,
        )

    @property
    def masked_id(self) -> str:
        return mask_id(self.id_number)


@dataclass(frozen=True)
class Identity:
    """One e-ID account as stored."""

    subject: str
    person: Person
    level: Level
    status: AccountStatus
    lock_reason: LockGround | None
    locked_at: dt.datetime | None
    created_at: dt.datetime
    level2_at: dt.datetime | None
    version: int

    @property
    def id_number(self) -> str:
        return self.person.id_number

    @property
    def masked_id(self) -> str:
        return self.person.masked_id

    @property
    def locked(self) -> bool:
        return self.status is AccountStatus.LOCKED

    def to_dict(self) -> dict[str, Any]:
        """For output and events: the masked ID, never the raw number."""
        return {
            "subject": self.subject,
            "id_number": self.masked_id,
            "full_name": self.person.full_name,
            "birth_date": self.person.birth_date.isoformat(),
            "sex": self.person.sex.value,
            "level": int(self.level),
            "status": self.status.value,
            "lock_reason": self.lock_reason.value if self.lock_reason else None,
            "locked_at": self.locked_at.isoformat() if self.locked_at else None,
            "created_at": self.created_at.isoformat(),
            "level2_at": self.level2_at.isoformat() if self.level2_at else None,
        }


def _identity(row: RowMapping) -> Identity:
    person = Person(
        id_number=row["id_number"],
        full_name=row["full_name"],
        birth_date=dt.date.fromisoformat(row["birth_date"]),
        sex=Sex(row["sex"]),
        phone=row["phone"],
        email=row["email"],
    )
    return Identity(
        subject=row["subject"],
        person=person,
        level=Level(row["level"]),
        status=AccountStatus(row["status"]),
        lock_reason=LockGround(row["lock_reason"]) if row["lock_reason"] else None,
        locked_at=row["locked_at"],
        created_at=row["created_at"],
        level2_at=row["level2_at"],
        version=row["version"],
    )


_COLUMNS = [c for c in identities.c if c.name not in ("password_hash", "level2_evidence")]


class Registry:
    """Read and change e-ID accounts. Every write is one transaction."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    # -- reads ------------------------------------------------------------------------

    def find(self, id_number: str) -> Identity | None:
        """The account of a (syntactically valid) ID number, or None."""
        if not (isinstance(id_number, str) and len(id_number) == 12 and id_number.isascii()
                and id_number.isdigit()):
            return None
        with self._store.read() as conn:
            row = conn.execute(
                sa.select(*_COLUMNS).where(identities.c.id_number == id_number)
            ).mappings().first()
        return _identity(row) if row else None

    def get(self, id_number: str) -> Identity:
        """The account of ``id_number``; :class:`IdentityError` naming the masked number."""
        parse_personal_id(id_number)  # a clear message for a malformed number
        found = self.find(id_number)
        if found is None:
            raise IdentityError(f"no e-ID account for {mask_id(id_number)}")
        return found

    def by_subject(self, subject: str) -> Identity:
        with self._store.read() as conn:
            row = conn.execute(
                sa.select(*_COLUMNS).where(identities.c.subject == subject)
            ).mappings().first()
        if row is None:
            raise IdentityError("no e-ID account with that subject")
        return _identity(row)

    def password_hash(self, subject: str) -> str | None:
        with self._store.read() as conn:
            return conn.execute(
                sa.select(identities.c.password_hash).where(identities.c.subject == subject)
            ).scalar()

    def level2_evidence(self, subject: str) -> Mapping[str, Any] | None:
        with self._store.read() as conn:
            text = conn.execute(
                sa.select(identities.c.level2_evidence).where(identities.c.subject == subject)
            ).scalar()
        return json.loads(text) if text else None

    def count(self) -> int:
        with self._store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(identities)).scalar()
                       or 0)

    # -- writes -----------------------------------------------------------------------

    def create(self, person: Person, *, password_hash: str | None, level: Level = Level.ONE,
               face_score: float | None = None, subject: str | None = None,
               officer: str | None = None,
               evidence: Mapping[str, Any] | None = None) -> Identity:
        """A new account; :class:`IdentityError` if the ID number already has one.

        A level-2 account (officer-attended registration with a chip check) is created whole,
        in the same transaction, with its ``officer`` and ``evidence``; without them it is an
        import from another register (bulk loads, tests)."""
        if level is Level.ONE and (officer is not None or evidence is not None):
            raise IdentityError("only a level-2 account has an enrolment officer and evidence")
        now = self._clock.now()
        subject = subject or new_subject()
        row: dict[str, Any] = {
            "subject": subject,
            "id_number": person.id_number,
            "full_name": person.full_name,
            "birth_date": person.birth_date.isoformat(),
            "sex": person.sex.value,
            "phone": person.phone,
            "email": person.email,
            "level": int(level),
            "status": AccountStatus.ACTIVE.value,
            "password_hash": password_hash,
            "password_changed_at": now if password_hash else None,
            "face_score": face_score,
            "level2_at": now if level is Level.TWO else None,
            "level2_officer": officer,
            "level2_evidence": (json.dumps(dict(evidence), sort_keys=True, ensure_ascii=False)
                                if evidence is not None else None),
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }

        def work(conn: Connection) -> None:
            taken = conn.execute(
                sa.select(identities.c.subject).where(identities.c.id_number == person.id_number)
            ).first()
            if taken is not None:
                raise IdentityError(f"an e-ID account for {person.masked_id} already exists")
            conn.execute(sa.insert(identities).values(**row))

        try:
            self._store.write(work)
        except sa.exc.IntegrityError:  # a concurrent registration won the race
            raise IdentityError(
                f"an e-ID account for {person.masked_id} already exists"
            ) from None
        return self.by_subject(subject)

    def _update(self, subject: str, values: Mapping[str, Any],
                where: Any = None) -> Identity:
        def work(conn: Connection) -> int:
            stmt = sa.update(identities).where(identities.c.subject == subject)
            if where is not None:
                stmt = stmt.where(where)
            return conn.execute(stmt.values(
                **values, updated_at=self._clock.now(), version=identities.c.version + 1
            )).rowcount

        if self._store.write(work) != 1:
            self.by_subject(subject)  # raises when the account does not exist
            raise IdentityError("the e-ID account changed meanwhile; try again")
        return self.by_subject(subject)

    def set_password_hash(self, subject: str, password_hash: str) -> Identity:
        return self._update(subject, {"password_hash": password_hash,
                                      "password_changed_at": self._clock.now()})

    def promote_level2(self, subject: str, *, person: Person, officer: str,
                       evidence: Mapping[str, Any]) -> Identity:
        """Level 2 after an officer-attended check; the chip's personal data replaces the
        self-declared one (the chip is authoritative)."""
        return self._update(subject, {
            "level": int(Level.TWO),
            "full_name": person.full_name,
            "birth_date": person.birth_date.isoformat(),
            "sex": person.sex.value,
            "level2_at": self._clock.now(),
            "level2_officer": officer,
            "level2_evidence": json.dumps(dict(evidence), sort_keys=True, ensure_ascii=False),
        })

    def lock(self, subject: str, ground: LockGround, *, by: str) -> Identity:
        """Lock the account (idempotent per ground: locking a locked account changes the
        recorded ground to the new one)."""
        return self._update(subject, {
            "status": AccountStatus.LOCKED.value,
            "lock_reason": ground.value,
            "locked_at": self._clock.now(),
            "locked_by": by,
        })

    def unlock(self, subject: str, *, by: str) -> Identity:
        """Unlock when the grounds have ended. A deceased holder's account is never unlocked;
        :class:`IdentityError` if the account is not locked."""
        current = self.by_subject(subject)
        if not current.locked:
            raise IdentityError(f"the e-ID account of {current.masked_id} is not locked")
        if current.lock_reason is LockGround.DECEASED:
            raise IdentityError(
                f"the e-ID account of {current.masked_id} was locked because the holder died; "
                "it cannot be unlocked"
            )
        return self._update(subject, {
            "status": AccountStatus.ACTIVE.value,
            "lock_reason": None,
            "locked_at": None,
            "locked_by": by,
        }, where=identities.c.status == AccountStatus.LOCKED.value)
