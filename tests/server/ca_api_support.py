"""Helpers of the CA administration API tests (imported by name): certificate signing requests
as an admin's tool makes them, and the API calls (an admin's access token comes from
server_support's :func:`access_token`)."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from server_support import bearer

from conftest import STAFF

API = "/api/v1/certificates"


def staff_id(n: int) -> str:
    """A well-formed 12-digit personal ID number (Thái Nguyên, male, born 1999) per ``n``."""
    return f"019099{n:06d}"


def staff_csr(n: int = 0, *, key: ec.EllipticCurvePrivateKey | None = None,
              extensions: tuple[x509.ExtensionType, ...] = (),
              **overrides: str) -> x509.CertificateSigningRequest:
    """A staff CSR as an admin's tool makes it: CN, serialNumber IDCVN-…, T, OU and e-mail in
    the subject, signed by a fresh P-256 key (or ``key``). ``overrides`` replace or (empty)
    drop subject values: cn, id, title, unit, email."""
    values = {"cn": STAFF["name"], "id": staff_id(n), "title": STAFF["title"],
              "unit": STAFF["unit"], "email": f"staff{n}@thainguyen.gov.vn", **overrides}
    oids = {"cn": NameOID.COMMON_NAME, "title": NameOID.TITLE,
            "unit": NameOID.ORGANIZATIONAL_UNIT_NAME, "email": NameOID.EMAIL_ADDRESS}
    attrs = [x509.NameAttribute(oids[k], values[k]) for k in ("cn", "title", "unit", "email")
             if values[k]]
    if values["id"]:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IDCVN-{values['id']}"))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


def pem_text(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue(http: httpx.Client, token: str | None, body: Any) -> httpx.Response:
    headers = bearer(token) if token else {}
    return http.post(API, json=body, headers=headers)


def revoke(http: httpx.Client, token: str | None, serial: str, reason: str,
           **extra: Any) -> httpx.Response:
    headers = bearer(token) if token else {}
    return http.post(f"{API}/{serial}/revoke", json={"reason": reason, **extra}, headers=headers)
