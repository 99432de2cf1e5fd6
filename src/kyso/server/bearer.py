"""Callers of the token-protected APIs (auditor, CA administration, signing gateway): an
``Authorization: Bearer <access token>`` minted by this server's own provider.

:func:`authenticate` verifies the token with :class:`kyso.authn.rp.TokenVerifier` over the
provider's keys for the router's :class:`BearerPolicy` (audience, minimum level, optional
freshness of the login and role), then asks the store whether the provider still stands behind
it (:func:`kyso.authn.roles.check_holder`): a revoked token or role, a disabled client or a
locked account is refused at once. Refusals follow RFC 6750 / RFC 9470 and carry the actor to
record (the caller's pseudonym once the token verified): 401 with ``WWW-Authenticate`` for a
missing or bad token, too low a level or too old a login; 403 ``insufficient_scope`` without
the role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kyso.authn.registry import Level, Registry
from kyso.authn.roles import Role, check_holder
from kyso.authn.rp import (
    InsufficientLevelError,
    InsufficientRoleError,
    TokenVerifier,
    VerifiedToken,
    bearer_token,
    invalid_token_challenge,
)
from kyso.context import Kyso
from kyso.errors import IdentityError, TokenError
from kyso.server.api import ApiError

__all__ = ["BearerPolicy", "Caller", "Refused", "authenticate", "pseudonym_of"]


@dataclass(frozen=True)
class BearerPolicy:
    """What a router asks of its callers' access tokens. ``max_age`` (seconds): the login
    behind the token must be at most this old (a fresh step-up)."""

    audience: str
    realm: str
    min_level: Level = Level.TWO
    role: Role | None = None
    max_age: int | None = None


@dataclass(frozen=True)
class Caller:
    """Who is asking: the pseudonym every event of this person carries, and the token."""

    actor: str
    client_id: str
    level: int
    subject: str = field(repr=False)
    token: VerifiedToken = field(repr=False)

    @property
    def details(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "level": self.level}


class Refused(ApiError):
    """A refused caller, with the actor to record (the pseudonym once the token verified)."""

    def __init__(self, status: int, error: str, description: str, challenge: str,
                 actor: str = "anonymous") -> None:
        super().__init__(status, error, description, {"WWW-Authenticate": challenge})
        self.actor = actor


def pseudonym_of(kyso: Kyso, subject: str) -> str:
    """The pseudonym of the account behind a token's ``sub`` (as the provider's events carry
    it), or ``unknown``."""
    try:
        return kyso.pseudonyms.pseudonym(Registry(kyso.store, kyso.clock).by_subject(subject)
                                         .id_number)
    except IdentityError:
        return "unknown"


def authenticate(kyso: Kyso, verifier: TokenVerifier, headers: list[str],
                 policy: BearerPolicy) -> Caller:
    """The caller behind the ``Authorization`` headers, or :class:`Refused`."""
    if not headers:  # RFC 6750 §3.1: no credentials, no error code in the challenge
        raise Refused(401, "invalid_request", "a bearer access token is required",
                      f'Bearer realm="{policy.realm}"')
    try:
        token = verifier.verify(bearer_token(headers), audience=policy.audience)
    except TokenError as exc:
        raise _invalid(exc, policy.realm) from None
    actor = pseudonym_of(kyso, token.subject)  # a login too weak or too old is still someone
    try:
        verifier.require(token, min_level=policy.min_level, max_age=policy.max_age)
    except InsufficientLevelError as exc:
        raise Refused(401, "insufficient_user_authentication", str(exc),
                      exc.www_authenticate, actor=actor) from None
    try:
        if policy.role is not None and not token.has_role(policy.role.value):
            raise InsufficientRoleError(f"the token does not carry the {policy.role.value} role",
                                        role=policy.role.value)
        check_holder(kyso.store, token, policy.role)
    except InsufficientRoleError as exc:
        raise Refused(403, "insufficient_scope", str(exc), exc.www_authenticate,
                      actor=actor) from None
    except TokenError as exc:
        raise _invalid(exc, policy.realm, actor) from None
    return Caller(actor, token.client_id or "", int(token.level), token.subject, token)


def _invalid(exc: TokenError, realm: str, actor: str = "anonymous") -> Refused:
    return Refused(401, "invalid_token", str(exc), invalid_token_challenge(exc, realm),
                   actor=actor)
