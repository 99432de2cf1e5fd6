"""Certificate signing requests: proof of possession, key policy, and what the CSR asks for.

The CA decides the certificate's content from the profile; a CSR can only supply the public key
and subject details the profile takes. Requests beyond the profile are refused (CA:TRUE, key
usages or EKUs the profile lacks, SAN types other than e-mail); extensions the profile does not
define are dropped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID, NameOID

from kyso.errors import CSRError
from kyso.pki.keys import PublicKey, as_public_key, key_type_of
from kyso.pki.profiles import ATTRIBUTE_NAMES, EXTENDED_KEY_USAGES, Profile

MAX_CSR_BYTES = 64 * 1024

_KU_FIELDS = {
    "digital_signature": "digitalSignature", "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment", "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement", "key_cert_sign": "keyCertSign", "crl_sign": "cRLSign",
}
_UID_INPUTS = {"CCCD": "id", "CMND": "id", "MST": "tax_code", "MNS": "budget_code"}
_ATTR_INPUTS = {"CN": "name", "SN": "surname", "GN": "given_name", "T": "title", "OU": "unit",
                "L": "locality"}


@dataclass(frozen=True)
class CsrRequest:
    public_key: PublicKey
    inputs: dict[str, str]
    dropped_extensions: tuple[str, ...]

    def __repr__(self) -> str:
        return f"CsrRequest(inputs={sorted(self.inputs)})"


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    if not data:
        raise CSRError("CSR file is empty")
    if len(data) > MAX_CSR_BYTES:
        raise CSRError(f"CSR is larger than {MAX_CSR_BYTES // 1024} KiB")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, TypeError):
        raise CSRError("not a valid PEM or DER certificate signing request (PKCS#10)") from None


def _add(inputs: dict[str, str], key: str, value: str, where: str) -> None:
    if key in inputs and inputs[key] != value:
        raise CSRError(f"CSR gives two different values for {key} ({where})")
    inputs[key] = value


def examine_csr(csr: x509.CertificateSigningRequest, profile: Profile) -> CsrRequest:
    """Check a CSR against ``profile`` and extract what it may contribute."""
    try:
        if not _signature_valid(csr):
            raise CSRError("CSR signature does not verify: proof of possession failed")
        raw_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CSRError("CSR public key or signature is malformed") from None
    key_type = key_type_of(raw_key)
    public_key = as_public_key(raw_key)
    if key_type not in profile.allowed_keys:
        allowed = ", ".join(k.value for k in profile.allowed_keys)
        raise CSRError(f"profile {profile.name} does not allow {key_type.value} keys "
                       f"(allowed: {allowed})")

    inputs: dict[str, str] = {}
    try:
        attributes = list(csr.subject)
    except ValueError:
        raise CSRError("CSR subject is malformed") from None
    for attr in attributes:
        name = ATTRIBUTE_NAMES.get(attr.oid)
        value = str(attr.value)
        if attr.oid == NameOID.EMAIL_ADDRESS:
            _add(inputs, "email", value, "emailAddress")
        elif name in _ATTR_INPUTS:
            _add(inputs, _ATTR_INPUTS[name], value, name)
        elif name == "UID":
            prefix, _, rest = value.partition(":")
            if prefix not in _UID_INPUTS or not rest:
                raise CSRError("CSR UID must start with one of CCCD:, CMND:, MST:, MNS:")
            _add(inputs, _UID_INPUTS[prefix], rest, "UID")
        elif name == "serialNumber":
            if not value.startswith("IDCVN-"):
                raise CSRError("CSR serialNumber must have the form IDCVN-<personal ID>")
            _add(inputs, "id", value.removeprefix("IDCVN-"), "serialNumber")
        elif name == "organizationIdentifier":
            if not value.startswith("NTRVN-"):
                raise CSRError("CSR organizationIdentifier must have the form NTRVN-<tax code>")
            _add(inputs, "tax_code", value.removeprefix("NTRVN-"), "organizationIdentifier")
        elif name in ("C", "ST", "O"):
            continue  # set by the CA from its own settings; checked by name constraints
        else:
            label = name or attr.oid.dotted_string
            raise CSRError(f"CSR subject attribute {label} is not allowed by profile "
                           f"{profile.name}")
    unexpected = set(inputs) - profile.allowed_inputs
    if unexpected:
        raise CSRError(f"CSR subject carries {', '.join(sorted(unexpected))}, which profile "
                       f"{profile.name} does not take")

    dropped = []
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CSRError("CSR extensions are malformed or duplicated") from None
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca and not profile.is_ca:
                raise CSRError(f"CSR asks for CA:TRUE; profile {profile.name} issues end-entity "
                               "certificates only")
        elif isinstance(value, x509.SubjectAlternativeName):
            for gn in value:
                if isinstance(gn, x509.RFC822Name):
                    _add(inputs, "email", gn.value, "subjectAltName")
                else:
                    raise CSRError(f"CSR subjectAltName of type {type(gn).__name__} is not allowed "
                                   f"by profile {profile.name} (e-mail only)")
            if "email" in inputs and "email" not in profile.allowed_inputs:
                raise CSRError(f"profile {profile.name} does not allow an e-mail address")
        elif isinstance(value, x509.KeyUsage):
            asked = {label for attr, label in _KU_FIELDS.items() if _ku_bit(value, attr)}
            extra = asked - profile.key_usage
            if extra:
                raise CSRError(f"CSR asks for key usage {', '.join(sorted(extra))}, which "
                               f"profile {profile.name} does not grant")
        elif isinstance(value, x509.ExtendedKeyUsage):
            granted = {EXTENDED_KEY_USAGES[e] for e in profile.extended_key_usage}
            extra_oids = [o.dotted_string for o in value if o not in granted]
            if extra_oids:
                raise CSRError(f"CSR asks for extended key usage {', '.join(extra_oids)}, which "
                               f"profile {profile.name} does not grant")
        else:
            dropped.append(_ext_name(ext))
    return CsrRequest(public_key=public_key, inputs=inputs, dropped_extensions=tuple(dropped))


def _signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    except UnsupportedAlgorithm:
        raise CSRError("CSR uses a key or signature algorithm kyso does not accept") from None


def _ku_bit(ku: x509.KeyUsage, attr: str) -> bool:
    return bool(getattr(ku, attr))


def _ext_name(ext: x509.Extension[x509.ExtensionType]) -> str:
    name = getattr(ext.oid, "_name", None)
    known = {ExtensionOID.SUBJECT_KEY_IDENTIFIER: "subjectKeyIdentifier"}
    return known.get(ext.oid) or (name if name and name != "Unknown OID" else
                                  ext.oid.dotted_string)
