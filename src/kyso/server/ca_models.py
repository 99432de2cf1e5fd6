"""What the CA administration API (:mod:`kyso.server.ca_routes`) takes and answers: the strict
request models (unknown fields, wrong types and hostile values are refused with a 422 naming
the field), the answers' shapes as ``kyso cert … --format json`` prints them, the refusals
(:class:`Refusal`; :func:`refusal_of` turns a library error into one) and their OpenAPI
descriptions (:data:`ERRORS`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import Path
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kyso.errors import (
    AuditError,
    CANotInitialisedError,
    CertificateNotFoundError,
    CSRError,
    DuplicateKeyError,
    KeyFileError,
    KysoError,
    PassphraseError,
    RevocationError,
    StoreError,
)
from kyso.pki.csr import MAX_CSR_BYTES
from kyso.server.api import ApiError, error_response

__all__ = ["CHANGED", "ERRORS", "MAX_BODY_BYTES", "NAME_PATTERN", "RETRY", "CertificateBody",
           "ChangedBody", "IssueRequest", "IssuedBody", "Refusal", "RevokeReason", "RevokeRequest",
           "SerialPath", "ShownBody", "SubjectField", "refusal_of", "unavailable"]

MAX_BODY_BYTES = 64 * 1024
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"  # a profile or CA name
RETRY = {"Retry-After": "60"}

SerialPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,40}$", max_length=40,
                                 description="The certificate's serial number, hex")]
SubjectField = Literal["name", "id", "dob", "title", "unit", "email", "tax_code", "budget_code",
                       "locality", "province", "surname", "given_name"]
RevokeReason = Literal["unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
                       "superseded", "cessationOfOperation", "privilegeWithdrawn"]


class IssueRequest(BaseModel):
    """``POST /api/v1/certificates``: what ``kyso cert issue --csr`` takes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    csr: Annotated[str, Field(min_length=1, max_length=MAX_CSR_BYTES,
                              description="The PKCS#10 request, PEM. Its subject gives the "
                                          "holder's details the profile takes; its signature "
                                          "proves possession of the key.")]
    profile: Annotated[str, Field(pattern=NAME_PATTERN, description="staff, seal, citizen, …",
                                  examples=["staff"])]
    issuer: Annotated[str, Field(pattern=NAME_PATTERN, description="The issuing CA, when the profile "
                                 "allows several (default: its first)")] | None = None
    validity_days: Annotated[int, Field(ge=1, le=36525, description="Default and maximum from "
                                        "the profile")] | None = None
    subject: Annotated[dict[SubjectField, Annotated[str, Field(max_length=256)]],
                       Field(description="Holder details the CSR cannot carry or that complete "
                                         "it, named as the options of `kyso cert issue` (dob, "
                                         "province, …); a value that contradicts the CSR is "
                                         "refused")] | None = None


class RevokeRequest(BaseModel):
    """``POST /api/v1/certificates/{serial}/revoke``: what ``kyso cert revoke`` takes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Annotated[RevokeReason, Field(description="RFC 5280 reason (certificateHold is "
                                                      "/hold)")] = "unspecified"
    compromised_at: Annotated[AwareDatetime, Field(
        description="The invalidity date (RFC 5280 §5.3.2): when the key is known or "
                    "suspected to be compromised; ISO 8601 with an offset, not in the "
                    "future")] | None = None


class CertificateBody(BaseModel):
    """A certificate record, as ``kyso cert show --format json`` prints it."""

    model_config = ConfigDict(extra="forbid")

    serial: str
    issuer: str
    profile: str
    subject: str = Field(description="RFC 4514, personal ID numbers masked")
    common_name: str
    holder: str | None = Field(description="The masked ID number or the tax code")
    email: str | None
    key_type: str
    not_before: str
    not_after: str
    status: str = Field(description="valid, revoked, on_hold, or expired")
    revoked_at: str | None
    revocation_reason: str | None
    invalidity_date: str | None
    replaces: str | None
    sha256: str


class IssuedBody(CertificateBody):
    certificate: str = Field(description="The certificate, PEM")
    chain: list[str] = Field(description="The issuing CA's certificate, then up to the root, PEM")
    warnings: list[str] = Field(description="E.g. CSR extensions the profile drops")


class ShownBody(CertificateBody):
    pem: str = Field(description="The certificate, PEM")


class ChangedBody(CertificateBody):
    old_status: str = Field(description="The status before this change")


CHANGED: dict[int | str, dict[str, Any]] = {
    200: {"model": ChangedBody, "description": "Changed: `old_status` and the new record"}}


# --- refusals ---------------------------------------------------------------------------------

ERRORS = {400: "Not JSON, or a Content-Length that is not a number",
          401: "No token, or the token is not valid (or too low a level)",
          403: "The token lacks the ca-admin role",
          404: "No certificate with this serial",
          409: "The certificate's status does not allow this change (the body names it as "
               "certificate_status), or the key was certified already",
          413: f"Body larger than {MAX_BODY_BYTES // 1024} KiB",
          415: "Not application/json",
          422: "A field of the wrong type or shape, a CSR that does not parse or verify, or a "
               "request the profile refuses (unknown profile or CA, subject, key, validity)",
          503: "CA administration is off on this node (no CA passphrase, no CA), or the audit "
               "log refuses new entries"}


class Refusal(ApiError):
    """An :class:`ApiError` with extra body fields; ``recorded`` when the library has recorded
    the failure event already (then it is not recorded twice)."""

    def __init__(self, status: int, error: str, description: str, *, recorded: bool = False,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, error, description, headers)
        self.recorded = recorded
        self.extra = extra

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.description, self.headers,
                              **self.extra)


def unavailable(exc: KysoError, *, recorded: bool = False) -> Refusal:
    """503: the CA, its passphrase or the store is not there."""
    if isinstance(exc, CANotInitialisedError):
        text = "no CA has been created on this server yet (kyso ca init)"
    elif isinstance(exc, PassphraseError):
        text = f"{exc}: start the node with the right --ca-passphrase-file"
    else:
        text = str(exc)
    return Refusal(503, "service_unavailable", text, recorded=recorded, headers=RETRY)


def refusal_of(exc: KysoError) -> Refusal:
    """A library error as an HTTP answer. The library recorded its failure event already."""
    text = str(exc)
    if isinstance(exc, CertificateNotFoundError):
        return Refusal(404, "not_found", text, recorded=True)
    if isinstance(exc, RevocationError | DuplicateKeyError):
        return Refusal(409, "conflict", text, recorded=True)
    if isinstance(exc, AuditError):
        return Refusal(503, "audit_log_unavailable", f"the audit log refused the event: {text}",
                       recorded=True, headers=RETRY)
    if isinstance(exc, PassphraseError | CANotInitialisedError | KeyFileError | StoreError):
        return unavailable(exc, recorded=True)
    if isinstance(exc, CSRError):
        return Refusal(422, "invalid_csr", text, recorded=True)
    return Refusal(422, "invalid_request", text, recorded=True)
