"""Signature activation data (SAD): ``credentials/authorize`` creates it, ``signatures/signHash``
consumes it.

A SAD is 256 random bits handed to the client once; the store keeps only its SHA-256. It is
bound to the credential, the citizen, the exact set of hashes (order does not matter, no
duplicates), their algorithm and their number; it lives :data:`~kyso.signing.gateway.policy.
SAD_LIFETIME` seconds and is used once: :func:`consume` marks it with one conditional
``UPDATE … WHERE consumed_at IS NULL`` inside a write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``SERIALIZABLE``), so of two concurrent uses exactly one wins. Each access token may
authorize once (``jti`` is unique in the table): another approval needs another step-up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import ActivationError, GatewayRequestError, KysoError, StepUpRequiredError
from kyso.signing.gateway.algorithms import HashAlgorithm
from kyso.signing.gateway.credentials import usable_credential
from kyso.signing.gateway.policy import MULTISIGN, SAD_LIFETIME, Requester, require_step_up
from kyso.store import schema

__all__ = ["Activation", "authorize", "check_hashes", "consume", "hash_details"]

_SA = schema.signing_authorizations


@dataclass(frozen=True)
class Activation:
    """The answer of ``credentials/authorize``. The SAD stays out of ``repr``."""

    sad: str = field(repr=False)
    expires_in: int
    credential_id: str
    serial: str
    hash_algorithm: HashAlgorithm
    hashes: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"SAD": self.sad, "expiresIn": self.expires_in}


def sad_digest(sad: str) -> str:
    return hashlib.sha256(sad.encode("utf-8")).hexdigest()


def hash_details(hashes: list[bytes] | tuple[bytes, ...], algorithm: HashAlgorithm | None
                 ) -> dict[str, Any]:
    """What events say about the document hashes (hex; not secret)."""
    return {"hashes": [h.hex() for h in hashes],
            "hash_algorithm": algorithm.label if algorithm else None}


def check_hashes(hashes: list[bytes], algorithm: HashAlgorithm) -> None:
    """1 to :data:`MULTISIGN` hashes, each of the algorithm's length, no duplicates."""
    if not 1 <= len(hashes) <= MULTISIGN:
        raise GatewayRequestError(f"hashes: give 1 to {MULTISIGN} hashes, not {len(hashes)}")
    for index, digest in enumerate(hashes):
        if len(digest) != algorithm.size:
            raise GatewayRequestError(f"hashes[{index}]: {len(digest)} bytes, but a "
                                      f"{algorithm.label} hash has {algorithm.size}")
    if len(set(hashes)) != len(hashes):
        raise GatewayRequestError("hashes: the same hash appears twice")


def authorize(kyso: Kyso, requester: Requester, credential_id: str, hashes: list[bytes],
              algorithm: HashAlgorithm, num_signatures: int) -> Activation:
    """SAD for signing exactly ``hashes`` with the requester's credential. Needs a fresh
    level-2 login whose token has not authorized before. Every outcome is one
    ``CSC_AUTHORIZE`` event (pseudonym, credential id, hashes, token id)."""
    details = {**hash_details(hashes, algorithm), "num_signatures": num_signatures,
               **requester.details}
    try:
        activation = _authorize(kyso, requester, credential_id, hashes, algorithm,
                                num_signatures)
    except KysoError as exc:
        kyso.record(Layer.SIGNING, "CSC_AUTHORIZE", Outcome.FAILURE, object=credential_id[:64],
                    reason=str(exc), **details, **requester.where)
        raise
    kyso.record(Layer.SIGNING, "CSC_AUTHORIZE", Outcome.SUCCESS, object=credential_id,
                serial=activation.serial, expires_in=activation.expires_in, **details,
                **requester.where)
    return activation


