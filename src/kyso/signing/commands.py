"""``kyso pdf …``: sign, sign-batch, verify. Thin: parse → library call → render."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click
from rich.progress import Progress

from kyso.audit import Layer, Outcome
from kyso.cliutil import (
    App,
    ca_passphrase,
    check_new_files,
    emit_json,
    obtain_passphrase,
    pass_app,
    passphrase_file_option,
)
from kyso.clock import SystemClock
from kyso.config import ENV_P12_PASSPHRASE, load_settings
from kyso.context import Kyso, open_kyso
from kyso.errors import ConfigError, KysoError, SigningError, UsageError
from kyso.files import atomic_output
from kyso.pki.authority import ca_exists
from kyso.pki.authority import load_settings as load_ca_settings
from kyso.signing.appearance import POSITIONS, StampRequest, StampStyle, parse_box
from kyso.signing.csc_client import (
    CscClient,
    RemoteKey,
    check_service_url,
    check_token,
    remote_signer,
)
from kyso.signing.http_services import HttpServices
from kyso.signing.pdfio import IN_MEMORY_MAX, stream_sha256
from kyso.signing.report import render_text
from kyso.signing.services import LocalServices, TrustServices
from kyso.signing.setup import build_verifier, check_signer, load_signer, store_lookup
from kyso.signing.sign import Level, PdfSigner, SignRequest
from kyso.signing.verdict import FileReport, failed_file

ENV_PDF_PASSWORD = "KYSO_PDF_PASSWORD"  # noqa: S105 - the variable's name
MAX_INPUT = 512 * 1024 * 1024
MAX_TOKEN_FILE = 16 * 1024


def register(root: click.Group) -> None:
    root.add_command(pdf)


@click.group()
def pdf() -> None:
    """Sign and verify PDF dossiers (PAdES)."""


def _read_input(path: Path) -> bytes:
    with _open_input(path) as fh:
        return fh.read()


def _open_input(path: Path) -> BinaryIO:
    """``path`` opened for reading, refused with a clear error if it cannot be a PDF input."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise SigningError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise SigningError(f"{path} is a directory, not a PDF") from None
    except PermissionError:
        raise SigningError(f"{path} is not readable") from None
    if os.fstat(fh.fileno()).st_size > MAX_INPUT:
        fh.close()
        raise SigningError(f"{path} is larger than {MAX_INPUT // 2**20} MiB")
    return fh


def _home(app: App) -> Kyso | None:
    try:
        return app.kyso
    except KysoError:
        return None


def _pdf_password(file: Path | None) -> str | None:
    """The password of protected input PDFs: --pdf-password-file, else $KYSO_PDF_PASSWORD;
    None (no prompt) when neither is given, as most PDFs have none."""
    if file is not None or os.environ.get(ENV_PDF_PASSWORD):
        return obtain_passphrase(file, ENV_PDF_PASSWORD, "PDF password")
    return None


pdf_password_file_option = click.option(
    "--pdf-password-file", type=click.Path(dir_okay=False, path_type=Path),
    help=f"File whose first line is the password of protected input PDFs (user or owner "
         f"password; else ${ENV_PDF_PASSWORD}).")


T = TypeVar("T")


