"""The citizen remote-signing gateway (Cloud Signature Consortium API v2 subset, issue 7).

A level-2 citizen enrols once (:func:`~kyso.signing.gateway.credentials.enrol`: the service
generates her key, the citizen CA certifies it, the key is stored wrapped per user by
:mod:`~kyso.signing.gateway.keywrap`); each signature then needs a fresh level-2 step-up that
authorizes exactly the document hashes (:mod:`~kyso.signing.gateway.activation`: single-use
signature activation data, ≤ 300 s) before :mod:`~kyso.signing.gateway.service` unwraps the key
and signs them. Locking her e-ID account suspends the credential
(:mod:`~kyso.signing.gateway.suspension`). The HTTP face is :mod:`kyso.server.csc_routes`;
see docs/signing-gateway.md.
"""

from kyso.signing.gateway.activation import Activation, authorize, consume
from kyso.signing.gateway.algorithms import HashAlgorithm
from kyso.signing.gateway.credentials import (
    CertStatus,
    Credential,
    CredentialStatus,
    Enrolment,
    enrol,
    get_credential,
    list_credentials,
)
from kyso.signing.gateway.keywrap import MasterSecret, master_secret_path
from kyso.signing.gateway.policy import (
    AUDIENCE,
    FRESH_LOGIN,
    MULTISIGN,
    REALM,
    SAD_LIFETIME,
    Requester,
)
from kyso.signing.gateway.service import Gateway, SignedHashes, sign_hash

__all__ = [
    "AUDIENCE",
    "FRESH_LOGIN",
    "MULTISIGN",
    "REALM",
    "SAD_LIFETIME",
    "Activation",
    "CertStatus",
    "Credential",
    "CredentialStatus",
    "Enrolment",
    "Gateway",
    "HashAlgorithm",
    "MasterSecret",
    "Requester",
    "SignedHashes",
    "authorize",
    "consume",
    "enrol",
    "get_credential",
    "list_credentials",
    "master_secret_path",
    "sign_hash",
]
