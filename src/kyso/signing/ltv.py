"""Long-term validation material: the DSS of PAdES B-LT and the document timestamp of B-LTA.

Both are incremental updates after the signature, which PAdES and pyHanko's difference
analysis accept as "LTA updates"; the revocation data comes from :mod:`kyso.signing.services`.
"""

from __future__ import annotations

import io

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


def add_validation_data(data: bytes, cms: CmsSigner, services: TrustServices,
                        password: str | None, *, with_tsa: bool) -> bytes:
    """Append a DSS with the certificates, OCSP responses and CRLs of the signer's chain (and
    of the TSA's when the signature is timestamped)."""
    revinfo = services.revocation((cms.certificate, *cms.chain))
    if with_tsa:
        revinfo = revinfo + services.revocation(services.tsa_chain())
    return write_dss(data, revinfo, password)


def write_dss(data: bytes, revinfo: RevocationData, password: str | None) -> bytes:
    writer = open_for_update(data, password)
    with pdf_errors("cannot add validation data"):
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None,
            certs=[asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                   for c in revinfo.certificates],
            ocsps=[asn1_ocsp.OCSPResponse.load(r) for r in revinfo.ocsp_responses],
            crls=[asn1_crl.CertificateList.load(c) for c in revinfo.crls],
        )
        writer.write_in_place()  # appends the update to the writer's copy of the input
    return bytes(writer.prev.stream.getvalue())


async def add_document_timestamp(data: bytes, services: TrustServices,
                                 password: str | None) -> bytes:
    """Append an RFC 3161 document timestamp (``/DocTimeStamp``) covering the whole file."""
    writer = open_for_update(data, password)
    taken = {f.name for f in signature_fields(writer.prev)}
    name, n = DOC_TIMESTAMP_FIELD, 1
    while name in taken:
        n += 1
        name = f"{DOC_TIMESTAMP_FIELD}{n}"
    with pdf_errors("cannot add the document timestamp"):
        stamper = PdfTimeStamper(InProcessTimeStamper(services), field_name=name)
        out = await stamper.async_timestamp_pdf(writer, "sha256", output=io.BytesIO())
    return bytes(out.getvalue())

