"""Helpers of the PKI route tests (their fixtures are in ``pki_server_fixtures``): the app
with the CA passphrase, request builders, OpenSSL and ``kyso`` subprocesses, the live server's
description."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI
from server_support import ISSUER, KEY_PASSPHRASE

from conftest import FAST_KDF, PASSPHRASE, STAFF
from kyso.context import Kyso
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.records import CertificateRecord
from kyso.pki.subjects import SubjectRequest
from kyso.server.app import create_app

OCSP_TYPE = {"Content-Type": "application/ocsp-request"}
TSA_TYPE = {"Content-Type": "application/timestamp-query"}


def make_app(kyso: Kyso, *, ca_passphrase: str | None = PASSPHRASE) -> FastAPI:
    return create_app(kyso.settings, kyso=kyso, key_passphrase=KEY_PASSPHRASE, issuer=ISSUER,
                      ca_passphrase=ca_passphrase)


def issue_staff(kyso: Kyso, ca: CertificateAuthority, n: int = 0) -> CertificateRecord:
    values = {**STAFF, "id": f"019099012{n:03d}", "email": f"staff{n}@thainguyen.gov.vn"}
    return issuance.issue(kyso, ca, "staff", SubjectRequest.of(**values)).record


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, *,
                 algorithm: hashes.HashAlgorithm | None = None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm or hashes.SHA1())  # noqa: S303 - what clients send
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def get_path(ca: str, request_der: bytes) -> str:
    """RFC 6960 A.1: ``/ocsp/<ca>/`` + the URL-encoded base64 of the DER request."""
    from urllib.parse import quote

    return f"/ocsp/{ca}/" + quote(base64.b64encode(request_der).decode("ascii"), safe="")


def tsa_request(digest: bytes, algorithm: str = "sha256", **fields: object) -> bytes:
    values = {"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}, "cert_req": True}
    return bytes(tsp.TimeStampReq({**values, **fields}).dump())


class TimeStampReply(core.Sequence):  # type: ignore[misc]
    """TimeStampResp with its token OPTIONAL, as RFC 3161 has it (asn1crypto requires it)."""

    _fields = [("status", tsp.PKIStatusInfo),  # noqa: RUF012 - asn1crypto's declaration style
               ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, encoding="utf-8", errors="replace",
                          timeout=120, check=False, env=env)


def kyso_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kyso --home HOME …`` in another process (the test's fast KDF and database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env.update(FAST_KDF)
    env["PYTHONWARNINGS"] = "ignore"
    if os.environ.get("KYSO_DATABASE_URL"):
        env["KYSO_DATABASE_URL"] = os.environ["KYSO_DATABASE_URL"]
    return run(sys.executable, "-m", "kyso", "--home", str(home), *args, env=env)


@dataclass(frozen=True)
class LivePki:
    """A running server: its URL, home and store, a staff certificate, PEM files for the tools."""

    url: str
    kyso: Kyso
    ca: CertificateAuthority
    leaf: CertificateRecord
    files: dict[str, Path]

    @property
    def home(self) -> Path:
        return self.kyso.settings.home


def fetch(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
