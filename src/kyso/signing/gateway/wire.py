"""The gateway's JSON bodies (CSC API v2.0.0.2, with the v1 names pyHanko sends), as strict
pydantic models: a field of the wrong type (a number as text, a bool as a number) or a field
that is not documented is refused, naming the field. The server parses requests with them;
clients may build requests with them.

v1 and v2 names are both accepted on both paths: ``hash`` / ``hashes``,
``hashAlgo`` / ``hashAlgorithmOID`` (never both of a pair). ``PIN`` and ``OTP`` are refused
with an explanation: approval is the fresh level-2 login, not a PIN.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kyso.errors import GatewayRequestError
from kyso.signing.gateway.policy import MULTISIGN

__all__ = ["MAX_BODY", "AuthorizeBody", "AuthorizeReply", "CredentialInfoBody",
           "CredentialInfoReply", "EnrolBody", "EnrolReply", "InfoBody", "InfoReply",
           "ListBody", "ListReply", "Peek", "SignHashBody", "SignHashReply", "info_document",
           "parse_body", "peek_body"]

MAX_BODY = 64 * 1024  # bytes of one request body
CREDENTIAL_ID = r"^[A-Za-z0-9_-]{1,64}$"

_Hash = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_Hashes = Annotated[list[_Hash], Field(min_length=1, max_length=MULTISIGN)]
_Oid = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}(\.[0-9]{1,20}){1,30}$",
                                        max_length=128)]
_Text = Annotated[str, StringConstraints(max_length=2000)]
_Lang = Annotated[str, StringConstraints(max_length=35)]
_CredentialId = Annotated[str, StringConstraints(pattern=CREDENTIAL_ID)]
Certificates = Literal["none", "single", "chain"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InfoBody(_Body):
    """``info``: everything optional."""

    lang: _Lang | None = None


class EnrolBody(_Body):
    """kyso's enrolment: no parameters (the citizen and her data come from the token and the
    e-ID registry); an empty object or no body."""


class ListBody(_Body):
    """``credentials/list``: only the caller's own credentials."""

    userID: Annotated[str, StringConstraints(max_length=128)] | None = None
    credentialInfo: bool = False
    certificates: Certificates = "single"
    certInfo: bool = False
    authInfo: bool = False
    onlyValid: bool = False
    lang: _Lang | None = None
    maxResults: Annotated[int, Field(ge=1, le=1000)] | None = None
    pageToken: Annotated[str, StringConstraints(max_length=200)] | None = None
    clientData: _Text | None = None


class CredentialInfoBody(_Body):
    """``credentials/info``."""

    credentialID: _CredentialId
    certificates: Certificates = "single"
    certInfo: bool = False
    authInfo: bool = False
    lang: _Lang | None = None
    clientData: _Text | None = None


class _HashesBody(_Body):
    hashes: _Hashes | None = None
    hash: _Hashes | None = None  # v1 name
    hashAlgorithmOID: _Oid | None = None
    hashAlgo: _Oid | None = None  # v1 name

    def hash_values(self) -> list[str]:
        if self.hashes is not None and self.hash is not None:
            raise GatewayRequestError("hashes: give hashes (v2) or hash (v1), not both")
        values = self.hashes if self.hashes is not None else self.hash
        if values is None:
            raise GatewayRequestError("hashes: required (the base64 hashes to sign)")
        return list(values)

    def hash_oid(self) -> str | None:
        if self.hashAlgorithmOID is not None and self.hashAlgo is not None:
            raise GatewayRequestError("hashAlgorithmOID: give hashAlgorithmOID (v2) or hashAlgo "
                                      "(v1), not both")
        return self.hashAlgorithmOID if self.hashAlgorithmOID is not None else self.hashAlgo


class AuthorizeBody(_HashesBody):
    """``credentials/authorize``: approve exactly these hashes (SCAL 2)."""

    credentialID: _CredentialId
    numSignatures: Annotated[int, Field(ge=1, le=MULTISIGN)]
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    clientData: _Text | None = None
    PIN: Annotated[str, StringConstraints(max_length=64)] | None = None
    OTP: Annotated[str, StringConstraints(max_length=64)] | None = None

    def check_no_pin(self) -> None:
        for name, value in (("PIN", self.PIN), ("OTP", self.OTP)):
            if value is not None:
                raise GatewayRequestError(f"{name}: not used by this gateway; a fresh level-2 "
                                          "login (step-up) approves each authorization")


