"""The auditor's read API (``/api/v1/audit/…``), for tokens with the auditor role.

Every call needs ``Authorization: Bearer <access token>`` minted by this server's provider for
the audience :data:`AUDIENCE` (the auditor's client is registered with
``kyso id client add … --audience kyso-api``), at level 2, carrying the ``auditor`` role
(``kyso id role grant --role auditor``). The token is verified with
:class:`kyso.authn.rp.TokenVerifier` over the provider's own keys, then
:func:`kyso.authn.roles.check_holder` asks the store whether the provider still stands behind
it: a revoked token or role, a disabled client or a locked account is refused at once.
Refusals follow RFC 6750 / RFC 9470: 401 with ``WWW-Authenticate`` for a missing or bad token
or too low a level, 403 ``insufficient_scope`` without the role.

The endpoints are read-only views of what the CLI shows, built by the same library calls
(:mod:`kyso.audit`): events as ``kyso audit show --format json`` (paged), the latest signed
checkpoint, inclusion and consistency proof bundles as ``kyso audit prove`` / ``consistency``
write them, and the report of ``kyso audit verify``. Auditors are audited: every call, refused
or not, records one ``AUDIT_READ`` event (layer audit) whose actor is the auditor's pseudonym.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from kyso.audit import Layer, Outcome
from kyso.audit.commands import _checkpoint_for, _signer, _when
from kyso.audit.proofs import FORMAT as PROOF_FORMAT
from kyso.audit.proofs import consistency_bundle, inclusion_bundle, verify_bundle
from kyso.audit.reader import EventFilter, select_events
from kyso.audit.signer import verify_with_store
from kyso.authn.oidc import Provider
from kyso.authn.registry import Level
from kyso.authn.roles import Role
from kyso.authn.rp import (
    TokenVerifier,
)
from kyso.context import Kyso
from kyso.errors import (
    AuditError,
    CheckpointError,
    KysoError,
    ProofError,
    UsageError,
)
from kyso.server.api import (
    NO_STORE,
    ApiError,
    JsonApiRoute,
    client_host,
    error_responses,
    request_id,
)
from kyso.server.bearer import BearerPolicy, Caller, Refused, authenticate
from kyso.server.options import AppOptions

__all__ = ["AUDIENCE", "MAX_PAGE", "MIN_LEVEL", "REALM", "router", "setup"]

AUDIENCE = "kyso-api"
MIN_LEVEL = Level.TWO
REALM = "kyso-api"
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_VALUES = 20  # values of one repeatable filter
MAX_VALUE = 200  # characters of one filter value
_REF_PATTERN = r"^(latest|[0-9]{1,18})$"  # a checkpoint: never a file path

_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="auditorToken",
                     description=f"An access token of this server's provider for the audience "
                                 f"{AUDIENCE}, level 2, with the auditor role.")
router = APIRouter(prefix="/api/v1/audit", tags=["audit"], route_class=JsonApiRoute,
                   dependencies=[Security(_bearer)])


def setup(app: FastAPI, options: AppOptions) -> None:
    """A token verifier over the provider's own keys (nothing fetched over the network)."""
    provider: Provider = app.state.provider
    kyso: Kyso = app.state.kyso
    app.state.auditor_tokens = TokenVerifier(provider.issuer, provider.keys, kyso.clock)


# --- who is asking ----------------------------------------------------------------------------

POLICY = BearerPolicy(audience=AUDIENCE, realm=REALM, min_level=MIN_LEVEL, role=Role.AUDITOR)


# --- one call: authenticate, read, record -----------------------------------------------------

Reader = Callable[[Kyso], tuple[Response, dict[str, Any]]]


def _note(request: Request, outcome: Outcome, actor: str, **details: Any) -> None:
    """One ``AUDIT_READ`` event; its object is the path below ``/api/v1/audit/``."""
    what = request.url.path.removeprefix(router.prefix + "/")[:100]
    kyso: Kyso = request.app.state.kyso
    kyso.record(Layer.AUDIT, "AUDIT_READ", outcome, object=what, actor=actor,
                source=client_host(request) or None, request_id=request_id(request), **details)


def _auditor(request: Request) -> Caller:
    """The dependency every route has (run in the thread pool, before the parameters are
    checked): the auditor, or a refusal recorded and raised. Later refusals of the request
    (a parameter of the wrong type: 422) are recorded through ``request.state.api_refusal``."""
    kyso: Kyso = request.app.state.kyso
    try:
        auditor = authenticate(kyso, request.app.state.auditor_tokens,
                               request.headers.getlist("authorization"), POLICY)
    except Refused as exc:
        with contextlib.suppress(AuditError):  # refused either way
            _note(request, Outcome.FAILURE, exc.actor, status=exc.status, error=exc.error,
                  reason=exc.description)
        raise

    def refused(status: int, error: str, description: str) -> None:
        with contextlib.suppress(AuditError):
            _note(request, Outcome.FAILURE, auditor.actor, status=status, error=error,
                  reason=description, **auditor.details)

    request.state.api_refusal = refused
    return auditor


