"""Long-term validation material: the DSS of PAdES B-LT and the document timestamp of B-LTA.

Both are incremental updates after the signature, which PAdES and pyHanko's difference
analysis accept as "LTA updates"; the revocation data comes from :mod:`kyso.signing.services`.
Both append to the signed file's stream in place (a file or a :class:`io.BytesIO`): the
document is never copied, whatever its size.
"""

from __future__ import annotations

from typing import BinaryIO

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore

from kyso.signing.cms import CmsSigner
from kyso.signing.pdfio import open_for_update, pdf_errors, signature_fields
from kyso.signing.services import RevocationData, TrustServices

DOC_TIMESTAMP_FIELD = "DocTimeStamp"


class InProcessTimeStamper(TimeStamper):
    """pyHanko's RFC 3161 client, answered by our TSA without a network round trip."""

    def __init__(self, services: TrustServices) -> None:
        super().__init__(include_nonce=True)
        self._services = services

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return tsp.TimeStampResp.load(self._services.timestamp_response(req.dump()))


def add_validation_data(stream: BinaryIO, cms: CmsSigner, services: TrustServices,
                        password: str | None, *, with_tsa: bool) -> None:
    """Append to ``stream`` (a signed PDF, readable, writable and seekable) a DSS with the
    certificates, OCSP responses and CRLs of the signer's chain (and of the TSA's when the
    signature is timestamped)."""
    revinfo = services.revocation((cms.certificate, *cms.chain))
    if with_tsa:
        revinfo = revinfo + services.revocation(services.tsa_chain())
    write_dss(stream, revinfo, password)


def write_dss(stream: BinaryIO, revinfo: RevocationData, password: str | None) -> None:
    """Append a DSS update with ``revinfo`` to the PDF in ``stream``, in place."""
    writer = open_for_update(stream, password)
    with pdf_errors("cannot add validation data"):
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None,
            certs=[asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                   for c in revinfo.certificates],
            ocsps=[asn1_ocsp.OCSPResponse.load(r) for r in revinfo.ocsp_responses],
            crls=[asn1_crl.CertificateList.load(c) for c in revinfo.crls],
        )
        writer.write_in_place()  # appends the update to ``stream``


async def add_document_timestamp(stream: BinaryIO, services: TrustServices,
                                 password: str | None) -> None:
    """Append to the PDF in ``stream``, in place, an RFC 3161 document timestamp
    (``/DocTimeStamp``) covering the whole file."""
    writer = open_for_update(stream, password)
    taken = {f.name for f in signature_fields(writer.prev)}
    name, n = DOC_TIMESTAMP_FIELD, 1
    while name in taken:
        n += 1
        name = f"{DOC_TIMESTAMP_FIELD}{n}"
    with pdf_errors("cannot add the document timestamp"):
        stamper = PdfTimeStamper(InProcessTimeStamper(services), field_name=name)
        await stamper.async_timestamp_pdf(writer, "sha256", in_place=True)

