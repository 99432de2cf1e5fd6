"""Locking an e-ID account suspends its signing credentials; unlocking resumes them.

:func:`suspend_for_lock` (called by :func:`kyso.authn.enrolment.lock_identity`) marks each
enabled credential suspended and puts its certificate on hold (:func:`kyso.pki.lifecycle.hold`:
the CRL lists it and OCSP answers revoked / certificateHold), remembering whether *this lock*
placed the hold. :func:`resume_after_unlock` (from ``unlock_identity``) releases only those
holds — a hold an administrator placed for another reason stays — and clears the suspension.

The credential is marked before the certificate is held, so a crash in between leaves a hold to
release, never a hold nobody will release. Each credential's change is one
``CSC_CREDENTIAL_SUSPEND`` / ``CSC_CREDENTIAL_RESUME`` event (layer signing) next to the PKI's
own ``CERT_STATUSCHANGE``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import CertificateNotFoundError, RevocationError
from kyso.pki import lifecycle
from kyso.signing.gateway.credentials import CredentialStatus
from kyso.store import schema

__all__ = ["resume_after_unlock", "suspend_for_lock"]

_SC = schema.signing_credentials


def suspend_for_lock(kyso: Kyso, subject: str, *, by: str, **details: Any) -> list[str]:
    """Suspend the citizen's enabled credentials (see the module docstring); the ids
    suspended now (already suspended ones are left as they are)."""
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(_SC.c.credential_id, _SC.c.serial).where(
            _SC.c.subject == subject, _SC.c.status == CredentialStatus.ENABLED.value,
            _SC.c.suspended_at.is_(None))).all()
    done = []
    for credential_id, serial in rows:
        now = kyso.now()

        def mark(conn: sa.Connection, cid: str = credential_id, at: Any = now) -> int:
            return int(conn.execute(sa.update(_SC).where(
                _SC.c.credential_id == cid, _SC.c.suspended_at.is_(None))
                .values(suspended_at=at, hold_placed=True)).rowcount)

        def unmark(conn: sa.Connection, cid: str = credential_id) -> None:
            conn.execute(sa.update(_SC).where(_SC.c.credential_id == cid)
                         .values(hold_placed=False))

        if not kyso.store.write(mark):
            continue  # suspended meanwhile by a concurrent lock
        try:
            lifecycle.hold(kyso, serial)
            placed = True
        except (RevocationError, CertificateNotFoundError):  # already on hold, or revoked
            placed = False
            kyso.store.write(unmark)
        kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_SUSPEND", Outcome.SUCCESS,
                    object=credential_id, actor=by, serial=serial, hold_placed=placed, **details)
        done.append(credential_id)
    return done


def resume_after_unlock(kyso: Kyso, subject: str, *, by: str, **details: Any) -> list[str]:
    """Release the holds the lock placed and clear the suspension; the ids resumed."""
    with kyso.store.read() as conn:
        rows = conn.execute(sa.select(_SC.c.credential_id, _SC.c.serial, _SC.c.hold_placed)
                            .where(_SC.c.subject == subject, _SC.c.suspended_at.is_not(None))
                            ).all()
    done = []
    for credential_id, serial, hold_placed in rows:
        released = False
        if hold_placed:
            try:
                lifecycle.release(kyso, serial)
                released = True
            except (RevocationError, CertificateNotFoundError):  # released or revoked meanwhile
                released = False

        def clear(conn: sa.Connection, cid: str = credential_id) -> int:
            return int(conn.execute(sa.update(_SC).where(
                _SC.c.credential_id == cid, _SC.c.suspended_at.is_not(None))
                .values(suspended_at=None, hold_placed=False)).rowcount)

        if not kyso.store.write(clear):
            continue
        kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_RESUME", Outcome.SUCCESS,
                    object=credential_id, actor=by, serial=serial, hold_released=released,
                    **details)
        done.append(credential_id)
    return done