AuditorDep = Annotated[Caller, Depends(_auditor)]


def _serve(request: Request, auditor: Caller, read: Reader) -> Response:
    """In the thread pool: the read and its ``AUDIT_READ`` event. A read whose event cannot be
    written (the log refuses appends once damaged) is not served: 503."""
    try:
        response, details = read(request.app.state.kyso)
    except ApiError as exc:
        request.state.api_refusal(exc.status, exc.error, exc.description)
        raise
    try:
        _note(request, Outcome.SUCCESS, auditor.actor, **details, **auditor.details)
    except AuditError as exc:
        raise ApiError(503, "audit_log_unavailable",
                       f"this read cannot be recorded, so it is not served: {exc}") from None
    return response


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _log_mismatch(exc: KysoError) -> ApiError:
    return ApiError(409, "conflict", f"{exc}; the stored log does not prove itself — run "
                                     "`kyso audit verify`")


def _checkpoint(kyso: Kyso, ref: str, *, covering: int | None = None
                ) -> tuple[bytes, Any]:
    try:
        return _checkpoint_for(kyso, ref, covering=covering)
    except CheckpointError as exc:
        raise _log_mismatch(exc) from None
    except AuditError as exc:  # no such checkpoint
        raise ApiError(404, "not_found", str(exc)) from None


def _audit_signer(kyso: Kyso, *notes: bytes) -> tuple[Any, list[Any]]:
    """The audit-signer certificate that signed ``notes`` (after a re-key, an older checkpoint
    needs the older certificate) and its chain."""
    try:
        return _signer(kyso, *notes)
    except KysoError as exc:
        raise ApiError(503, "service_unavailable", f"proofs are not available: {exc}") from None


def _bundle(kyso: Kyso, build: Callable[[], dict[str, Any]], cert: Any) -> dict[str, Any]:
    try:
        bundle = build()
    except ProofError as exc:  # purged or not in the log
        raise ApiError(404, "not_found", str(exc)) from None
    except AuditError as exc:
        raise _log_mismatch(exc) from None
    try:
        verify_bundle(bundle, cert, now=kyso.now())  # never hand out one that does not verify
    except KysoError as exc:
        raise _log_mismatch(exc) from None
    return bundle


def _values(name: str, values: list[str] | None) -> frozenset[str]:
    found = [v.strip() for v in values or [] if v.strip()]
    if len(found) > MAX_VALUES:
        raise _bad(f"query parameter {name}: at most {MAX_VALUES} values")
    if any(len(v) > MAX_VALUE for v in found):
        raise _bad(f"query parameter {name}: a value is longer than {MAX_VALUE} characters")
    return frozenset(found)


def _moment(kyso: Kyso, name: str, text: str | None) -> Any:
    try:
        return _when(text, kyso.now(), name)
    except UsageError as exc:
        raise _bad(f"query parameter {exc}") from None


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


# --- routes ---------------------------------------------------------------------------------

AUTH_ERRORS = error_responses(401, 403)
LayerName = Literal["pki", "signing", "authn", "audit", "admin", "server"]


@router.get("/events", summary="Audit events, filtered and paged",
            description="Events as `kyso audit show --format json` gives them, oldest first. "
                        f"`limit` (1–{MAX_PAGE}, default {DEFAULT_PAGE}) per page; `next` is the "
                        "`after` of the next page, null on the last one. `since` / `until`: an "
                        "ISO date (a day in Vietnam), an ISO time (naive = +07:00) or an age "
                        "like 24h / 7d.",
            responses={200: {"description": "A page of events"},
                       **AUTH_ERRORS, **error_responses(400, 409)})
