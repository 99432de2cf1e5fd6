"""What the provider tells the server to do next (:class:`FlowResult`), and small helpers
shared by the flow modules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kyso.authn.oidc_requests import LANGS
from kyso.authn.oidc_sessions import BrowserSession

__all__ = ["FlowResult", "Step", "first_value", "session_lang"]


class Step(StrEnum):
    PASSWORD = "password"  # noqa: S105 - show the ID number + password form
    OTP = "otp"  # show the one-time code form
    QR = "qr"  # show a QR login code (kyso.authn.oidc_qr)
    REDIRECT = "redirect"  # go to ``location``
    ERROR = "error"  # an error page
    LOGOUT_CONFIRM = "logout_confirm"
    LOGGED_OUT = "logged_out"


@dataclass(frozen=True)
class FlowResult:
    """What the server must do next. ``message`` is a key of the page texts
    (:mod:`kyso.server.pages`); ``set_cookie`` a new session cookie value."""

    step: Step
    lang: str = "vi"
    status: int = 200
    location: str = ""
    csrf: str = field(default="", repr=False)
    set_cookie: str | None = field(default=None, repr=False)
    clear_cookie: bool = False
    message: str = ""
    error: str = ""
    error_description: str = ""
    factors: tuple[str, ...] = ()
    selected: str = ""
    client_name: str = ""
    id_hint: str = ""
    qr_payload: str = ""  # Step.QR: what the QR code shows
    qr_expires: dt.datetime | None = None
    retry_after: int | None = None  # seconds, for a 429 (the Retry-After header)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "lang": self.lang, "status": self.status,
                "location": self.location, "message": self.message, "error": self.error,
                "error_description": self.error_description, "factors": list(self.factors)}




def first_value(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, ())
    return values[0][:128] if values else None


def session_lang(session: BrowserSession) -> str:
    lang = (session.data.get("request") or {}).get("lang", "vi")
    return lang if lang in LANGS else "vi"
