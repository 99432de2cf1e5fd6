"""The one structlog configuration of kyso: structured logs that cannot leak secrets.

The CLI and the server call :func:`configure_logging` once at start-up; library code only does
``structlog.get_logger()``. Every log line passes through this chain:

1. ``merge_contextvars`` first, so ``bind_contextvars(request_id=…)`` reaches every line;
2. the level name;
3. ``TimeStamper(fmt="iso", utc=True)``: ISO 8601 in UTC ending in ``Z`` (with ``utc=False``
   structlog writes local time *without* an offset, which no one can place in time);
4. exceptions rendered without local variables: in JSON ``dict_tracebacks`` built from
   ``ExceptionDictTransformer(show_locals=False)``, on the console a plain traceback (both of
   structlog's defaults show locals, and a measured test leaked a PIN that way);
5. redaction, after the traceback so exception messages are cleaned too: values under
   secret-named keys (password, passphrase, otp, pin, secret, private_key, token, …; the rule of
   :func:`kyso.audit.events.scrub`) become ``[redacted]``; 12-digit ID numbers anywhere in text
   are masked (``001******345``); values under ID keys (``citizen_id``, ``personal_id``,
   ``id_number``, ``cccd``, ``cmnd``, ``holder_id``, …) become the masked hint, plus the keyed
   pseudonym when a :class:`~kyso.audit.pseudonym.Pseudonymizer` is given (the same pseudonym
   the certificate store keeps, so an auditor can join the two); bytes are replaced by their
   length (key material is bytes); dataclasses are logged field by field (so their secret
   fields are redacted) and other objects as scrubbed text;
6. the JSON renderer (sorted keys, UTF-8, U+2028/U+2029 escaped so no tool splits a line) or
   the console renderer.

Loggers are not cached, so configuring again (tests, a changed level) takes effect everywhere
and never duplicates output.
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from kyso.audit.events import REDACTED, scrub, secret_key
from kyso.audit.pseudonym import Pseudonymizer
from kyso.errors import ConfigError
from kyso.pki.identifiers import mask_id

__all__ = ["LEVELS", "REDACTED", "configure_logging", "redactor"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}

# Keys whose value is a personal identification number (CCCD / CMND / số định danh).
_ID_KEY = re.compile(
    r"(^|[_-])(citizen_id|personal_id|id_number|id_no|national_id|cccd|cmnd|so_dinh_danh|"
    r"dinh_danh|holder_id)([_-]|$)",
    re.I,
)
# Request and trace ids are UUIDs; their last group may be 12 digits and is not an ID number.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _secret_key(key: str) -> bool:
    return bool(key) and secret_key(key)


class _Redactor:
    """The redaction processor (step 5 of the module docstring)."""

    def __init__(self, pseudonymizer: Pseudonymizer | None) -> None:
        self._pseudonymizer = pseudonymizer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {str(k): self._clean(v, str(k)) for k, v in event_dict.items()}

    def _identity(self, value: str) -> Any:
        number = value.strip()
        hint = mask_id(number)
        if self._pseudonymizer is None:
            return hint
        return {"pseudonym": self._pseudonymizer.pseudonym(number), "hint": hint}

    def _clean(self, value: Any, key: str = "") -> Any:
        if _secret_key(key):
            return REDACTED
        if key and _ID_KEY.search(key) and isinstance(value, str | int) and not isinstance(value, bool):
            return self._identity(str(value))
        if isinstance(value, Mapping):
            return {str(k): self._clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v) for v in value]
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if isinstance(value, str) and _UUID.fullmatch(value):
            return value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.repr}
            return self._clean(fields)
        if value is None or isinstance(value, str | int | float):
            return scrub(value)
        cleaned = scrub(value)  # datetimes and enums become text
        return cleaned if isinstance(cleaned, str) else scrub(str(value))


def redactor(pseudonymizer: Pseudonymizer | None = None) -> Processor:
    """The redaction processor on its own, for callers that build their own chain."""
    return _Redactor(pseudonymizer)


def _dumps(value: Any, **kwargs: Any) -> str:
    text = jsonlib.dumps(value, ensure_ascii=False, sort_keys=True, **kwargs)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


class _StandardError:
    """Standard error looked up at every write: a test runner (or a daemoniser) that swaps
    and closes ``sys.stderr`` must not leave the process-wide logger writing to a dead file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


def configure_logging(
    *,
    level: str = "info",
    json: bool = True,
    stream: TextIO | None = None,
    pseudonymizer: Pseudonymizer | None = None,
) -> None:
    """Configure structlog for the whole process (idempotent; the last call wins).

    ``level`` is one of :data:`LEVELS`; ``json`` chooses JSON lines (services, files) or the
    console renderer (a person at a terminal); ``stream`` defaults to standard error.
    """
    if level.lower() not in LEVELS:
        raise ConfigError(f"unknown log level {level!r}; choose one of {', '.join(LEVELS)}")
    out: Any = _StandardError() if stream is None or stream is sys.stderr else stream
    exceptions: Processor
    renderer: Processor
    if json:
        exceptions = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        exceptions = structlog.processors.format_exc_info  # traceback module: no locals
        renderer = structlog.dev.ConsoleRenderer(
            colors=bool(getattr(out, "isatty", lambda: False)()),
            exception_formatter=structlog.dev.plain_traceback,
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exceptions,
            _Redactor(pseudonymizer),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level.lower()]),
        logger_factory=structlog.WriteLoggerFactory(file=out),  # one write per line (workers share stderr)
        context_class=dict,
        cache_logger_on_first_use=False,
    )
