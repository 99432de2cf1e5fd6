"""Certificate serial numbers: 159-bit CSPRNG values, one canonical text form."""

from __future__ import annotations

import secrets

from kyso.errors import CertificateNotFoundError

SERIAL_BITS = 159


def new_serial() -> int:
    """A positive serial of exactly 159 bits (158 random): 20 DER octets, RFC 5280 compliant."""
    return secrets.randbits(SERIAL_BITS - 1) | (1 << (SERIAL_BITS - 1))


def serial_hex(serial: int) -> str:
    """The one form serials are stored and shown in: lowercase hex, no leading zeros."""
    return format(serial, "x")


def parse_serial(text: str) -> str:
    """Accept hex with or without ``0x``, colons, spaces or upper case; return the canonical form."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise CertificateNotFoundError(f"{text[:60]!r} is not a hexadecimal serial number")
    return serial_hex(int(cleaned, 16))