def _parsed(parse: Callable[[str], T]) -> Callable[[click.Context, click.Parameter, str | None],
                                                    T | None]:
    """A click callback: the value through ``parse``, whose SigningError is a usage error (exit
    2), found before anything is read or unlocked (a malformed --box, a --remote URL that is
    not https or http to loopback)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except SigningError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


def sign_options(f: Any) -> Any:
    options = [
        click.option("--p12", "p12", type=click.Path(dir_okay=False, path_type=Path),
                     help="The signer's PKCS#12 (passphrase: --p12-passphrase-file, "
                          f"${ENV_P12_PASSPHRASE} or a prompt)."),
        click.option("--p12-passphrase-file", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--level", type=click.Choice([lv.value for lv in Level]), default="B-B",
                     show_default=True, help="PAdES baseline level (B-T and up use the home's "
                     "TSA; B-LT and up embed its OCSP responses and CRLs)."),
        click.option("--online", is_flag=True, help="Fetch timestamps, OCSP responses, CRLs "
                     "and issuer certificates over HTTP (the URLs inside the certificates and "
                     "--tsa-url) instead of unlocking this home's CA."),
        click.option("--tsa-url", help="RFC 3161 TSA for --online (default: <CA base "
                     "URL>/tsa when run in a CA home)."),
        click.option("--visible", is_flag=True, help="Show a stamp (Decree 30)."),
        click.option("--style", type=click.Choice([s.value for s in StampStyle]),
                     default="official", show_default=True),
        click.option("--page", type=int, default=1, show_default=True,
                     help="Page of the stamp (1 = first, -1 = last)."),
        click.option("--box", callback=_parsed(parse_box), help="Stamp rectangle x1,y1,x2,y2 in points."),
        click.option("--position", help=f"Named stamp place: {', '.join(POSITIONS)}."),
        click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
                     help="Signature image (official: blue handwriting; seal: red seal), PNG."),
        click.option("--certify", is_flag=True, help="Certify (DocMDP); on an already signed "
                     "PDF, lock every field and the document instead (PDF 2.0 /Lock /P)."),
        click.option("--allow", type=click.Choice(["none", "forms"]), default="forms",
                     show_default=True, help="Changes allowed after --certify."),
        click.option("--lock-fields", help="Comma-separated fields to lock (FieldMDP), or '*'."),
        click.option("--reason"), click.option("--location"), click.option("--contact"),
        click.option("--digest", type=click.Choice(["sha256", "sha384", "sha512"]),
                     default="sha256", show_default=True),
        pdf_password_file_option,
        passphrase_file_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def remote_options(f: Any) -> Any:
    options = [
        click.option("--remote", "remote", metavar="URL", callback=_parsed(check_service_url),
                     help="Sign through this CSC v2 signing gateway (e.g. a `kyso serve`): the "
                          "key stays there; instead of --p12."),
        click.option("--credential", "credential", metavar="ID",
                     help="The gateway's credential to sign with (--remote)."),
        click.option("--token-file", "token_file",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="File holding the access token for --remote (level 2, audience "
                          "kyso-csc, from a login at most 120 s old); must not be readable "
                          "by group or others."),
        click.option("--remote-ca", "remote_ca", type=click.Path(dir_okay=False, exists=True,
                                                                 path_type=Path),
                     help="CA certificate(s) (PEM) to trust for an https gateway (default: "
                          "the system's)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def read_token_file(path: Path) -> str:
    """The access token in ``path`` (its first line). Refused, without ever showing the token,
    when the file is missing, readable by group or others, too large or not a JWT."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ConfigError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    with fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"token file {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(f"token file {path} is readable by group or others (mode "
                              f"{stat.S_IMODE(info.st_mode):03o}); it holds a bearer token: "
                              f"chmod 600 {path}")
        raw = fh.read(MAX_TOKEN_FILE + 1)
    if len(raw) > MAX_TOKEN_FILE:
        raise ConfigError(f"token file {path} is larger than {MAX_TOKEN_FILE // 1024} KiB")
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} is not ASCII text (an access token is)") from None
    try:
        return check_token(lines[0] if lines else "")
    except SigningError as exc:
        raise ConfigError(f"token file {path}: {exc}") from None


def _check_key_options(o: dict[str, Any]) -> None:
    """Usage errors about where the key is (--p12 or --remote), before anything is read,
    unlocked or fetched."""
    if o.get("remote"):
        if o.get("p12") or o.get("p12_passphrase_file"):
            raise UsageError("give --p12 or --remote, not both")
        if not o.get("credential"):
            raise UsageError("--remote needs --credential ID (the gateway's credential)")
        if o.get("token_file") is None:
            raise UsageError("--remote needs --token-file FILE (a level-2 access token for "
                             "audience kyso-csc)")
        return
    if o.get("credential") or o.get("token_file") or o.get("remote_ca"):
        raise UsageError("--credential, --token-file and --remote-ca go with --remote")
    if o["p12"] is None:
        raise UsageError("give --p12 FILE (the signer's PKCS#12)"
                         + (" or --remote URL" if "remote" in o else ""))


def _remote_client(o: dict[str, Any]) -> CscClient:
    """The gateway's client: the token file read, the gateway's ``info`` checked."""
    token = read_token_file(o["token_file"])
    tls = None
    if o.get("remote_ca") is not None:
        try:
            tls = ssl.create_default_context(cafile=str(o["remote_ca"]))
        except (ssl.SSLError, OSError, ValueError):
            raise ConfigError(f"--remote-ca {o['remote_ca']}: not a PEM CA certificate file"
                              ) from None
    client = CscClient(o["remote"], token, tls=tls)
    client.info()  # a wrong URL fails here, named, before any document is touched
    return client


