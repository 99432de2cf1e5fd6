"""Helpers of the signing-gateway library tests (imported by name; their fixtures are in
gateway_fixtures.py): level-2 citizens in the registry, and a :class:`Requester` as a verified
token would describe one."""

from __future__ import annotations

import datetime as dt
import uuid

from kyso.authn.registry import Identity, Level, Person, Registry
from kyso.context import Kyso
from kyso.signing.gateway import Requester

BINH = {"id_number": "033301000123", "full_name": "Trần Thị Bình", "birth_date": "2001-05-17",
        "sex": "female", "phone": "0912345678"}
AN = {"id_number": "019099012345", "full_name": "Nguyễn Văn An", "birth_date": "1999-04-02",
      "sex": "male"}


def level2(kyso: Kyso, data: dict[str, str]) -> Identity:
    """A citizen enrolled at level 2 (chip checked), without a password."""
    return Registry(kyso.store, kyso.clock).create(
        Person.of(**data),  # type: ignore[arg-type]
        password_hash=None, level=Level.TWO, officer="officer:test",
        evidence={"chip": "checked (test)"})


def requester(kyso: Kyso, identity: Identity, *, level: int = 2, login_age: int = 0,
              jti: str | None = None) -> Requester:
    """The citizen as a verified token would describe her: logged in ``login_age`` s ago."""
    return Requester(subject=identity.subject,
                     actor=kyso.pseudonyms.pseudonym(identity.id_number),
                     jti=jti or uuid.uuid4().hex, client_id="dichvucong", level=level,
                     auth_time=kyso.now() - dt.timedelta(seconds=login_age))