class SignHashBody(_HashesBody):
    """``signatures/signHash``: synchronous only."""

    credentialID: _CredentialId
    SAD: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    signAlgo: _Oid
    signAlgoParams: Annotated[str, StringConstraints(max_length=2000)] | None = None
    operationMode: Literal["S"] | None = None
    clientData: _Text | None = None


# --- replies (documentation and clients) -----------------------------------------------------


class InfoReply(BaseModel):
    specs: str
    name: str
    logo: str
    region: str
    lang: str
    description: str
    authType: list[str]
    oauth2: str
    oauth2Issuer: str
    methods: list[str]


class ListReply(BaseModel):
    credentialIDs: list[str]
    credentialInfos: list[dict[str, Any]] | None = None


class CredentialInfoReply(BaseModel):
    description: str
    key: dict[str, Any]
    cert: dict[str, Any]
    authMode: str
    SCAL: str
    multisign: int
    lang: str
    auth: dict[str, Any] | None = None


class AuthorizeReply(BaseModel):
    SAD: str
    expiresIn: int


class SignHashReply(BaseModel):
    signatures: list[str]


class EnrolReply(BaseModel):
    credentialID: str
    certificate: str
    serialNumber: str
    chain: list[str]


# --- parsing ---------------------------------------------------------------------------------

M = TypeVar("M", bound=_Body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _describe(error: ValidationError) -> str:
    """``field: problem`` for the first errors, never the value that was sent."""
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_body(raw: bytes, model: type[M]) -> M:
    """A request body as ``model``; an empty body is ``{}``. :class:`GatewayRequestError`
    names what is wrong (not JSON, not an object, a field of the wrong type, an unknown
    field)."""
    if len(raw) > MAX_BODY:
        raise GatewayRequestError(f"body: larger than {MAX_BODY} bytes")
    data: Any = {}
    if raw.strip():
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise GatewayRequestError("body: not valid JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise GatewayRequestError("body: must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise GatewayRequestError(_describe(exc)) from None


# --- documents ---------------------------------------------------------------------------------

SPECS = "2.0.0.2"
METHODS = ["credentials/list", "credentials/info", "credentials/authorize",
           "signatures/signHash"]
LOGO = "data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" '
    b'height="64" rx="10" fill="#da251d"/><text x="32" y="40" font-family="sans-serif" '
    b'font-size="18" text-anchor="middle" fill="#ffcd00">kyso</text></svg>').decode("ascii")


def info_document(issuer: str) -> dict[str, Any]:
    """The body of CSC ``info``; ``issuer`` is the e-ID provider's (the OAuth 2.0 server)."""
    return {"specs": SPECS, "name": "kyso", "logo": LOGO, "region": "VN", "lang": "vi-VN",
            "description": "Cổng ký số từ xa cho công dân (kyso citizen remote-signing "
                           "gateway): keys held by the service, each signature approved by a "
                           "fresh level-2 VNeID login",
            "authType": ["oauth2code"], "oauth2": issuer, "oauth2Issuer": issuer,
            "methods": list(METHODS)}


@dataclass(frozen=True)
class Peek:
    """What a refused request said, for its audit event: only well-typed values."""

    credential_id: str
    hashes: list[str]  # hex


def peek_body(raw: bytes) -> Peek:
    """The credential id and the hashes of a body that may be anything (never raises)."""
    data: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        data = json.loads(raw) if raw.strip() else None
    if not isinstance(data, dict):
        return Peek("", [])
    cid = data.get("credentialID")
    values = data.get("hashes", data.get("hash"))
    hashes: list[str] = []
    if isinstance(values, list):
        for value in values[:MULTISIGN]:
            with contextlib.suppress(binascii.Error, ValueError, TypeError, AttributeError):
                hashes.append(base64.b64decode(value.encode("ascii"), validate=True).hex()[:128])
    return Peek(cid[:64] if isinstance(cid, str) else "", hashes)