def _request(o: dict[str, Any], field: str | None) -> SignRequest:
    stamp = None
    if o["visible"]:
        if o["box"] and o["position"]:
            raise UsageError("give --box or --position, not both")
        stamp = StampRequest(style=StampStyle(o["style"]), page=o["page"],
                             box=o["box"],
                             position=o["position"], image=o["image"])
    elif o["box"] or o["position"] or o["image"]:
        raise UsageError("--box, --position and --image need --visible")
    locks: tuple[str, ...] = ()
    if o["lock_fields"]:
        locks = tuple(p.strip() for p in o["lock_fields"].split(",") if p.strip())
        if locks in (("all",), ("*",)):
            locks = ("*",)
    password = _pdf_password(o["pdf_password_file"])
    return SignRequest(level=Level(o["level"]), field_name=field, stamp=stamp,
                       certify=o["certify"], allow=o["allow"], lock_fields=locks,
                       reason=o["reason"], location=o["location"], contact=o["contact"],
                       pdf_password=password)


def _signer(app: App, o: dict[str, Any]) -> tuple[PdfSigner, Kyso | None]:
    _check_key_options(o)
    if o["tsa_url"] and not o["online"]:
        raise UsageError("--tsa-url goes with --online")
    client = _remote_client(o) if o.get("remote") else None
    kyso = _home(app)
    level = Level(o["level"])
    services: TrustServices | None = None
    if level.timestamped and o["online"]:
        clock = kyso.clock if kyso is not None else SystemClock()
        tsa = o["tsa_url"] or (f"{load_ca_settings(kyso).base_url.rstrip('/')}/tsa"
                               if kyso is not None and ca_exists(kyso) else None)
        if tsa is None:
            raise UsageError(f"{level.value} --online needs --tsa-url outside a CA home")
        services = HttpServices(tsa, clock)
    elif level.timestamped:
        if kyso is None:
            raise SigningError(f"{level.value} needs this home's CA (its TSA and OCSP "
                               f"responders); run in a home made by `kyso ca init`")
        services = LocalServices(kyso, ca_passphrase(o["passphrase_file"]))
    clock = kyso.clock if kyso is not None else SystemClock()
    if client is not None:
        signer = remote_signer(client, o["credential"], clock, services=services,
                               digest=o["digest"])
    else:
        p12 = _read_input(o["p12"])
        passphrase = obtain_passphrase(o["p12_passphrase_file"], ENV_P12_PASSPHRASE,
                                       "PKCS#12 passphrase")
        signer = load_signer(p12, passphrase, clock, services=services, digest=o["digest"])
    try:
        check_signer(signer.cms.certificate, clock.now(), store_lookup(kyso) if kyso else None)
    except KysoError as exc:
        if kyso is not None:
            kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.FAILURE,
                        object=f"{signer.cms.certificate.serial_number:x}", reason=str(exc))
        raise
    return signer, kyso


def _sign_one(signer: PdfSigner, kyso: Kyso | None, src: Path, dst: Path,
              request: SignRequest) -> dict[str, Any]:
    """Sign ``src`` into a new file ``dst``. A large input is read from its file as needed and
    the output is written straight to ``dst``'s temporary file: neither is held in memory."""
    with _open_input(src) as fh:
        source: bytes | BinaryIO = fh
        if os.fstat(fh.fileno()).st_size <= IN_MEMORY_MAX:
            source = fh.read()
        try:
            with atomic_output(dst, mode=0o644, exclusive=True) as out:
                result = signer.sign_to(source, out, request)
        except KysoError as exc:
            if kyso is not None:
                kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.FAILURE,
                            object=_sha256(source), reason=str(exc),
                            signer_serial=f"{signer.cms.certificate.serial_number:x}")
            raise
        input_sha256 = _sha256(source)
    info = result.to_dict()
    remote = _remote_details(signer)
    if kyso is not None:
        # (``cred_id``: a key named "credential…" is redacted by the audit log as a secret)
        kyso.record(Layer.SIGNING, "DOCUMENT_SIGN", Outcome.SUCCESS, object=info["sha256"],
                    input_sha256=input_sha256, field=info["field"],
                    level=info["level"], signer_serial=info["signer_serial"],
                    certified=info["certified"], visible=info["visible"],
                    **{("cred_id" if k == "credential_id" else k): v for k, v in remote.items()})
    return {"input": str(src), "output": str(dst), **info, **remote}


