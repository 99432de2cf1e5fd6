"""The gateway's rules in one place: who may ask (:class:`Requester`, a level-2 citizen whose
token the caller verified), how fresh the login must be, how long activation data lives, how
many hashes one request may carry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from kyso.authn.tokens import DEFAULT_LEEWAY
from kyso.errors import StepUpRequiredError

__all__ = ["AUDIENCE", "FRESH_LOGIN", "MULTISIGN", "REALM", "SAD_LIFETIME", "Requester",
           "require_level2", "require_step_up"]

AUDIENCE = "kyso-csc"  # access tokens for the gateway: kyso id client add … --audience kyso-csc
REALM = "kyso-csc"
FRESH_LOGIN = 120  # seconds: enrolment and authorization need a login at most this old
SAD_LIFETIME = 300  # seconds: signature activation data expires after this
MULTISIGN = 10  # hashes per authorization / signHash call
LEVEL2 = 2


@dataclass(frozen=True)
class Requester:
    """The citizen behind a request, as the caller verified it (the server: a bearer token of
    this provider for :data:`AUDIENCE`). ``actor`` is her pseudonym (every event carries it),
    ``jti`` the access token's id (one authorization per token), ``auth_time`` when she logged
    in."""

    subject: str = field(repr=False)
    actor: str
    jti: str
    client_id: str
    level: int
    auth_time: dt.datetime | None
    source: str | None = None  # where the request came from (the client's IP), for events
    request_id: str = ""

    @property
    def details(self) -> dict[str, Any]:
        """What every event about this request carries (never the subject or the token)."""
        return {"jti": self.jti, "client_id": self.client_id}

    @property
    def where(self) -> dict[str, Any]:
        """The event fields of this request: actor, source, request id."""
        return {"actor": self.actor, "source": self.source, "request_id": self.request_id}


def require_level2(requester: Requester) -> None:
    if requester.level < LEVEL2:
        raise StepUpRequiredError(f"a level-2 login is required (this one is level "
                                  f"{requester.level})")


def require_step_up(requester: Requester, now: dt.datetime) -> None:
    """A level-2 login at most :data:`FRESH_LOGIN` seconds old (with the token leeway)."""
    require_level2(requester)
    limit = dt.timedelta(seconds=FRESH_LOGIN) + DEFAULT_LEEWAY
    if requester.auth_time is None or now - requester.auth_time > limit:
        raise StepUpRequiredError(f"the login is older than {FRESH_LOGIN} s; log in again "
                                  "(step-up with prompt=login max_age=0) to approve this")
