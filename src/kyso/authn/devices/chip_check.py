"""The chip card check that approves a new device, run here rather than taken on trust.

:meth:`kyso.authn.devices.Devices.approve_with_chip` takes the chip as read from the card
(:class:`~kyso.authn.chip.ChipData`) and the trust inputs (CSCA certificates, CSCA CRLs), and
runs the level-2 enrolment's chip check (:func:`kyso.authn.enrolment.enrol_level2`):
passive authentication (:func:`~kyso.authn.passive_auth.check_passive_auth`) must pass, the
card must not be expired, and the DG13 ID number must be the account's (compared in the
approval's transaction). No other object is accepted: a caller cannot vouch for a chip.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from kyso.authn.chip import ChipData
from kyso.authn.devices.records import DeviceRefusal
from kyso.authn.enrolment import _OFFICER
from kyso.authn.passive_auth import check_passive_auth
from kyso.clock import VIETNAM
from kyso.errors import AuthnError

__all__ = ["ChipEvidence", "check_officer", "check_trust", "run_chip_check"]


@dataclass(frozen=True)
class ChipEvidence:
    """What a chip check established: the DG13 ID number (raw; compared, never logged or
    shown), the Document Signer's serial, the CSCA and each check's status. ``refusal`` is
    set when the check did not pass (it is raised in the approval's transaction, once the
    account is known, so that the audit event names the citizen)."""

    id_number: str | None = field(repr=False)
    ds_serial: str | None
    csca: str | None
    checks: dict[str, str]
    refusal: DeviceRefusal | None = field(default=None, repr=False)


def check_officer(officer: object) -> str | None:
    """The attending officer (a badge number or an account) as enrolment accepts it, or
    None; :class:`AuthnError` otherwise."""
    if officer is None:
        return None
    if not isinstance(officer, str) or _OFFICER.fullmatch(officer.strip()) is None:
        raise AuthnError("the officer must be named with 1-64 letters, digits or . : / @ - "
                         "(a badge number or an account)")
    return officer.strip()


def check_trust(csca: object, crls: object
                ) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """The trusted CSCA certificates (at least one) and CSCA CRLs as lists; :class:`AuthnError`
    for anything else."""
    if isinstance(csca, x509.Certificate | str | bytes) or not isinstance(csca, Sequence) or (
            not csca or not all(isinstance(c, x509.Certificate) for c in csca)):
        raise AuthnError("the chip check needs the trusted CSCA certificate(s): a non-empty "
                         "sequence of x509.Certificate")
    if isinstance(crls, str | bytes) or not isinstance(crls, Sequence) or not all(
            isinstance(c, x509.CertificateRevocationList) for c in crls):
        raise AuthnError("the CSCA CRLs must be a sequence of x509.CertificateRevocationList")
    return list(csca), list(crls)


def run_chip_check(chip: object, *, csca: Sequence[x509.Certificate],
                   crls: Sequence[x509.CertificateRevocationList], now: dt.datetime
                   ) -> ChipEvidence:
    """Passive authentication of ``chip`` against ``csca`` / ``crls`` at ``now``, then the
    card's expiry. :class:`AuthnError` at once if ``chip`` is not :class:`ChipData` (a
    result, a report or any look-alike object is refused); a chip that fails comes back
    with its ``refusal``."""
    if not isinstance(chip, ChipData):
        raise AuthnError("the chip check needs the chip's data groups and SOD as read from the "
                         f"card (ChipData), not {type(chip).__name__}: kyso runs passive "
                         "authentication itself")
    report = check_passive_auth(chip, csca=csca, crls=crls, now=now)
    checks = {c.check.value: c.status.value for c in report.checks}
    if not report.passed or report.personal_data is None or report.ds_serial is None:
        failing = "; ".join(f"{c.check.value} {c.status.value}: {c.reason}"
                            for c in report.failures)
        return ChipEvidence(None, report.ds_serial, report.csca_subject, checks, DeviceRefusal(
            "passive-auth", f"chip passive authentication failed: {failing}",
            details={"checks": checks, "ds_serial": report.ds_serial}))
    data = report.personal_data
    if data.expiry_date < now.astimezone(VIETNAM).date():
        return ChipEvidence(None, report.ds_serial, report.csca_subject, checks, DeviceRefusal(
            "card-expired", f"the ID card expired on {data.expiry_date.isoformat()}",
            details={"ds_serial": report.ds_serial}))
    return ChipEvidence(data.person.id_number, report.ds_serial, report.csca_subject, checks)