def _remote_details(signer: PdfSigner) -> dict[str, Any]:
    """For a gateway-held key: the gateway, the credential and the digest it signed (the
    hash of the signed attributes, as the gateway's CSC_AUTHORIZE / CSC_SIGN_HASH events
    record it)."""
    key = signer.cms.key
    if not isinstance(key, RemoteKey) or not key.signatures:
        return {}
    last = key.signatures[-1]
    return {"gateway": key.client.base, "credential_id": last.credential_id,
            "signed_digest": last.digest}


def _sha256(source: bytes | BinaryIO) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    return stream_sha256(source)[1]


@pdf.command()
@click.argument("input_pdf", metavar="IN.pdf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--field", "field_name", help="Signature field (default: the style's name).")
@sign_options
@remote_options
@pass_app
def sign(app: App, /, input_pdf: Path, output: Path, field_name: str | None, **o: Any) -> None:
    """Sign a PDF (PAdES); the input is never modified, the output is written atomically.

    With --remote the key stays with a signing gateway (CSC API v2): kyso builds the
    signature and the gateway signs its hash once the access token's fresh level-2 login
    authorizes exactly that hash.

    \b
    Examples:
      kyso pdf sign don.pdf -o don-ky.pdf --p12 an.p12
      kyso pdf sign kq.pdf -o kq-ky.pdf --p12 an.p12 --level B-LTA --visible --image ky.png
      kyso pdf sign kq-ky.pdf -o kq-dau.pdf --p12 xa.p12 --visible --style seal \\
          --position over:official --certify --lock-fields '*'
      kyso pdf sign don.pdf -o don-ky.pdf --remote https://kyso.thainguyen.gov.vn \\
          --credential Hk3…Qw --token-file token.txt
      kyso pdf sign don.pdf -o don-ky.pdf --remote https://kyso.thainguyen.gov.vn \\
          --credential Hk3…Qw --token-file token.txt --level B-LT --online
    """
    if output.resolve() == input_pdf.resolve():
        raise UsageError("the output must be a new file; the input is never modified")
    check_new_files([output])
    request = _request(o, field_name)
    signer, kyso = _signer(app, o)
    result = _sign_one(signer, kyso, input_pdf, output, request)
    if app.json:
        emit_json(result)
    else:
        click.echo(f"signed {input_pdf} → {output} (field {result['field']}, {result['level']}, "
                   f"{result['signing_time']})")


@pdf.command("sign-batch")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, exists=True,
                                                       path_type=Path))
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--field", "field_name")
@sign_options
@pass_app
def sign_batch(app: App, /, folder: Path, out_dir: Path, field_name: str | None, **o: Any) -> None:
    """Sign every *.pdf of DIR into OUT-DIR after one unlock of the key.

    A file that cannot be signed is reported and skipped; the exit code is then 1.

    \b
    Example:
      kyso pdf sign-batch hoso/ -o hoso-ky/ --p12 an.p12 --level B-T
    """
    files = sorted(p for p in folder.glob("*.pdf") if p.is_file())
    if not files:
        raise UsageError(f"no *.pdf files in {folder}")
    out_dir.mkdir(parents=True, exist_ok=True)
    check_new_files([out_dir / p.name for p in files])
    request = _request(o, field_name)
    signer, kyso = _signer(app, o)
    results, failures = [], []
    with Progress(transient=True, console=_err_console(), disable=app.json) as progress:
        task = progress.add_task("signing", total=len(files))
        for src in files:
            try:
                results.append(_sign_one(signer, kyso, src, out_dir / src.name, request))
            except KysoError as exc:
                failures.append({"input": str(src), "error": str(exc)})
            progress.advance(task)
    if app.json:
        emit_json({"signed": results, "failed": failures})
    else:
        click.echo(f"signed {len(results)} of {len(files)} file(s) into {out_dir}")
        for f in failures:
            click.echo(f"  failed {f['input']}: {f['error']}", err=True)
    if failures:
        click.get_current_context().exit(1)


def _err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# --- verify --------------------------------------------------------------------------------

