"""How a browser and a portal talk to the e-ID provider, over real HTTPS, with the standard
library only (used by ``kyso demo``).

- :func:`running_provider` serves the HTTP service (:func:`kyso.server.app.create_app`) with
  uvicorn on a free loopback port, over TLS with a throw-away certificate, and registers the
  portal as a confidential client whose access tokens are also meant for the signing gateway
  (audience ``kyso-csc``), which the same service runs.
- :class:`Browser` is the citizen's browser: it opens the provider's pages and submits their
  forms (hidden CSRF field included), keeps cookies (the session cookie is a ``__Host-``
  Secure cookie, sent back over HTTPS only) and does not follow redirects by itself.
- :class:`Portal` is the portal's back end (the relying party): its own connection without the
  browser's cookies, the provider's discovery document, its client secret, and a
  :class:`~kyso.authn.rp.TokenVerifier` on the provider's published keys.
- :func:`log_in` is one authorization-code flow between them: authorize → password form →
  one-time-code form → redirect with ``code``, ``state`` and ``iss`` → token request (client
  secret, PKCE S256 verifier) → the ID token's nonce and the access token's level checked.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kyso.audit import Layer, Outcome
from kyso.authn.registry import Level
from kyso.authn.rp import TokenVerifier, VerifiedToken
from kyso.authn.rp_keys import RemoteJwks
from kyso.authn.tokens import TokenType
from kyso.clock import SystemClock
from kyso.context import Kyso
from kyso.errors import AuthnError, KysoError
from kyso.files import atomic_write

__all__ = ["Browser", "Login", "Portal", "PortalClient", "ProviderServer", "Reply", "log_in",
           "loopback_tls_files", "running_provider"]

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 30  # the server's start-up, not a measurement


@dataclass(frozen=True)
class PortalClient:
    """How the portal is registered with the provider. ``audiences``: who its access tokens
    are for (the first is the client itself); empty means the client alone."""

    client_id: str
    name: str
    redirect_uri: str
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderServer:
    """The running provider: its issuer URL, a TLS context that trusts its throw-away CA only,
    and the portal's registration with its client secret."""

    issuer: str
    tls: ssl.SSLContext
    portal: PortalClient
    client_secret: str = field(repr=False)


# --- the provider ------------------------------------------------------------------------------

