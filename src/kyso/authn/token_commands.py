"""``kyso token verify``: check an e-ID token the way a relying party must (:mod:`kyso.authn.rp`).

Parse, build one :class:`~kyso.authn.rp.TokenVerifier`, one ``verify`` call, render. Keys come
from ``--jwks`` (an https URL, http on loopback, or a JWKS file) or, without it, from this
home's token key set: its public ``jwks.json`` when present, else the encrypted key set itself
(unlocked with ``$KYSO_TOKEN_KEY_PASSPHRASE`` or ``--key-passphrase-file``; only the public
halves are used).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from kyso.authn.key_store import KEYSET_FILE, PUBLIC_JWKS_FILE, load_key_set
from kyso.authn.registry import Level
from kyso.authn.rp import InsufficientLevelError, TokenVerifier, VerifiedToken
from kyso.authn.rp_keys import JwksError, PublicKeySet, RemoteJwks
from kyso.authn.tokens import MAX_TOKEN_BYTES, TokenType
from kyso.cliutil import App, emit_fields, emit_json, obtain_passphrase, pass_app
from kyso.clock import SystemClock, vn_iso
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE, Settings
from kyso.context import Kyso
from kyso.errors import CANotInitialisedError, KysoError, TokenError, UsageError

_TYPES = {"access": TokenType.ACCESS, "id": TokenType.ID}


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    token_group.add_command(verify_command)


def _read_token(value: str) -> str:
    if value == "-":
        data = sys.stdin.read(MAX_TOKEN_BYTES + 64)
        if len(data) > MAX_TOKEN_BYTES + 32:
            raise TokenError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
        value = data
    token = value.strip()
    if not token:
        raise UsageError("no token given (pass it as an argument, or '-' to read stdin)")
    return token


def _unverified_issuer(token: str) -> str:
    """The ``iss`` a token claims, read without trusting it: used only when keys are pinned
    locally (this home, a JWKS file) and no --issuer was given; the signature still decides."""
    try:
        payload = token.split(".")[1]
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        iss = json.loads(data).get("iss")
    except (IndexError, ValueError, AttributeError, binascii.Error, RecursionError):
        iss = None
    # Unreadable: verification then refuses the token for what is really wrong with it.
    return iss if isinstance(iss, str) and iss else "(no issuer in the token)"


def _home_keys(settings: Settings, keys_dir: Path | None,
               passphrase_file: Path | None) -> PublicKeySet:
    directory = keys_dir or settings.token_keys_dir
    public = directory / PUBLIC_JWKS_FILE
    if public.exists():
        lifetime = None
        try:
            index = json.loads((directory / KEYSET_FILE).read_text(encoding="utf-8"))
            seconds = index.get("max_token_lifetime_seconds") if isinstance(index, dict) else None
            if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
                lifetime = dt.timedelta(seconds=seconds)
        except (OSError, ValueError):
            pass
        if lifetime is not None:
            return PublicKeySet.from_file(public, max_token_lifetime=lifetime)
        return PublicKeySet.from_file(public)
    if not (directory / KEYSET_FILE).exists():
        raise UsageError(f"no token key set in {directory}; give the issuer's keys with --jwks "
                         f"URL|FILE (or --keys DIR)")
    passphrase = obtain_passphrase(passphrase_file, ENV_TOKEN_KEY_PASSPHRASE,
                                   "token key passphrase")
    return PublicKeySet.from_key_set(load_key_set(directory, passphrase))


def _audit(app: App) -> Kyso | None:
    """This home's context when it exists (the decision is then audited); a relying party
    with only --jwks needs no home."""
    try:
        return app.kyso
    except CANotInitialisedError:
        return None


def _render(app: App, result: VerifiedToken) -> None:
    if app.json:
        emit_json({"result": "PASS", **result.to_dict()})
        return
    kind = "access token" if result.token_type is TokenType.ACCESS else "ID token"
    emit_fields([
        ("subject", result.subject),
        ("level", f"{int(result.level)} ({result.acr})"),
        ("amr", ", ".join(result.amr) or "-"),
        ("auth_time", vn_iso(result.auth_time) if result.auth_time else None),
        ("audience", ", ".join(result.audience)),
        ("client_id", result.client_id),
        ("scope", " ".join(result.scope)),
        ("expires", vn_iso(result.expires_at)),
        ("issuer", result.issuer),
    ], title=f"PASS  {kind} verified")


@click.command("verify", epilog="""\b
Examples:
  kyso token verify "$TOKEN" --audience hotich-api --min-level 2 \\
      --issuer https://id.thainguyen.gov.vn --jwks https://id.thainguyen.gov.vn/jwks
  echo "$TOKEN" | kyso token verify - --audience hotich-api --jwks jwks.json
  kyso token verify "$ID_TOKEN" --type id --audience dichvucong-portal --format json
  kyso token verify "$TOKEN" --audience hotich-api --min-level 2 --max-age 300

