"""Roles of e-ID identities (Keycloak realm roles): who may use the privileged HTTP APIs.

A role is granted to an identity (``identity_roles``) by an administrator and lasts until it
is revoked. The provider puts the subject's *current* roles into every access token it mints
(claim ``roles``, and Keycloak's ``realm_access.roles``; never into ID tokens), and an API that
needs a role checks the token with :meth:`kyso.authn.rp.TokenVerifier.verify` (``role=``) and
then, with :func:`check_holder`, that the provider still stands behind it: a role revoked, an
account locked or a token revoked takes effect at once, not when the token expires.

Grant and revoke are idempotent (granting a held role, or revoking one not held, changes
nothing and says so); every call records one ``ROLE_GRANT`` / ``ROLE_REVOKE`` event (layer
authn) with the citizen's pseudonym as object and the masked ID number, never the raw one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kyso.audit import Layer, Outcome
from kyso.authn.registry import Identity, Registry
from kyso.errors import AuthnError, IdentityError, TokenError
from kyso.pki.identifiers import mask_id
from kyso.store import Store
from kyso.store.schema import identities, identity_roles, oidc_clients, oidc_tokens

if TYPE_CHECKING:
    from kyso.authn.rp import VerifiedToken
    from kyso.context import Kyso

__all__ = [
    "Role",
    "RoleChange",
    "RoleGrant",
    "Roles",
    "check_holder",
    "parse_role",
    "roles_of",
]


class Role(StrEnum):
    """The roles kyso knows. ``auditor`` reads the auditor API (``/api/v1/audit/…``);
    ``ca-admin`` is reserved for issuing and revoking over HTTP."""

    AUDITOR = "auditor"
    CA_ADMIN = "ca-admin"


def parse_role(value: Role | str) -> Role:
    """``value`` as a :class:`Role`; :class:`AuthnError` naming the known roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise AuthnError(f"unknown role {shown!r}; the roles are "
                         + ", ".join(r.value for r in Role)) from None


def roles_of(store: Store, subject: str) -> tuple[str, ...]:
    """The roles ``subject`` holds now, sorted (what an access token carries)."""
    r = identity_roles.c
    with store.read() as conn:
        found = conn.execute(sa.select(r.role).where(r.subject == subject)).scalars().all()
    return tuple(sorted(str(role) for role in found))


@dataclass(frozen=True)
class RoleGrant:
    """One role held by one identity, as ``kyso id role list`` shows it."""

    subject: str
    id_hint: str  # the masked ID number
    role: str
    granted_by: str
    granted_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id_number": self.id_hint, "subject": self.subject, "role": self.role,
                "granted_by": self.granted_by, "granted_at": self.granted_at.isoformat()}


@dataclass(frozen=True)
class RoleChange:
    """The result of a grant or a revoke: ``changed`` is False when nothing had to change."""

    identity: Identity
    role: Role
    granted: bool  # True for a grant, False for a revoke
    changed: bool
    roles: tuple[str, ...]  # every role held afterwards, sorted

    def to_dict(self) -> dict[str, Any]:
        return {"id_number": self.identity.masked_id, "subject": self.identity.subject,
                "role": self.role.value, "action": "grant" if self.granted else "revoke",
                "changed": self.changed, "roles": list(self.roles)}


