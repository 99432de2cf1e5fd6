"""The objects every command and request needs, built once at start-up and passed down."""

from __future__ import annotations

import copy
import datetime as dt
import getpass
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from kyso.audit import AuditEvent, AuditLog, AuditSink, Layer, Outcome, Pseudonymizer
from kyso.clock import Clock, SystemClock
from kyso.config import Settings
from kyso.pki.profiles import ProfileCatalogue, load_catalogue
from kyso.store import Store, open_store


@dataclass
class Kyso:
    settings: Settings
    clock: Clock
    store: Store
    audit: AuditSink
    pseudonyms: Pseudonymizer
    profiles_dir: Path
    actor: str
    source: str = "cli"
    request_id: str = ""  # a server request's id, on every event this context records

    def acting(self, actor: str, *, source: str | None = None, request_id: str = "") -> Kyso:
        """This context as someone else: the events the library records through it carry
        ``actor``, ``source`` and ``request_id`` (an admin's request on the server); the
        store, the audit log and the loaded profiles are shared."""
        view = copy.copy(self)
        view.actor = actor
        view.source = source or self.source
        view.request_id = request_id or self.request_id
        return view

    @cached_property
    def profiles(self) -> ProfileCatalogue:
        """Loaded on first use, so revocation and CRLs never depend on the profile files."""
        return load_catalogue(self.profiles_dir)

    def now(self) -> dt.datetime:
        return self.clock.now()

    def record(
        self,
        layer: Layer,
        action: str,
        outcome: Outcome,
        object: str = "",
        *,
        actor: str | None = None,
        source: str | None = None,
        request_id: str = "",
        **details: Any,
    ) -> None:
        """Record one audit event. ``actor``, ``source`` and ``request_id`` override this
        context's for one event (a citizen's pseudonym, a server request)."""
        # The event built in place, as event() builds it: this runs in every request thread
        # before the GIL goes to the next one, so it is kept short.
        self.audit.record(AuditEvent(self.clock.now(), layer, action, outcome, actor or self.actor,
                                     object, details, source or self.source,
                                     request_id or self.request_id))

    def event(self, layer: Layer, action: str, outcome: Outcome, object: str = "", *,
              actor: str | None = None, source: str | None = None, request_id: str = "",
              **details: Any) -> AuditEvent:
        return AuditEvent(time=self.now(), layer=layer, action=action, outcome=outcome,
                          actor=actor or self.actor, object=object, details=details,
                          source=source or self.source,
                          request_id=request_id or self.request_id)

    def close(self) -> None:
        self.store.close()
        close = getattr(self.audit, "close", None)
        if close is not None:
            close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return f"uid:{os.getuid()}"


def open_kyso(
    settings: Settings,
    *,
    clock: Clock | None = None,
    audit: AuditSink | None = None,
    actor: str | None = None,
    source: str = "cli",
) -> Kyso:
    clock = clock or SystemClock()
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings.database_url, now=clock.now)
    return Kyso(
        settings=settings,
        clock=clock,
        store=store,
        audit=audit or AuditLog(settings.audit_dir, settings.audit, clock),
        pseudonyms=Pseudonymizer.from_file(settings.pseudonym_key_path),
        profiles_dir=settings.profiles_dir,
        actor=actor or f"admin:{_user()}",
        source=source,
    )
