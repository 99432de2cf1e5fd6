"""``kyso id keys list|rotate``: the e-ID provider's token signing keys (parse, one library call
in :mod:`kyso.authn.key_store`, render).

``list`` reads the key set's index only (no passphrase: it holds no secret). ``rotate`` unlocks
the key set with the token key passphrase — ``--key-passphrase-file``, else
``$KYSO_TOKEN_KEY_PASSPHRASE``, else a prompt, as ``kyso serve`` and ``kyso token verify`` do —
and records one ``TOKEN_KEY_ROTATED`` event, a success or the refusal. Running servers sharing
the home pick the new key up by themselves (:class:`kyso.authn.key_ring.KeyRing`).
"""

from __future__ import annotations

from pathlib import Path

import click

from kyso.audit import Layer, Outcome
from kyso.authn.key_store import (
    KEYSET_FILE,
    KeyIndex,
    KeyState,
    KeyStatus,
    Rotation,
    read_key_index,
    rotate_key_set,
)
from kyso.cliutil import App, emit_fields, emit_json, emit_table, obtain_passphrase, pass_app
from kyso.clock import SystemClock, vn_iso
from kyso.config import ENV_TOKEN_KEY_PASSPHRASE
from kyso.errors import KeyFileError, KysoError, PassphraseError

ACTION = "TOKEN_KEY_ROTATED"

_keys_dir_option = click.option(
    "--keys", "keys_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Token key set directory (default: <home>/secrets/token-keys).")


def add_to(id_group: click.Group, token_group: click.Group) -> None:
    del token_group  # the keys belong to the provider, not to relying parties
    id_group.add_command(keys_group)


@click.group("keys")
def keys_group() -> None:
    """The provider's token signing keys (ES256): list them, rotate them."""


def _no_key_set(directory: Path) -> KeyFileError:
    return KeyFileError(f"no token key set in {directory} yet: `kyso serve` creates it on its "
                        f"first start (or give the right directory with --keys)")


def _index(directory: Path) -> KeyIndex:
    if not (directory / KEYSET_FILE).is_file():
        raise _no_key_set(directory)
    return read_key_index(directory)


def _state(status: KeyStatus) -> str:
    if status.state is KeyState.RETIRING and status.verifies_until is not None:
        return f"retiring until {vn_iso(status.verifies_until)}"
    return status.state.value


@keys_group.command("list", epilog="""\b
Examples:
  kyso id keys list
  kyso id keys list --format json
  kyso id keys list --keys /srv/kyso/secrets/token-keys

\b
States: current signs every new token; next is published in /jwks and signs from the next
rotation on (relying parties that cache /jwks hold it before it signs); retiring signs no more
but verifies the tokens it
signed until they expire (its retirement + the longest token lifetime + 60 s of clock skew),
and stays in /jwks until then; retired verifies nothing and is deleted at the next rotation.
Reads the key set's index only: no passphrase needed.""")
@_keys_dir_option
@pass_app
def keys_list(app: App, keys_dir: Path | None) -> None:
    """List the token signing keys: kid, creation time and state."""
    directory = keys_dir or app.settings.token_keys_dir
    index = _index(directory)
    now = SystemClock().now()  # the CLI's clock, as `kyso token verify`: no home needed
    if app.json:
        emit_json({"directory": str(directory), "current": index.current, "next": index.next,
                   "max_token_lifetime_seconds": int(index.max_token_lifetime.total_seconds()),
                   "keys": [status.to_dict() for status in index.statuses(now)]})
        return
    emit_table(["kid", "created", "state"],
               [[s.kid, vn_iso(s.created_at), _state(s)] for s in index.statuses(now)])


@keys_group.command("rotate", epilog="""\b
Examples:
  kyso id keys rotate
  kyso id keys rotate --key-passphrase-file /etc/kyso/token.pass --format json
  kyso id keys rotate --compromised  # someone else may hold the keys

\b
The next key, published in /jwks since the last rotation, signs every token from now on, and
a new next key is published. Relying parties that fetched /jwks since the last rotation hold
the new signing key already. The previous key signs nothing more but keeps verifying the
tokens it signed until they expire (the key set's longest token lifetime, 1 h by default, +
60 s of clock skew), then leaves /jwks; keys whose window is over are deleted.
--compromised: a new key, never published, signs, and every other key is deleted at once: no
token signed before verifies any more at kyso (clients get new ones), relying parties meet an
unknown kid and refetch /jwks (kyso's own at most once a minute), and those that cache /jwks
accept the old keys until they refetch it. A key set made before kyso had next keys signs with
a new key at its first rotation. Running `kyso serve` nodes sharing this home sign with the
new key within a second, without a restart (nodes with their own copy of secrets/: copy
token-keys/ to them).
The passphrase comes from --key-passphrase-file, else $KYSO_TOKEN_KEY_PASSPHRASE, else a
prompt. Exit code 1 when there is no key set yet or the passphrase is wrong.""")
@_keys_dir_option
@click.option("--key-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File whose first line unlocks the key set (else ${ENV_TOKEN_KEY_PASSPHRASE}).")
@click.option("--compromised", is_flag=True,
              help="Someone else may hold the keys: sign with a new key and drop every other "
                   "key now (tokens signed before stop verifying).")
@pass_app
def keys_rotate(app: App, keys_dir: Path | None, key_passphrase_file: Path | None,
                compromised: bool) -> None:
    """Rotate the token signing key: a new key signs from now on, the old one verifies until
    its tokens expire."""
    kyso = app.kyso
    directory = keys_dir or app.settings.token_keys_dir
    try:
        current = _index(directory).current
    except KysoError as exc:
        kyso.record(Layer.AUTHN, ACTION, Outcome.FAILURE, reason=str(exc))
        raise
    passphrase = obtain_passphrase(key_passphrase_file, ENV_TOKEN_KEY_PASSPHRASE,
                                   "token key passphrase")  # none given: a usage error, exit 2
    try:
        rotation = rotate_key_set(directory, passphrase, kyso.clock, compromised=compromised,
                                  iterations=app.settings.key_kdf_iterations)
    except KysoError as exc:
        if isinstance(exc, PassphraseError):
            exc = PassphraseError(f"wrong token key passphrase: it does not unlock the key set "
                                  f"in {directory}")
        kyso.record(Layer.AUTHN, ACTION, Outcome.FAILURE, object=current, reason=str(exc))
        raise exc from None
    kyso.record(Layer.AUTHN, ACTION, Outcome.SUCCESS, object=rotation.current_kid,
                previous_kid=rotation.previous_kid, next_kid=rotation.next_kid,
                fresh=rotation.fresh, compromised=rotation.compromised,
                dropped=list(rotation.dropped))
    _render(app, directory, rotation)


def _render(app: App, directory: Path, rotation: Rotation) -> None:
    if app.json:
        emit_json({"directory": str(directory), **rotation.to_dict()})
        return
    origin = "never published before" if rotation.fresh else "published since the last rotation"
    emit_fields([
        ("current", f"{rotation.current_kid} (signs from now on; {origin})"),
        ("next", f"{rotation.next_kid} (published now, signs from the next rotation)"),
        ("previous", f"{rotation.previous_kid} (verifies until "
                     f"{vn_iso(rotation.previous_verifies_until)})"
                     if rotation.previous_verifies_until else
                     f"{rotation.previous_kid} (dropped: verifies nothing any more)"),
        ("dropped", ", ".join(rotation.dropped)),
        ("keys", str(directory)),
    ], title="Token signing key rotated")
