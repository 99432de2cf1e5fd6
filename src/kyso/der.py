"""The little DER that kyso assembles from bytes (PAdES CMS, RFC 3161 tokens, OCSP responses).

Building a CMS SignedData through asn1crypto costs tens of milliseconds per signature (it
re-encodes the certificates); the same structure assembled from pre-encoded parts costs
microseconds. Only encoders live here; parsing is left to cryptography and asn1crypto.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cache


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(parts: Iterable[bytes]) -> bytes:
    """A DER SET OF: members sorted by their encodings (X.690 §11.6)."""
    return tlv(0x31, b"".join(sorted(parts)))


def integer(value: int) -> bytes:
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1  # room for the sign bit
    return tlv(0x02, value.to_bytes(size, "big", signed=True))


def octets(value: bytes) -> bytes:
    return tlv(0x04, value)


NULL = b"\x05\x00"


@cache
def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an object identifier: {dotted}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def context(number: int, content: bytes, *, constructed: bool = True) -> bytes:
    """A context-specific tag ``[number]`` around ``content`` (implicit when the caller
    passes a member's contents, explicit when it passes a whole encoding)."""
    return tlv((0xA0 if constructed else 0x80) | number, content)


def contents_of(encoding: bytes) -> bytes:
    """The contents octets of one DER encoding (its tag and length stripped)."""
    first = encoding[1]
    if first < 0x80:
        return encoding[2:2 + first]
    size = first & 0x7F
    n = int.from_bytes(encoding[2:2 + size], "big")
    return encoding[2 + size:2 + size + n]


def generalized_time(moment: dt.datetime) -> bytes:
    """GeneralizedTime in UTC: no fraction when whole seconds, else no trailing zeros."""
    moment = moment.astimezone(dt.UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return tlv(0x18, (moment.strftime("%Y%m%d%H%M%S") + fraction + "Z").encode("ascii"))
