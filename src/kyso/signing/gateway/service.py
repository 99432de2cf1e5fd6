"""``signatures/signHash`` and the :class:`Gateway` a server holds.

:func:`sign_hash` checks the requester (level 2), the credential (hers, enabled, not
suspended, certificate valid), that ``signAlgo`` suits the key, then consumes the SAD for
exactly these hashes, and only then unwraps the key — inside :func:`_sign`, which signs each
hash as given (``Prehashed``: ECDSA → DER ``ECDSA-Sig-Value``, RSA → PKCS#1 v1.5) and lets the
key go out of scope. The key never leaves that function.

:class:`Gateway` unlocks what the calls need once, on first use, with the CA passphrase: the
citizen issuing CA (enrolment) and the master secret (created by the first enrolment).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kyso.audit import Layer, Outcome
from kyso.context import Kyso
from kyso.errors import ConfigError, GatewayRequestError, KeyFileError, KysoError
from kyso.pki.authority import CertificateAuthority
from kyso.signing.gateway import activation, credentials
from kyso.signing.gateway.activation import Activation, check_hashes, hash_details
from kyso.signing.gateway.algorithms import HashAlgorithm, SignatureScheme, scheme_for
from kyso.signing.gateway.credentials import ISSUER, Credential, Enrolment
from kyso.signing.gateway.keywrap import MasterSecret, master_secret_path, unwrap_key
from kyso.signing.gateway.policy import Requester, require_level2
from kyso.store import schema

__all__ = ["Gateway", "SignedHashes", "sign_hash"]


@dataclass(frozen=True)
class SignedHashes:
    """The answer of ``signatures/signHash``: one signature per hash, in the request's order."""

    credential_id: str
    serial: str
    sign_algo: str
    hash_algorithm: HashAlgorithm
    signatures: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"signatures": [base64.b64encode(s).decode("ascii") for s in self.signatures]}


def sign_hash(kyso: Kyso, master: MasterSecret | Callable[[], MasterSecret],
              requester: Requester, credential_id: str, sad: str, hashes: list[bytes],
              sign_algo: str, hash_oid: str | None = None,
              sign_algo_params: str | None = None) -> SignedHashes:
    """Sign ``hashes`` with the requester's credential under one SAD (see the module
    docstring). ``master`` may be a function that unlocks it, called only once the request
    has passed every check. Every outcome is one ``CSC_SIGN_HASH`` event (pseudonym,
    credential id, hashes, serial, token id)."""
    details: dict[str, Any] = {**hash_details(hashes, None), "sign_algo": sign_algo[:64],
                               **requester.details}
    try:
        require_level2(requester)
        now = kyso.now()
        credential = credentials.usable_credential(kyso, requester.subject, credential_id, now)
        details["serial"] = credential.serial
        scheme = scheme_for(credential.key_type, sign_algo, hash_oid, sign_algo_params)
        details["hash_algorithm"] = scheme.hash.label
        check_hashes(hashes, scheme.hash)
        unlocked = master if isinstance(master, MasterSecret) else master()
        activation.consume(kyso, requester, credential_id, sad, hashes, scheme.hash)
        signatures = _sign(kyso, unlocked, credential, hashes, scheme)
    except KysoError as exc:
        kyso.record(Layer.SIGNING, "CSC_SIGN_HASH", Outcome.FAILURE, object=credential_id[:64],
                    reason=str(exc), **details, **requester.where)
        raise
    kyso.record(Layer.SIGNING, "CSC_SIGN_HASH", Outcome.SUCCESS, object=credential_id,
                signatures=len(signatures), **details, **requester.where)
    return SignedHashes(credential_id, credential.serial, sign_algo, scheme.hash,
                        tuple(signatures))


