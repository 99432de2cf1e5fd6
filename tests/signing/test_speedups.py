"""The speed-ups answer exactly what the code they replace answers."""

from __future__ import annotations

import io

import pytest
from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.misc import PdfStreamError

from kyso.signing import speedups

HEX_ALPHABET = b"0123456789abcdefABCDEF \n\r\t\x0c\x00%gz<>"


def read_with(reader, data: bytes) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    stream = io.BytesIO(data)
    try:
        value = reader(stream)
    except PdfStreamError as exc:
        return ("error", type(exc).__name__), -1
    return (type(value).__name__, bytes(value) if isinstance(value, bytes) else
            value.original_bytes), stream.tell()


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=80).map(lambda b: bytes(HEX_ALPHABET[x % len(HEX_ALPHABET)]
                                                      for x in b)),
       close=st.booleans(), after=st.binary(max_size=8))
def test_hex_strings_read_the_same_as_pyhanko(body: bytes, close: bool, after: bytes) -> None:
    data = b"<" + body + (b">" if close else b"") + after

    ours = read_with(speedups.read_hex_string, data)
    theirs = read_with(speedups._original_hex, data)

    assert ours == theirs


@pytest.mark.parametrize(("data", "value"), [
    (b"<48656c6c6f>", b"Hello"),
    (b"<48 65\n6c\t6c 6f>", b"Hello"),
    (b"<486>", b"H`"),  # an odd digit count is padded with 0
    (b"<>", b""),
    (b"<" + b"00" * 100_000 + b">", b"\x00" * 100_000),  # longer than one block
])
def test_hex_strings_decode(data: bytes, value: bytes) -> None:
    stream = io.BytesIO(data + b" rest")

    result = speedups.read_hex_string(stream)

    assert (bytes(result) if isinstance(result, bytes) else result.original_bytes) == value
    assert stream.read() == b" rest"


@pytest.mark.parametrize("data", [b"<4865", b"<48zz>", b"<48<65>"])
def test_broken_hex_strings_raise_pyhankos_error(data: bytes) -> None:
    with pytest.raises(PdfStreamError):
        speedups.read_hex_string(io.BytesIO(data))


def name(**attrs: str) -> asn1_x509.Name:
    return asn1_x509.Name.build(attrs)


NAMES = [
    name(common_name="Nguyễn Văn An", organization_name="UBND tỉnh Thái Nguyên"),
    name(common_name="nguyễn  văn an", organization_name="ubnd tỉnh thái nguyên"),
    name(common_name="Nguyễn Văn An"),
    name(common_name="Nguyen Van An", organization_name="UBND tinh Thai Nguyen"),
    name(common_name="Nguyễn Văn An", organization_name="UBND tỉnh Hưng Yên"),
]


@pytest.mark.parametrize("left", range(len(NAMES)))
@pytest.mark.parametrize("right", range(len(NAMES)))
def test_names_compare_as_rfc_5280_says(left: int, right: int) -> None:
    speedups.install()
    a, b = NAMES[left], NAMES[right]
    # a fresh parse of each: the original compares parsed objects attribute by attribute
    fresh_a, fresh_b = asn1_x509.Name.load(a.dump()), asn1_x509.Name.load(b.dump())

    original = speedups._original_name_hashable.fget(fresh_a) == \
        speedups._original_name_hashable.fget(fresh_b)

    assert (a == b) is original
    assert (a.hashable == b.hashable) is original


def test_names_that_differ_only_in_case_and_spaces_are_equal() -> None:
    speedups.install()
    assert NAMES[0] == NAMES[1]
    assert NAMES[0] != NAMES[3]  # diacritics matter
    assert NAMES[0] != "not a name"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def verify_args(key: ec.EllipticCurvePrivateKey, data: bytes, signature: bytes
                ) -> tuple[bytes, bytes, asn1_keys.PublicKeyInfo, asn1_algos.SignedDigestAlgorithm]:
    spki = asn1_keys.PublicKeyInfo.load(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    algorithm = asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    return signature, data, spki, algorithm


def test_a_good_signature_is_checked_once_then_remembered(
        key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    validator = speedups.CachingSignatureValidator()
    data = b"to be signed"
    args = verify_args(key, data, key.sign(data, ec.ECDSA(hashes.SHA256())))
    validator.validate_signature(*args)
    calls = []
    monkeypatch.setattr(speedups.DefaultSignatureValidator, "validate_signature",
                        lambda *a, **k: calls.append(a))

    validator.validate_signature(*args)

    assert calls == []


def test_a_bad_signature_is_never_remembered(key: ec.EllipticCurvePrivateKey) -> None:
    validator = speedups.CachingSignatureValidator()
    signature = key.sign(b"original", ec.ECDSA(hashes.SHA256()))
    validator.validate_signature(*verify_args(key, b"original", signature))

    for _ in range(2):
        with pytest.raises(InvalidSignature):
            validator.validate_signature(*verify_args(key, b"changed", signature))


def test_the_cache_is_bounded(key: ec.EllipticCurvePrivateKey) -> None:
    validator = speedups.CachingSignatureValidator(size=3)
    for i in range(5):
        data = b"%d" % i
        validator.validate_signature(*verify_args(key, data,
                                                  key.sign(data, ec.ECDSA(hashes.SHA256()))))

    assert len(validator._good) == 3
