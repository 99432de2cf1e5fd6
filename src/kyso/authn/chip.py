"""The simulated chip ID card (căn cước gắn chip): data groups, the SOD, the chip file.

What a chip holds (ICAO Doc 9303-10, simplified where noted):

- **DG1** — ``61 L { 5F1F L <MRZ> }``: the TD1 machine-readable zone, 3 × 30 characters
  (``IDVNM`` + document number + check digit + the 12-digit ID number in the optional data;
  birth date, sex, expiry, nationality, composite check digit; ``SURNAME<<GIVEN<NAMES``
  folded to ASCII). Check digits use the 7-3-1 weights of 9303-3 §4.9.
- **DG2** — ``75 L { 5F2E L <face image bytes> }``: the portrait. *Simplified*: the real DG2
  wraps the image in an ISO/IEC 19794-5 biometric template (7F61 / 7F60 / A1 headers).
- **DG13** — ``6D L { <UTF-8 JSON> }``: Vietnamese personal data. *kyso's encoding*: one JSON
  object, keys sorted, no spaces, with ``v`` (1), ``document_number``, ``id_number`` (12
  digits), ``full_name`` (with diacritics, NFC), ``birth_date`` / ``issue_date`` /
  ``expiry_date`` (ISO dates), ``sex`` (``male`` / ``female``), ``nationality``,
  ``place_of_origin``, ``place_of_residence``. (Real cards use a vendor TLV layout with
  ``DD/MM/YYYY`` dates.)
- **EF.SOD** — ``77 L { ContentInfo }``: CMS SignedData (v3) whose eContent, of type
  ``id-icao-mrtd-security-ldsSecurityObject`` (2.23.136.1.1.1), is the DER
  ``LDSSecurityObject { version 0, hashAlgorithm, dataGroupHashValues }``, signed by a
  Document Signer (signed attributes content-type, message-digest, signing-time; the DS
  certificate included). See :mod:`kyso.authn.passive_auth` for the checks.

The chip file (``chip.json``)::

    {"format": "kyso-chip", "version": 1,
     "data_groups": {"DG1": "<base64>", "DG2": "<base64>", "DG13": "<base64>"},
     "sod": "<base64 of EF.SOD>"}

A real document number is the last 9 digits of the ID number; the simulator draws a random
one instead, so that the number kyso records as evidence reveals nothing of the ID number.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from asn1crypto import algos, cms, core
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kyso.authn.csca import DocumentSigner
from kyso.authn.registry import Person
from kyso.der import length
from kyso.errors import IdentityError, InvalidIdentifierError
from kyso.pki.identifiers import ascii_fold

__all__ = [
    "CHIP_FORMAT",
    "LDS_SECURITY_OBJECT_OID",
    "REQUIRED_DATA_GROUPS",
    "ChipData",
    "ChipPersonalData",
    "LDSSecurityObject",
    "build_mrz",
    "build_sod",
    "chip_from_json",
    "chip_to_json",
    "decode_dg13",
    "encode_dg1",
    "encode_dg2",
    "encode_dg13",
    "issue_chip",
    "mrz_check_digit",
    "new_document_number",
    "read_tlv",
]

CHIP_FORMAT = "kyso-chip"
CHIP_VERSION = 1
LDS_SECURITY_OBJECT_OID = "2.23.136.1.1.1"
REQUIRED_DATA_GROUPS = (1, 2, 13)
MAX_CHIP_FILE = 4 * 1024 * 1024
_TAGS = {1: b"\x61", 2: b"\x75", 13: b"\x6d"}
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_MRZ_LINE = 30


# --- ASN.1 of the LDS Security Object (9303-10 §4.6.2) ------------------------------------------

class DataGroupHash(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("data_group_number", core.Integer), ("data_group_hash_value", core.OctetString)]


class DataGroupHashValues(core.SequenceOf):  # type: ignore[misc]
    _child_spec = DataGroupHash


class LDSVersionInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("lds_version", core.PrintableString), ("unicode_version", core.PrintableString)]


class LDSSecurityObject(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("version", core.Integer),
        ("hash_algorithm", algos.DigestAlgorithm),
        ("data_group_hash_values", DataGroupHashValues),
        ("lds_version_info", LDSVersionInfo, {"optional": True}),
    ]


# --- TLV ---------------------------------------------------------------------------------------

def _tlv(tag: bytes, content: bytes) -> bytes:
    return tag + length(len(content)) + content


def read_tlv(data: bytes, tag: bytes, what: str) -> bytes:
    """The contents of exactly one TLV with ``tag`` spanning all of ``data``."""
    n = len(tag)
    if len(data) < n + 1 or data[:n] != tag:
        raise IdentityError(f"{what}: expected tag {tag.hex().upper()}")
    first = data[n]
    if first < 0x80:
        size, start = first, n + 1
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < n + 1 + count:
            raise IdentityError(f"{what}: bad length")
        size, start = int.from_bytes(data[n + 1:n + 1 + count], "big"), n + 1 + count
    if start + size != len(data):
        raise IdentityError(f"{what}: length does not match the data (truncated or padded)")
    return data[start:]


# --- personal data, MRZ ------------------------------------------------------------------------

@dataclass(frozen=True)
class ChipPersonalData:
    """What DG13 says about the holder (the chip is authoritative for it)."""

    person: Person
    document_number: str
    issue_date: dt.date
    expiry_date: dt.date
    nationality: str = "Việt Nam"
    place_of_origin: str = ""
    place_of_residence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id_number": self.person.masked_id, "full_name": self.person.full_name,
                "birth_date": self.person.birth_date.isoformat(), "sex": self.person.sex.value,
                "document_number": self.document_number, "nationality": self.nationality,
                "place_of_origin": self.place_of_origin,
                "place_of_residence": self.place_of_residence,
                "issue_date": self.issue_date.isoformat(),
                "expiry_date": self.expiry_date.isoformat()}


def new_document_number() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(9))


def mrz_check_digit(text: str) -> str:
    """ICAO 9303-3 §4.9: weights 7, 3, 1; digits as themselves, A-Z as 10-35, ``<`` as 0."""
    total = 0
    for i, c in enumerate(text):
        if c.isdigit():
            value = int(c)
        elif "A" <= c <= "Z":
            value = ord(c) - 55
        elif c == "<":
            value = 0
        else:
            raise IdentityError("MRZ holds a character outside A-Z, 0-9 and <")
        total += value * (7, 3, 1)[i % 3]
    return str(total % 10)


def _mrz_field(text: str, size: int) -> str:
    folded = "".join(c if c.isalnum() else "<" for c in ascii_fold(text).upper())
    return folded[:size].ljust(size, "<")


def build_mrz(data: ChipPersonalData) -> str:
    """The TD1 MRZ (three lines of 30, joined without separators)."""
    p = data.person
    doc = _mrz_field(data.document_number, 9)
    line1 = ("IDVNM" + doc + mrz_check_digit(doc) + _mrz_field(p.id_number, 15))
    birth, expiry = p.birth_date.strftime("%y%m%d"), data.expiry_date.strftime("%y%m%d")
    body = (birth + mrz_check_digit(birth) + ("M" if p.sex.value == "male" else "F")
            + expiry + mrz_check_digit(expiry) + "VNM" + "<" * 11)
    line2 = body + mrz_check_digit(line1[5:30] + body[0:7] + body[8:15] + body[18:29])
    words = ascii_fold(p.full_name).upper().split()
    names = words[0] + "<<" + "<".join(words[1:])
    line3 = "".join(c if c.isalnum() else "<" for c in names)[:_MRZ_LINE].ljust(_MRZ_LINE, "<")
    return line1 + line2 + line3


def encode_dg1(data: ChipPersonalData) -> bytes:
    return _tlv(_TAGS[1], _tlv(b"\x5f\x1f", build_mrz(data).encode("ascii")))


def encode_dg2(face: bytes) -> bytes:
    return _tlv(_TAGS[2], _tlv(b"\x5f\x2e", face))


def encode_dg13(data: ChipPersonalData) -> bytes:
    p = data.person
    body = {"v": 1, "document_number": data.document_number, "id_number": p.id_number,
            "full_name": unicodedata.normalize("NFC", p.full_name),
            "birth_date": p.birth_date.isoformat(), "sex": p.sex.value,
            "nationality": data.nationality, "place_of_origin": data.place_of_origin,
            "place_of_residence": data.place_of_residence,
            "issue_date": data.issue_date.isoformat(), "expiry_date": data.expiry_date.isoformat()}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _tlv(_TAGS[13], text.encode("utf-8"))


def decode_dg13(dg13: bytes) -> ChipPersonalData:
    """Parse and validate DG13; :class:`IdentityError` naming what is wrong (never the data)."""
    try:
        body = json.loads(read_tlv(dg13, _TAGS[13], "DG13").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IdentityError("DG13: personal data is not UTF-8 JSON") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise IdentityError("DG13: not a version-1 personal data object")
    text: dict[str, str] = {}
    for key in ("document_number", "id_number", "full_name", "birth_date", "sex", "nationality",
                "place_of_origin", "place_of_residence", "issue_date", "expiry_date"):
        value = body.get(key)
        if not isinstance(value, str):
            raise IdentityError(f"DG13: {key} is missing or not text")
        text[key] = value
    try:
        person = Person.of(id_number=text["id_number"], full_name=text["full_name"],
                           birth_date=text["birth_date"], sex=text["sex"])
        issue = dt.date.fromisoformat(text["issue_date"])
        expiry = dt.date.fromisoformat(text["expiry_date"])
    except (InvalidIdentifierError, ValueError) as exc:
        raise IdentityError(f"DG13: {exc}") from None
    doc = text["document_number"]
    if not (doc.isascii() and doc.isalnum() and 1 <= len(doc) <= 9):
        raise IdentityError("DG13: document number must be 1-9 letters or digits")
    return ChipPersonalData(person=person, document_number=doc, issue_date=issue,
                            expiry_date=expiry, nationality=text["nationality"],
                            place_of_origin=text["place_of_origin"],
                            place_of_residence=text["place_of_residence"])


# --- the chip ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChipData:
    """The data groups and the EF.SOD of one chip (their repr shows sizes only)."""

    data_groups: Mapping[int, bytes] = field(repr=False)
    sod: bytes = field(repr=False)

    def __repr__(self) -> str:
        groups = ", ".join(f"DG{n}={len(b)}B" for n, b in sorted(self.data_groups.items()))
        return f"ChipData({groups}, SOD={len(self.sod)}B)"


def build_sod(data_groups: Mapping[int, bytes], signer: DocumentSigner, now: dt.datetime, *,
              hash_algorithm: str = "sha256") -> bytes:
    """EF.SOD: the data-group hashes in an LDSSecurityObject, signed by ``signer`` in CMS."""
    digest = _HASHES[hash_algorithm]
    lds = LDSSecurityObject({
        "version": 0,
        "hash_algorithm": {"algorithm": hash_algorithm},
        "data_group_hash_values": [
            {"data_group_number": n, "data_group_hash_value": digest(data_groups[n]).digest()}
            for n in sorted(data_groups)],
    }).dump()
    cert_der = signer.certificate.public_bytes(serialization.Encoding.DER)
    cert = ax509.Certificate.load(cert_der)
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [LDS_SECURITY_OBJECT_OID]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": now})]},
        {"type": "message_digest", "values": [digest(lds).digest()]},
    ])
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig_alg, sign = f"{hash_algorithm}_ecdsa", _ec_signer(key, hash_algorithm)
    elif isinstance(key, rsa.RSAPrivateKey):
        sig_alg, sign = f"{hash_algorithm}_rsa", _rsa_signer(key, hash_algorithm)
    else:
        raise IdentityError("a Document Signer key must be ECDSA or RSA")
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
            {"issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": {"algorithm": hash_algorithm},
        "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": sig_alg},
        "signature": b"",
    })
    to_sign = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    signer_info["signature"] = sign(to_sign)
    signed_data = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [{"algorithm": hash_algorithm}],
        "encap_content_info": {"content_type": LDS_SECURITY_OBJECT_OID,
                               "content": core.ParsableOctetString(lds)},
        "certificates": [cms.CertificateChoices(name="certificate", value=cert)],
        "signer_infos": [signer_info],
    })
    content_info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return _tlv(b"\x77", content_info.dump())


def _hash(name: str) -> hashes.HashAlgorithm:
    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def _ec_signer(key: ec.EllipticCurvePrivateKey, name: str) -> Any:
    return lambda data: key.sign(data, ec.ECDSA(_hash(name)))


def _rsa_signer(key: rsa.RSAPrivateKey, name: str) -> Any:
    return lambda data: key.sign(data, padding.PKCS1v15(), _hash(name))


def issue_chip(data: ChipPersonalData, face: bytes, signer: DocumentSigner, now: dt.datetime
               ) -> ChipData:
    """A freshly personalised chip: DG1, DG2, DG13 and their SOD signed by ``signer``."""
    if not face:
        raise IdentityError("the face image is empty")
    groups = {1: encode_dg1(data), 2: encode_dg2(face), 13: encode_dg13(data)}
    return ChipData(data_groups=groups, sod=build_sod(groups, signer, now))


# --- the chip file -----------------------------------------------------------------------------

def chip_to_json(chip: ChipData) -> bytes:
    doc = {"format": CHIP_FORMAT, "version": CHIP_VERSION,
           "data_groups": {f"DG{n}": base64.b64encode(b).decode("ascii")
                           for n, b in sorted(chip.data_groups.items())},
           "sod": base64.b64encode(chip.sod).decode("ascii")}
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise IdentityError(f"chip file: {what} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"chip file: {what} is not valid base64") from None
    if not data:
        raise IdentityError(f"chip file: {what} is empty")
    return data


def chip_from_json(raw: bytes) -> ChipData:
    """Parse a chip file; :class:`IdentityError` naming what is malformed or missing."""
    if len(raw) > MAX_CHIP_FILE:
        raise IdentityError(f"chip file is larger than {MAX_CHIP_FILE // (1024 * 1024)} MiB")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise IdentityError("chip file is not UTF-8 text") from None
    except ValueError as exc:
        raise IdentityError(f"chip file is not valid JSON (truncated or garbage): {exc}") from None
    if not isinstance(doc, dict):
        raise IdentityError("chip file must be a JSON object")
    if doc.get("format") != CHIP_FORMAT:
        raise IdentityError(f"chip file: format must be {CHIP_FORMAT!r}")
    if doc.get("version") != CHIP_VERSION or isinstance(doc.get("version"), bool):
        raise IdentityError(f"chip file: unsupported version (this kyso reads {CHIP_VERSION})")
    groups_in = doc.get("data_groups")
    if not isinstance(groups_in, dict):
        raise IdentityError("chip file: data_groups must be an object")
    groups: dict[int, bytes] = {}
    for name, value in groups_in.items():
        number = name[2:] if isinstance(name, str) and name.startswith("DG") else ""
        if not (number.isascii() and number.isdigit() and 1 <= int(number) <= 16):
            raise IdentityError(f"chip file: unknown data group {str(name)[:20]!r}")
        groups[int(number)] = _b64(value, name)
    missing = [f"DG{n}" for n in REQUIRED_DATA_GROUPS if n not in groups]
    if missing:
        raise IdentityError(f"chip file: missing data group(s) {', '.join(missing)}")
    if "sod" not in doc:
        raise IdentityError("chip file: missing sod")
    return ChipData(data_groups=groups, sod=_b64(doc["sod"], "sod"))
