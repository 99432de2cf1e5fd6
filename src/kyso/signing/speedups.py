"""Two hot spots of pyHanko and asn1crypto, replaced by equivalent faster code.

Verifying one small dossier spent about a third of its time in two places that do the same
work again and again (bench/pdf_verify.py --profile):

- **hex strings**: pyHanko reads ``<…>`` one byte per call, and every signature's ``/Contents``
  is several thousand hex digits. :func:`read_hex_string` finds the closing ``>`` in blocks,
  checks the body with one regular expression and decodes it at once. Anything unusual (a
  comment inside the string, a non-hex byte, no closing ``>``) goes to pyHanko's own reader, so
  errors and their messages are unchanged.
- **name comparison**: asn1crypto prepares every attribute of a distinguished name with
  RFC 4518 string preparation (stringprep, Unicode normalisation) and walks the parsed RDNs
  for every comparison — and path building compares the names of the same few CA certificates
  for every document. Both are pure functions of the string or the name's DER, so they are
  memoised: a name compares by its prepared form (asn1crypto's own ``hashable``).

:func:`install` patches both, once per process; the results are equal to the originals (the
tests compare them on generated input).

:class:`CachingSignatureValidator` is not a patch but pyhanko-certvalidator's own extension
point: the CA certificates and CRLs of a batch are the same for every document, so a
signature check that succeeded once is remembered (keyed by a digest of everything it
depends on); failures are never cached.

:func:`parsed_for_threads` parses an asn1crypto value completely before threads share it:
asn1crypto parses lazily and its parse is not atomic (``children`` is set to an empty list and
then filled; extension caches are reset and refilled), so two threads touching a fresh CRL at
once could see a half-parsed one and fail a good signature.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

from asn1crypto import algos as asn1_algos
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_VALIDATION_CONTEXT,
    DefaultSignatureValidator,
    SignatureValidationContext,
)

_WHITESPACE = b" \n\r\t\x0c\x00"
_HEX_BODY = re.compile(rb"[0-9A-Fa-f \n\r\t\x0c\x00]*")
_BLOCK = 64 * 1024

_original_hex = generic.read_hex_string_from_stream
_original_prep = asn1_x509.NameTypeAndValue._ldap_string_prep
_original_name_hashable = asn1_x509.Name.hashable
_installed = False


def read_hex_string(stream: Any) -> generic.ByteStringObject | generic.TextStringObject:
    """pyHanko's ``read_hex_string_from_stream``, reading blocks instead of bytes."""
    start = stream.tell()
    stream.read(1)  # the "<"
    body = bytearray()
    while True:
        block = stream.read(_BLOCK)
        if not block:
            stream.seek(start)  # no closing ">": pyHanko raises its own error
            return _original_hex(stream)
        end = block.find(b">")
        if end >= 0:
            body += block[:end]
            break
        body += block
    if not _HEX_BODY.fullmatch(body):
        stream.seek(start)  # a comment or a bad byte: pyHanko decides
        return _original_hex(stream)
    stream.seek(start + 1 + len(body) + 1)
    digits = bytes(body).translate(None, _WHITESPACE)
    if len(digits) % 2:
        digits += b"0"
    return generic.pdf_string(binascii.unhexlify(digits))


@functools.lru_cache(maxsize=8192)
def _prepared(string: str) -> str:
    return str(_original_prep(None, string))


def _ldap_string_prep(self: Any, string: str) -> str:
    return _prepared(string)


_NAME_KEYS: dict[bytes, str] = {}


def _name_key(name: asn1_x509.Name) -> str:
    der = name.dump()  # with any outer tag: equal bytes are equal names either way
    key = _NAME_KEYS.get(der)
    if key is None:
        if len(_NAME_KEYS) >= 4096:
            _NAME_KEYS.clear()
        key = _NAME_KEYS[der] = str(_original_name_hashable.fget(name))
    return key


def _name_eq(self: asn1_x509.Name, other: object) -> bool:
    if not isinstance(other, asn1_x509.Name):
        return False
    return _name_key(self) == _name_key(other)


_EXTENSION_CACHES = (asn1_x509.Certificate, asn1_crl.CertificateList,
                     asn1_crl.RevokedCertificate)


def parsed_for_threads(value: Any) -> Any:
    """``value`` (an asn1crypto value) parsed to its leaves, its extension caches filled;
    afterwards reading it from several threads only reads. Returns ``value``."""
    _ = value.native
    if isinstance(value, _EXTENSION_CACHES):
        _ = value.critical_extensions
    if isinstance(value, asn1_crl.CertificateList):
        for entry in value["tbs_cert_list"]["revoked_certificates"]:
            _ = entry.critical_extensions
    return value


def install() -> None:
    """Patch pyHanko's hex-string reader and asn1crypto's name preparation (idempotent)."""
    global _installed
    if _installed:
        return
    generic.read_hex_string_from_stream = read_hex_string
    asn1_x509.NameTypeAndValue._ldap_string_prep = _ldap_string_prep
    asn1_x509.Name.__eq__ = _name_eq
    asn1_x509.Name.hashable = property(_name_key)
    _installed = True


class CachingSignatureValidator(DefaultSignatureValidator):
    """pyhanko-certvalidator's signature check, remembering successes (bounded LRU)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def validate_signature(self, signature: bytes, signed_data: bytes,
                           public_key_info: asn1_keys.PublicKeyInfo,
                           signature_algorithm: asn1_algos.SignedDigestAlgorithm,
                           context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
                           ) -> None:
        key = hashlib.sha256(b"\0".join((
            signature, hashlib.sha256(signed_data).digest(), public_key_info.dump(),
            signature_algorithm.dump(), repr((context.contextual_md_algorithm,
                                              context.prehashed)).encode()))).digest()
        with self._lock:
            if key in self._good:
                self._good.move_to_end(key)
                return
        super().validate_signature(signature, signed_data, public_key_info,
                                   signature_algorithm, context)  # raises when invalid
        with self._lock:
            self._good[key] = None
            if len(self._good) > self._size:
                self._good.popitem(last=False)