def _authorize(kyso: Kyso, requester: Requester, credential_id: str, hashes: list[bytes],
               algorithm: HashAlgorithm, num_signatures: int) -> Activation:
    now = kyso.now()
    require_step_up(requester, now)
    if isinstance(num_signatures, bool) or not isinstance(num_signatures, int) \
            or not 1 <= num_signatures <= MULTISIGN:
        raise GatewayRequestError(f"numSignatures: must be 1 to {MULTISIGN}")
    check_hashes(hashes, algorithm)
    if num_signatures != len(hashes):
        raise GatewayRequestError(f"numSignatures: {num_signatures}, but {len(hashes)} hashes "
                                  "were given; they must be equal")
    if not requester.jti:
        raise StepUpRequiredError("the token has no id (jti), so its approval cannot be "
                                  "counted; log in again")
    credential = usable_credential(kyso, requester.subject, credential_id, now)
    sad = secrets.token_urlsafe(32)
    row = {"sad_hash": sad_digest(sad), "credential_id": credential.credential_id,
           "subject": requester.subject, "jti": requester.jti, "client_id": requester.client_id,
           "hash_algorithm": algorithm.label, "hashes": json.dumps(sorted(h.hex() for h in hashes)),
           "num_signatures": num_signatures, "created_at": now,
           "expires_at": now + dt.timedelta(seconds=SAD_LIFETIME), "consumed_at": None}

    def work(conn: sa.Connection) -> None:
        if conn.execute(sa.select(_SA.c.sad_hash).where(_SA.c.jti == requester.jti)).first():
            raise _used_login()
        conn.execute(sa.insert(_SA).values(**row))

    try:
        kyso.store.write(work)
    except sa.exc.IntegrityError:  # a concurrent authorize with the same token won
        raise _used_login() from None
    return Activation(sad, SAD_LIFETIME, credential.credential_id, credential.serial, algorithm,
                      tuple(hashes))


def _used_login() -> StepUpRequiredError:
    return StepUpRequiredError("this login has already authorized a signature; log in again "
                               "(step-up) to approve another")


def consume(kyso: Kyso, requester: Requester, credential_id: str, sad: str, hashes: list[bytes],
            algorithm: HashAlgorithm) -> None:
    """Use the SAD for ``hashes`` once, or :class:`ActivationError` naming why not (unknown,
    another credential's, expired, already used, other hashes, another count or algorithm).
    A SAD presented with the wrong hashes stays usable for the right ones."""
    if not isinstance(sad, str) or not sad or len(sad) > 256:
        raise ActivationError("SAD: unknown activation data")
    digest, now = sad_digest(sad), kyso.now()
    given = sorted(h.hex() for h in hashes)

    def work(conn: sa.Connection) -> None:
        row = conn.execute(sa.select(_SA).where(_SA.c.sad_hash == digest)).mappings().first()
        if row is None or row["subject"] != requester.subject:
            raise ActivationError("SAD: unknown activation data")
        if row["credential_id"] != credential_id:
            raise ActivationError("SAD: issued for another credential")
        if row["consumed_at"] is not None:
            raise ActivationError("SAD: already used; authorize again")
        if now >= row["expires_at"]:
            raise ActivationError(f"SAD: expired (valid {SAD_LIFETIME} s); authorize again")
        if row["hash_algorithm"] != algorithm.label:
            raise ActivationError(f"SAD: authorized for {row['hash_algorithm']} hashes, not "
                                  f"{algorithm.label}")
        if len(hashes) != row["num_signatures"]:
            raise ActivationError(f"SAD: authorized for {row['num_signatures']} signature(s), "
                                  f"but {len(hashes)} hash(es) were given")
        if given != json.loads(row["hashes"]):
            raise ActivationError("SAD: not authorized for these hashes")
        done = conn.execute(sa.update(_SA).where(_SA.c.sad_hash == digest,
                                                 _SA.c.consumed_at.is_(None))
                            .values(consumed_at=now)).rowcount
        if done != 1:
            raise ActivationError("SAD: already used; authorize again")

    kyso.store.write(work)