def loopback_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away TLS CA and server certificate for 127.0.0.1: the provider's session cookie
    is a ``__Host-`` Secure cookie, which a browser sends back only over HTTPS. Valid around
    the real time, whatever the kyso clock says: the TLS stack checks it against that."""
    now = SystemClock().now()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kyso demo TLS CA (throw-away)")])

    def base(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1)))

    ca = (base(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (base(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]),
                   key.public_key())
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    atomic_write(files[0], ca.public_bytes(serialization.Encoding.PEM))
    atomic_write(files[1], server.public_bytes(serialization.Encoding.PEM))
    atomic_write(files[2], key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    return files


@contextlib.contextmanager
def running_provider(kyso: Kyso, token_key_passphrase: str, portal: PortalClient, *,
                     ca_passphrase: str | None = None) -> Iterator[ProviderServer]:
    """The HTTP service (``create_app``) served by uvicorn over HTTPS on a free loopback port, in
    a background thread, with ``portal`` registered as a confidential client
    (``CLIENT_REGISTER`` event). ``ca_passphrase`` unlocks what the signing gateway needs (the
    citizen CA, its master secret). Stopped, and its TLS files removed, on leaving."""
    import uvicorn

    from kyso.server.app import create_app

    with tempfile.TemporaryDirectory(prefix="kyso-demo-tls.") as folder:
        ca_file, cert_file, key_file = loopback_tls_files(Path(folder))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((LOOPBACK, 0))
            issuer = f"https://{LOOPBACK}:{sock.getsockname()[1]}"
            app = create_app(kyso.settings, kyso=kyso, key_passphrase=token_key_passphrase,
                             issuer=issuer, ca_passphrase=ca_passphrase)
            audiences = list(portal.audiences) or None
            client = app.state.provider.clients.add(portal.client_id, portal.name,
                                                    [portal.redirect_uri], confidential=True,
                                                    audiences=audiences)
            kyso.record(Layer.AUTHN, "CLIENT_REGISTER", Outcome.SUCCESS, object=portal.client_id,
                        type="confidential", redirect_uris=[portal.redirect_uri],
                        audiences=list(client.client.audiences))
            server = uvicorn.Server(uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", server_header=False,
                ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                      name="kyso-demo-server", daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + START_TIMEOUT_SECONDS
                while not server.started and thread.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not server.started:
                    raise KysoError("the e-ID provider did not start on the loopback port")
                assert client.secret is not None  # a confidential client
                yield ProviderServer(issuer, ssl.create_default_context(cafile=str(ca_file)),
                                     portal, client.secret)
            finally:
                server.should_exit = True
                thread.join(timeout=10)
        finally:
            sock.close()


# --- HTTPS with the standard library ------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """One HTTP answer, redirects included (they are not followed)."""

    status: int
    headers: Message
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self, *required: str) -> dict[str, Any]:
        """The body as a JSON object holding ``required``; AuthnError otherwise."""
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(name not in data for name in required):
            raise AuthnError(f"the provider's answer (HTTP {self.status}) is not the JSON "
                             f"object expected (with {', '.join(required)})")
        return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the caller reads the Location itself, as a browser's script would


class _Http:
    """HTTPS to the provider: its TLS CA trusted, no proxy, redirects not followed, cookies
    kept (``__Host-`` Secure cookies go back over HTTPS only, as in a browser)."""

    def __init__(self, server: ProviderServer) -> None:
        self.base = server.issuer
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=server.tls),
            urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect())

    def request(self, url: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        full = urljoin(self.base + "/", url)
        if not full.startswith(self.base + "/"):
            raise AuthnError(f"refusing to follow {full!r} off the provider")
        data = urlencode(form).encode("ascii") if form is not None else None
        req = urllib.request.Request(full, data=data, headers={  # noqa: S310 - https, checked
            "Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5", "User-Agent": "kyso-demo",
            **(headers or {})})
        try:
            with self._opener.open(req, timeout=30) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:  # 3xx (not followed) and 4xx/5xx answers
            with exc:
                return Reply(exc.code, exc.headers, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise AuthnError(f"cannot reach the e-ID provider at {self.base}: {reason}") from None


class _Forms(HTMLParser):
    """A page's forms as a browser submits them: action → the fields' current values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = self.forms.setdefault(a.get("action", ""), {})
        elif tag == "input" and self._current is not None and a.get("name"):
            if a.get("type", "text").lower() in ("radio", "checkbox") and "checked" not in a:
                return
            self._current[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


# --- the browser and the portal ----------------------------------------------------------------

class Browser:
    """The citizen's browser: opens the provider's pages, fills and submits their forms."""

    def __init__(self, server: ProviderServer) -> None:
        self._http = _Http(server)
        self.page: Reply | None = None

    def open(self, url: str) -> Reply:
        self.page = self._http.request(url)
        return self.page

    def submit(self, action: str, typed: dict[str, str]) -> Reply:
        """Submit the page's form for ``action`` (its hidden fields, e.g. the CSRF token, and
        the radio buttons as checked) with what the citizen typed."""
        parser = _Forms()
        parser.feed(self.page.text if self.page is not None else "")
        if action not in parser.forms:
            status = self.page.status if self.page is not None else "-"
            raise AuthnError(f"the provider's page (HTTP {status}) has no form for {action}")
        self.page = self._http.request(action, {**parser.forms[action], **typed})
        return self.page


@dataclass(frozen=True)
class Portal:
    """The provincial portal's back end (the relying party): its own HTTPS connection (no
    browser cookies), the provider's discovery document, its registration and client secret,
    and a :class:`~kyso.authn.rp.TokenVerifier` on the provider's published keys (JWKS URL)."""

    http: _Http
    meta: dict[str, Any]
    rp: TokenVerifier
    client: PortalClient
    client_secret: str = field(repr=False)

    @classmethod
    def connect(cls, server: ProviderServer, kyso: Kyso) -> Portal:
        """Read the discovery document; the verifier records its checks in ``kyso``'s log."""
        http = _Http(server)
        meta = http.request("/.well-known/openid-configuration").json(
            "authorization_endpoint", "token_endpoint", "jwks_uri")
        keys = RemoteJwks(meta["jwks_uri"], kyso.clock, fetch=lambda url: http.request(url).body)
        return cls(http, meta, TokenVerifier(server.issuer, keys, kyso.clock, audit=kyso),
                   server.portal, server.client_secret)


@dataclass(frozen=True)
class Login:
    """The access token the portal received and what its check found."""

    access_token: str = field(repr=False)
    token: VerifiedToken


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def log_in(portal: Portal, browser: Browser, id_number: str, password: str,
           code: Callable[[], str], **extra: str) -> Login:
    """The portal sends the browser to the provider (``extra`` adds authorization parameters,
    e.g. ``prompt``, ``max_age``, ``acr_values``); the citizen types her ID number and
    password, then ``code()`` from her authenticator app; the portal redeems the code (client
    secret, PKCE verifier) and checks the ID token and the access token (level 2)."""
    client_id, redirect_uri = portal.client.client_id, portal.client.redirect_uri
    verifier, challenge = _pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": "openid profile", "state": state, "nonce": nonce,
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    page = browser.open(f"{portal.meta['authorization_endpoint']}?{urlencode(params)}")
    if page.status != 200:
        raise AuthnError(f"the provider did not show its login page (HTTP {page.status})")
    page = browser.submit("/login/password", {"id_number": id_number, "password": password})
    if page.status != 200:
        raise AuthnError(f"the provider refused the password (HTTP {page.status})")
    page = browser.submit("/login/otp", {"factor": "totp", "code": code()})
    location = page.headers.get("Location", "")
    if page.status != 303 or not location.startswith(redirect_uri + "?"):
        raise AuthnError(f"the provider refused the one-time code (HTTP {page.status})")
    answer = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if answer.get("state") != state or answer.get("iss") != portal.rp.issuer:
        raise AuthnError("the provider's redirect does not carry the portal's state and issuer")
    basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(portal.client_secret, safe='')}"
                             .encode("ascii")).decode("ascii")  # RFC 6749 §2.3.1
    reply = portal.http.request(portal.meta["token_endpoint"], {
        "grant_type": "authorization_code", "code": answer.get("code", ""),
        "redirect_uri": redirect_uri, "code_verifier": verifier},
        headers={"Authorization": f"Basic {basic}"})
    if reply.status != 200:
        raise AuthnError(f"the token endpoint refused the code (HTTP {reply.status})")
    tokens = reply.json("access_token", "id_token")
    id_token = portal.rp.verify(tokens["id_token"], audience=client_id, token_type=TokenType.ID,
                                access_token=tokens["access_token"])
    if id_token.claims.get("nonce") != nonce:
        raise AuthnError("the ID token does not carry the portal's nonce")
    token = portal.rp.verify(tokens["access_token"], audience=client_id, min_level=Level.TWO)
    return Login(tokens["access_token"], token)
