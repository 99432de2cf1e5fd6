"""Device binding: the e-ID app's EC P-256 key, one *active* device per account.

A device is the app on one phone, known by its public key (SubjectPublicKeyInfo DER, named by
its RFC 7638 thumbprint). Domain rule (VNeID activation): the app is bound to one device, and
a new device needs the old device's approval or a read of the chip card. So:

- :meth:`Devices.bind_first` binds the first device of an account that has none. It does not
  check any factor itself: **the caller must already have verified the account's SMS OTP**
  (:class:`kyso.authn.otp.SmsOtp`) in the same activation flow.
- :meth:`Devices.request_new` registers a *pending* device and a one-time nonce (the approval
  request; :meth:`Devices.approval_request` reads it back). The current active device signs
  :func:`approval_message` (:meth:`Devices.approve_with_device`), or the holder presents the
  chip card (:meth:`Devices.approve_with_chip`), which takes the chip as read and the trusted
  CSCA certificates and CRLs and runs passive authentication itself, as level-2 enrolment
  does (:mod:`kyso.authn.devices.chip_check`). Either way the new device becomes active and
  the old one retired in the same transaction; the partial unique index
  ``one_active_device`` makes a second active device impossible even under races.

Keys and signatures (EC P-256, ECDSA SHA-256, raw ``r || s`` or strict DER) and the
domain-separated messages a device signs: :mod:`kyso.authn.devices.signatures`. Records and
shared checks: :mod:`kyso.authn.devices.records`; the service: :mod:`kyso.authn.devices.service`;
what an approval's transaction does: :mod:`kyso.authn.devices.approvals`.

Audit: DEVICE_BOUND, DEVICE_APPROVAL_REQUESTED, DEVICE_APPROVED, DEVICE_APPROVAL_ERROR,
DEVICE_RETIRED (and DEVICE_BIND_ERROR, DEVICE_RETIRE_ERROR); the actor is the citizen's keyed
pseudonym (the officer's name for a chip check at the counter, the operator's for a retirement),
never the ID number.
"""

from __future__ import annotations

from kyso.authn.devices.records import (
    Device,
    DeviceAlreadyBoundError,
    DeviceApprovalRequest,
    DeviceRefusal,
    DeviceStatus,
)
from kyso.authn.devices.service import APPROVAL_TTL, MAX_APPROVAL_TTL, Devices
from kyso.authn.devices.signatures import (
    ChallengePurpose,
    approval_message,
    load_device_key,
    login_message,
    public_key_der,
    signature_from_base64,
    verify_device_signature,
)

__all__ = [
    "APPROVAL_TTL",
    "MAX_APPROVAL_TTL",
    "ChallengePurpose",
    "Device",
    "DeviceAlreadyBoundError",
    "DeviceApprovalRequest",
    "DeviceRefusal",
    "DeviceStatus",
    "Devices",
    "approval_message",
    "load_device_key",
    "login_message",
    "public_key_der",
    "signature_from_base64",
    "verify_device_signature",
]