def _sign(kyso: Kyso, master: MasterSecret, credential: Credential, hashes: list[bytes],
          scheme: SignatureScheme) -> list[bytes]:
    """Unwrap the credential's key and sign each hash; the key does not outlive this call."""
    sc = schema.signing_credentials
    with kyso.store.read() as conn:
        blob = conn.execute(sa.select(sc.c.key_wrapped).where(
            sc.c.credential_id == credential.credential_id,
            sc.c.subject == credential.subject)).scalar()
    if blob is None:
        raise KeyFileError(f"the key of credential {credential.credential_id} is missing")
    key = unwrap_key(master, blob, credential_id=credential.credential_id,
                     subject=credential.subject)
    prehashed = Prehashed(scheme.hash.primitive())
    if scheme.family == "ec" and isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.sign(h, ec.ECDSA(prehashed)) for h in hashes]
    if scheme.family == "rsa" and isinstance(key, rsa.RSAPrivateKey):
        return [key.sign(h, padding.PKCS1v15(), prehashed) for h in hashes]
    raise GatewayRequestError(f"signAlgo: {scheme.sign_algo} does not suit this credential's key")


class Gateway:
    """What a server holds: the home, and the CA passphrase that unlocks the citizen CA and
    the master secret (both unlocked once, on first use; a failed unlock is tried again on the
    next call). Without a passphrase, enrolment and signing raise :class:`ConfigError`."""

    def __init__(self, kyso: Kyso, passphrase: str | None) -> None:
        self.kyso = kyso
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._ca: CertificateAuthority | None = None
        self._master: MasterSecret | None = None

    def __repr__(self) -> str:
        return f"Gateway({self.kyso.settings.home}, keys={'yes' if self.has_keys else 'no'})"

    @property
    def has_keys(self) -> bool:
        return self._passphrase is not None

    def _need_passphrase(self) -> str:
        if self._passphrase is None:
            raise ConfigError("the server was started without the CA passphrase, so the signing "
                              "gateway cannot enrol or sign")
        return self._passphrase

    def authority(self) -> CertificateAuthority:
        with self._lock:
            if self._ca is None:
                ca = CertificateAuthority(self.kyso, self._need_passphrase())
                ca.issuer(ISSUER)  # a wrong passphrase fails here, before anything is created
                self._ca = ca
            return self._ca

    def master(self, *, create: bool = False) -> MasterSecret:
        with self._lock:
            if self._master is None:
                path = master_secret_path(self.kyso.settings.home)
                passphrase = self._need_passphrase()
                self._master = (MasterSecret.load_or_create(
                    path, passphrase, self.kyso.settings.key_kdf_iterations) if create
                    else MasterSecret.load(path, passphrase))
            return self._master

    # -- the calls -------------------------------------------------------------------------

    def enrol(self, requester: Requester) -> Enrolment:
        try:
            ca = self.authority()
            master = self.master(create=True)
        except KysoError as exc:
            self.kyso.record(Layer.SIGNING, "CSC_CREDENTIAL_ENROL", Outcome.FAILURE,
                             reason=str(exc), **requester.details, **requester.where)
            raise
        return credentials.enrol(self.kyso, ca, master, requester)

    def credentials(self, requester: Requester) -> list[Credential]:
        require_level2(requester)
        return credentials.list_credentials(self.kyso, requester.subject)

    def credential(self, requester: Requester, credential_id: str) -> Credential:
        require_level2(requester)
        return credentials.get_credential(self.kyso, requester.subject, credential_id)

    def authorize(self, requester: Requester, credential_id: str, hashes: list[bytes],
                  algorithm: HashAlgorithm, num_signatures: int) -> Activation:
        return activation.authorize(self.kyso, requester, credential_id, hashes, algorithm,
                                    num_signatures)

    def sign_hash(self, requester: Requester, credential_id: str, sad: str, hashes: list[bytes],
                  sign_algo: str, hash_oid: str | None = None,
                  sign_algo_params: str | None = None) -> SignedHashes:
        return sign_hash(self.kyso, self.master, requester, credential_id, sad, hashes,
                         sign_algo, hash_oid, sign_algo_params)