class Roles:
    """Grant, revoke and list the roles of e-ID identities (each write one transaction and
    one audit event)."""

    def __init__(self, kyso: Kyso) -> None:
        self.kyso = kyso
        self.registry = Registry(kyso.store, kyso.clock)

    def of(self, subject: str) -> tuple[str, ...]:
        return roles_of(self.kyso.store, subject)

    def grant(self, id_number: str, role: Role | str, *, by: str | None = None) -> RoleChange:
        """Give ``role`` to the account of ``id_number`` (idempotent)."""
        return self._change(id_number, parse_role(role), grant=True, by=by or self.kyso.actor)

    def revoke(self, id_number: str, role: Role | str, *, by: str | None = None) -> RoleChange:
        """Take ``role`` from the account of ``id_number`` (idempotent)."""
        return self._change(id_number, parse_role(role), grant=False, by=by or self.kyso.actor)

    def list(self, id_number: str | None = None) -> list[RoleGrant]:
        """Every role held (by the account of ``id_number`` only, when given), by masked ID
        number and role."""
        r, i = identity_roles.c, identities.c
        query = (sa.select(r.subject, r.role, r.granted_by, r.granted_at, i.id_number)
                 .join(identities, i.subject == r.subject))
        if id_number is not None:
            query = query.where(r.subject == self.registry.get(id_number.strip()).subject)
        with self.kyso.store.read() as conn:
            rows = conn.execute(query).mappings().all()
        grants = [RoleGrant(row["subject"], mask_id(row["id_number"]), row["role"],
                            row["granted_by"], row["granted_at"]) for row in rows]
        return sorted(grants, key=lambda g: (g.id_hint, g.subject, g.role))

    def _change(self, id_number: str, role: Role, *, grant: bool, by: str) -> RoleChange:
        action = "ROLE_GRANT" if grant else "ROLE_REVOKE"
        number = id_number.strip() if isinstance(id_number, str) else id_number
        try:
            identity = self.registry.get(number)
        except IdentityError as exc:
            if isinstance(number, str) and len(number) == 12 and number.isdigit():
                self.kyso.record(Layer.AUTHN, action, Outcome.FAILURE,
                                 object=self.kyso.pseudonyms.pseudonym(number), actor=by,
                                 id_hint=mask_id(number), role=role.value, error=str(exc))
            raise
        changed = self._write(identity.subject, role, grant=grant, by=by)
        roles = self.of(identity.subject)
        self.kyso.record(Layer.AUTHN, action, Outcome.SUCCESS,
                         object=self.kyso.pseudonyms.pseudonym(identity.id_number), actor=by,
                         id_hint=identity.masked_id, role=role.value, changed=changed,
                         roles=list(roles))
        return RoleChange(identity, role, grant, changed, roles)

    def _write(self, subject: str, role: Role, *, grant: bool, by: str) -> bool:
        r = identity_roles.c
        held = sa.and_(r.subject == subject, r.role == role.value)
        now = self.kyso.now()

        def work(conn: Connection) -> bool:
            if not grant:
                return bool(conn.execute(sa.delete(identity_roles).where(held)).rowcount)
            if conn.execute(sa.select(r.role).where(held)).first() is not None:
                return False
            conn.execute(sa.insert(identity_roles).values(subject=subject, role=role.value,
                                                          granted_by=by, granted_at=now))
            return True

        try:
            return self.kyso.store.write(work)
        except sa.exc.IntegrityError:  # a concurrent grant of the same role won the race
            return False


def check_holder(store: Store, token: VerifiedToken, role: Role | str | None) -> None:
    """That the provider still stands behind a verified access token (that needs ``role``, if
    given): the token is one this provider recorded and has not revoked, its client is active,
    the account exists and is not locked, and it holds ``role`` *now*. :class:`~kyso.authn.rp.
    InsufficientRoleError` when the role was revoked since, :class:`TokenError` otherwise."""
    from kyso.authn.rp import InsufficientRoleError

    wanted = None if role is None else parse_role(role)
    t, i, r, c = oidc_tokens.c, identities.c, identity_roles.c, oidc_clients.c
    with store.read() as conn:
        issued = conn.execute(sa.select(t.kind, t.revoked_at, t.subject).where(
            t.jti == token.claims.jwt_id)).first()
        client = conn.execute(sa.select(c.status).where(
            c.client_id == (token.client_id or ""))).scalar()
        status = conn.execute(sa.select(i.status).where(i.subject == token.subject)).scalar()
        held = None if wanted is None else conn.execute(sa.select(r.role).where(
            r.subject == token.subject, r.role == wanted.value)).first()
    if issued is None or issued.kind != "access" or issued.subject != token.subject:
        raise TokenError("the access token is unknown to this provider")
    if issued.revoked_at is not None:
        raise TokenError("the access token has been revoked")
    if client != "active":
        raise TokenError("the client the access token was issued to is disabled or unknown")
    if status is None:
        raise TokenError("the account no longer exists")
    if status != "active":
        raise TokenError("the account is locked")
    if wanted is not None and held is None:
        raise InsufficientRoleError(f"the account no longer holds the {wanted.value} role",
                                    role=wanted.value)