_WORKER: Any = None
_PASSWORD: str | None = None


def _init_worker(home: str | None, trust: list[str], online: bool,
                 password: str | None = None) -> None:
    global _WORKER, _PASSWORD
    kyso = None
    if home is not None:
        kyso = open_kyso(load_settings(home=Path(home)), actor="verify")
    _WORKER = build_verifier(SystemClock(), kyso=kyso, trust=[Path(t) for t in trust],
                             online=online)
    _PASSWORD = password


def _verify_path(path: str) -> FileReport:
    try:
        _open_input(Path(path)).close()  # the refusals of _open_input, with their messages
    except KysoError as exc:
        return failed_file(path, str(exc))
    try:  # a large file is read as needed, never held whole
        report: FileReport = _WORKER.verify_file(Path(path), path, password=_PASSWORD)
    except Exception as exc:  # fail closed, one file at a time
        return failed_file(path, f"verification crashed: {type(exc).__name__}: {exc}")
    return report


def _paths(files: tuple[Path, ...], batch: Path | None) -> list[str]:
    if batch is not None:
        if files:
            raise UsageError("give FILE arguments or --batch DIR, not both")
        found = sorted(str(p) for p in batch.rglob("*.pdf") if p.is_file())
        if not found:
            raise UsageError(f"no *.pdf files under {batch}")
        return found
    if not files:
        raise UsageError("give at least one FILE (or --batch DIR)")
    return [str(f) for f in files]


def _results(paths: list[str], jobs: int, init: tuple[Any, ...]) -> Iterator[FileReport]:
    if jobs <= 1 or len(paths) == 1:
        _init_worker(*init)
        yield from map(_verify_path, paths)
        return
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=init) as pool:
        yield from pool.map(_verify_path, paths, chunksize=max(1, min(16, len(paths) // (4 * jobs))))


@pdf.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust", multiple=True, type=click.Path(dir_okay=False, exists=True,
                                                      path_type=Path),
              help="Trust anchor (PEM/DER); default: this home's root CA.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@click.option("--online/--offline", default=False, show_default=True,
              help="Fetch OCSP/CRL from the URLs in the certificates.")
@click.option("--batch", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Verify every *.pdf under this folder.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: every core).")
@click.option("--jsonl", is_flag=True, help="One JSON report per line.")
@pdf_password_file_option
@pass_app
def verify(app: App, files: tuple[Path, ...], trust: tuple[Path, ...], lang: str, online: bool,
           batch: Path | None, jobs: int | None, jsonl: bool,
           pdf_password_file: Path | None) -> None:
    """Verify every signature of PDF files; exit 0 only if all of them passed.

    \b
    Examples:
      kyso pdf verify ho-so.pdf
      kyso pdf verify ho-so.pdf --trust root.pem --format json --lang en
      kyso pdf verify --batch hoso/ --jobs 2 --jsonl > ketqua.jsonl
      kyso pdf verify khoa-ky.pdf --pdf-password-file mat-khau.txt
    """
    paths = _paths(files, batch)
    home = str(app.settings.home) if _home(app) is not None else None
    if home is None and not trust:
        raise UsageError("no trust anchor: give --trust root.pem or use a home with a CA")
    init = (home, [str(t) for t in trust], online, _pdf_password(pdf_password_file))
    _init_worker(*init)  # fail early on bad trust anchors, in this process
    workers = jobs or (os.cpu_count() or 1)
    reports = []
    all_passed = True
    with Progress(transient=True, console=_err_console(),
                  disable=len(paths) < 2 or not (jsonl or batch)) as progress:
        task = progress.add_task("verifying", total=len(paths))
        for report in _results(paths, workers, init):
            all_passed &= report.passed
            if jsonl:
                click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
            else:
                reports.append(report)
            progress.advance(task)
    if not jsonl:
        if app.json:
            dicts = [r.to_dict() for r in reports]
            emit_json(dicts[0] if len(dicts) == 1 and batch is None else dicts)
        else:
            click.echo("\n\n".join(render_text(r, lang) for r in reports))
    if kyso := _home(app):
        kyso.record(Layer.SIGNING, "DOCUMENT_VERIFY", Outcome.SUCCESS if all_passed
                    else Outcome.FAILURE, object=f"{len(paths)} file(s)",
                    files=len(paths), passed=all_passed)
    if not all_passed:
        click.get_current_context().exit(1)

