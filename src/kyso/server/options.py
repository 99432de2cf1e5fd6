"""What ``create_app`` hands every router besides the home (see :mod:`kyso.server.app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_ISSUER = "http://127.0.0.1:8080"
DEFAULT_MAX_PDF_BYTES = 25 * 2**20


@dataclass(frozen=True)
class AppOptions:
    """What the routers need beyond the home: the issuer URL, the CA passphrase (unlocks the
    OCSP responders, the TSA, the CA administration API and the signing gateway; without it
    those routes answer 503), the verify API's body limit."""

    issuer: str = DEFAULT_ISSUER
    ca_passphrase: str | None = field(default=None, repr=False)
    max_pdf_bytes: int = DEFAULT_MAX_PDF_BYTES