async def events(
    request: Request,
    auditor: AuditorDep,
    since: Annotated[str | None, Query(max_length=64, description="From this time")] = None,
    until: Annotated[str | None, Query(max_length=64, description="Before this time")] = None,
    layer: Annotated[list[LayerName] | None, Query(description="Only these layers")] = None,
    action: Annotated[list[str] | None, Query(description="Only these actions")] = None,
    actor: Annotated[list[str] | None, Query(description="Only these actors")] = None,
    outcome: Annotated[Literal["success", "failure"] | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=10**18,
                                       description="Only events after this seq")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    def read(kyso: Kyso) -> tuple[Response, dict[str, Any]]:
        query = EventFilter(
            since=_moment(kyso, "since", since), until=_moment(kyso, "until", until),
            layers=frozenset(layer or ()),
            actions=frozenset(a.upper() for a in _values("action", action)),
            actors=_values("actor", actor), outcome=outcome,
            from_seq=0 if after is None else after + 1)
        try:
            found = select_events(kyso.settings.audit_dir, query, limit + 1)
        except AuditError as exc:
            raise _log_mismatch(exc) from None
        page = found[:limit]
        following = page[-1]["seq"] if len(found) > limit else None
        filters = {k: v for k, v in (("since", since), ("until", until),
                                     ("layer", sorted(query.layers)),
                                     ("action", sorted(query.actions)),
                                     ("actor", sorted(query.actors)), ("outcome", outcome),
                                     ("after", after)) if v}
        return (_json({"events": page, "next": following}),
                {"filters": filters, "limit": limit, "returned": len(page)})

    return await run_in_threadpool(_serve, request, auditor, read)


@router.get("/checkpoint", summary="The latest signed checkpoint",
            description="The newest C2SP signed note (`kyso audit checkpoint` signs them): "
                        "origin, tree size, root hash, and the audit-signer's Ed25519 signature.",
            response_class=Response,
            responses={200: {"description": "The signed note",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **AUTH_ERRORS, **error_responses(404, 409)})
async def checkpoint(request: Request, auditor: AuditorDep) -> Response:
    def read(kyso: Kyso) -> tuple[Response, dict[str, Any]]:
        note, cp = _checkpoint(kyso, "latest")
        return (PlainTextResponse(note.decode("utf-8"), headers=NO_STORE),
                {"tree_size": cp.size, "root": cp.root.hex()})

    return await run_in_threadpool(_serve, request, auditor, read)


_BUNDLE = {"description": f"A {PROOF_FORMAT} bundle; check it offline with "
                          "`kyso audit verify-proof BUNDLE --cert audit-signer.pem`",
           "content": {"application/json": {"schema": {
               "type": "object", "required": ["format", "type", "origin", "proof"],
               "properties": {"format": {"type": "string", "enum": [PROOF_FORMAT]},
                              "type": {"type": "string"}}}}}}


@router.get("/proof/{seq}", summary="Inclusion proof of one entry",
            description="The bundle `kyso audit prove SEQ` writes: the entry, the first signed "
                        "checkpoint that covers it, the Merkle audit path and the signer's "
                        "certificate chain.",
            responses={200: _BUNDLE, **AUTH_ERRORS, **error_responses(404, 409, 503)})
async def proof(request: Request, auditor: AuditorDep,
                seq: Annotated[int, Path(ge=0, le=10**18, description="The entry")]) -> Response:
    def read(kyso: Kyso) -> tuple[Response, dict[str, Any]]:
        note, cp = _checkpoint(kyso, "latest", covering=seq)
        cert, chain = _audit_signer(kyso, note)
        bundle = _bundle(kyso, lambda: inclusion_bundle(kyso.settings.audit_dir, seq, note, cp,
                                                        cert, chain), cert)
        return _json(bundle), {"seq": seq, "tree_size": cp.size}

    return await run_in_threadpool(_serve, request, auditor, read)


@router.get("/consistency", summary="Consistency proof between two checkpoints",
            description="The bundle `kyso audit consistency OLD NEW` writes: the log of checkpoint "
                        "`old` is a prefix of the log of checkpoint `new`. Both are tree sizes "
                        "with a stored checkpoint, or `latest`.",
            responses={200: _BUNDLE, **AUTH_ERRORS, **error_responses(400, 404, 409, 503)})
async def consistency(
    request: Request,
    auditor: AuditorDep,
    old: Annotated[str, Query(pattern=_REF_PATTERN, description="Tree size, or latest")],
    new: Annotated[str, Query(pattern=_REF_PATTERN, description="Tree size, or latest")
                   ] = "latest",
) -> Response:
    def read(kyso: Kyso) -> tuple[Response, dict[str, Any]]:
        old_cp, new_cp = _checkpoint(kyso, old), _checkpoint(kyso, new)  # never a path
        if old_cp[1].size > new_cp[1].size:
            raise _bad(f"query parameters old and new: the checkpoint of size {old_cp[1].size} "
                       f"is newer than the one of size {new_cp[1].size}")
        cert, chain = _audit_signer(kyso, old_cp[0], new_cp[0])
        bundle = _bundle(kyso, lambda: consistency_bundle(kyso.settings.audit_dir, old_cp,
                                                          new_cp, cert, chain), cert)
        return _json(bundle), {"old": old, "new": new, "old_size": old_cp[1].size,
                               "new_size": new_cp[1].size}

    return await run_in_threadpool(_serve, request, auditor, read)


@router.get("/verify", summary="Verify the whole log",
            description="The report of `kyso audit verify --format json`: PASS / FAIL per check "
                        "(entries and hash chain, tail, head, signed checkpoints, …) and the "
                        "findings naming the first bad entry. A log that fails is HTTP 200 "
                        "with `result` FAIL.",
            responses={200: {"description": "The verification report"}, **AUTH_ERRORS})
async def verify(request: Request, auditor: AuditorDep) -> Response:
    def read(kyso: Kyso) -> tuple[Response, dict[str, Any]]:
        report = verify_with_store(kyso)
        return _json(report.to_dict()), {"result": "PASS" if report.ok else "FAIL",
                                         "tree_size": report.size}

    return await run_in_threadpool(_serve, request, auditor, read)