\b
Without --jwks the keys are this home's own token key set (public jwks.json next to it, or
the encrypted set unlocked with $KYSO_TOKEN_KEY_PASSPHRASE). Without --issuer the issuer is
<URL> of a --jwks <URL>/jwks, else the token's own iss (acceptable only because the keys are
pinned locally). Exit code 0: PASS; 1: refused (the reason is printed: expired, wrong
audience, level too low, bad signature, ...); 2: usage error.""")
@click.argument("token")
@click.option("--audience", required=True, help="This API's audience (aud must contain it).")
@click.option("--min-level", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="Lowest acceptable level; the level comes only from the token's acr.")
@click.option("--issuer", help="Expected iss (the provider's issuer URL).")
@click.option("--jwks", "jwks", metavar="URL|FILE",
              help="The issuer's JWKS: https URL (http on loopback only) or a file.")
@click.option("--type", "token_type", type=click.Choice(sorted(_TYPES)), default="access",
              show_default=True, help="access: RFC 9068 at+jwt; id: an OpenID Connect ID token.")
@click.option("--max-age", type=click.IntRange(min=0), default=None,
              help="Refuse a login older than this many seconds (needs auth_time).")
@click.option("--access-token", metavar="TOKEN",
              help="With --type id: the access token issued with it (checked against at_hash).")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Token key set directory (default: <home>/secrets/token-keys).")
@click.option("--key-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line unlocks the key set (else ${ENV_TOKEN_KEY_PASSPHRASE}).")
@pass_app
def verify_command(app: App, token: str, audience: str, min_level: str, issuer: str | None,
                   jwks: str | None, token_type: str, max_age: int | None,
                   access_token: str | None, keys_dir: Path | None, key_passphrase_file: Path | None) -> None:
    """Verify an e-ID token for an audience and a minimum level; print PASS and what it says,
    or the reason it is refused (exit 1)."""
    text = _read_token(token)
    clock = SystemClock()
    source: PublicKeySet | RemoteJwks
    if jwks and jwks.startswith(("https://", "http://")):
        source = RemoteJwks(jwks, clock)
        if issuer is None and jwks.rstrip("/").endswith("/jwks"):
            issuer = jwks.rstrip("/").removesuffix("/jwks")
        if issuer is None:
            raise UsageError("give --issuer: it cannot be derived from this --jwks URL")
    elif jwks:
        if "://" in jwks:
            raise JwksError("JWKS URL must be an absolute https URL")
        source = PublicKeySet.from_file(Path(jwks))
    else:
        source = _home_keys(app.settings, keys_dir, key_passphrase_file)
    verifier = TokenVerifier(issuer or _unverified_issuer(text), source, clock,
                             audit=_audit(app))
    try:
        result = verifier.verify(text, audience=audience, min_level=Level(int(min_level)),
                                 token_type=_TYPES[token_type], max_age=max_age,
                                 access_token=_read_token(access_token) if access_token else None)
    except InsufficientLevelError as exc:
        _fail(app, exc, required_acr=exc.required_acr)
    except KysoError as exc:
        _fail(app, exc)
    _render(app, result)


def _fail(app: App, exc: KysoError, required_acr: str | None = None) -> NoReturn:
    if app.json:
        emit_json({"result": "FAIL", "reason": str(exc), "error": type(exc).__name__,
                   "required_acr": required_acr})
    hint = f" (step up: acr_values={required_acr})" if required_acr else ""
    raise TokenError(f"token refused: {exc}{hint}") from None
