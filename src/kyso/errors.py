"""The one exception tree of kyso.

Every error a user can cause derives from :class:`KysoError`; the CLI turns it into a message
and exit code 1 (2 for :class:`UsageError`), the server into a 4xx. Messages name the problem
and never carry secrets (passwords, passphrases, keys, raw ID numbers).
"""

from __future__ import annotations

import datetime as dt


class KysoError(Exception):
    """Root of every error kyso raises on purpose."""

    exit_code = 1


class UsageError(KysoError):
    """The command was called wrongly (missing option, conflicting options)."""

    exit_code = 2


class ConfigError(KysoError):
    """Settings, home directory or passphrase source are unusable."""


class PolicyError(ConfigError):
    """A security-level policy file is invalid, or a level or requirement is unknown."""


class StoreError(KysoError):
    """The database could not be opened, migrated or written."""


class PkiError(KysoError):
    """Base of certificate-authority errors."""


class CANotInitialisedError(PkiError):
    """No CA exists in this home yet."""


class CAExistsError(PkiError):
    """A CA already exists in this home; it is never overwritten."""


class PassphraseError(PkiError):
    """A key could not be unlocked with the given passphrase."""


class KeyFileError(PkiError):
    """A key file is missing, corrupted or of the wrong kind."""


class ProfileError(PkiError):
    """A certificate profile is unknown or its file is invalid."""


class InvalidSubjectError(PkiError):
    """Subject data (name, ID number, tax code, e-mail, …) violates the profile."""


class InvalidIdentifierError(InvalidSubjectError):
    """A personal ID number, tax code or budget-unit code is malformed."""


class CSRError(PkiError):
    """A certificate signing request is malformed, forged or not allowed by the profile."""


class KeyPolicyError(PkiError):
    """A key type or size is not allowed by the profile."""


class ValidityError(PkiError):
    """A requested validity period is outside what the profile or the issuer allows."""


class DuplicateKeyError(PkiError):
    """The public key has already been certified."""


class CertificateNotFoundError(PkiError):
    """No certificate with that serial number exists in the store."""


class RevocationError(PkiError):
    """A revocation, hold or release is not allowed in the certificate's current state."""


class RosterError(PkiError):
    """A batch roster file is malformed."""


class AuditError(KysoError):
    """The audit log could not be written or read."""


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof does not verify."""


class CheckpointError(AuditError):
    """A checkpoint (signed note) is malformed, unsigned by a trusted key, or forged."""


class SigningError(KysoError):
    """A PDF could not be signed: bad input, an unusable signer, a refused request."""


class PdfInputError(SigningError):
    """The input is not a readable PDF (garbage, truncated, encrypted with another password)."""


class SignerCertificateError(SigningError):
    """The signer's certificate may not sign now (expired, revoked, on hold, wrong key usage)."""


class VerificationError(KysoError):
    """A verification could not be run at all (as opposed to a signature that failed)."""


class AuthnError(KysoError):
    """Base of e-identification errors (registry, authenticators, tokens, OIDC)."""


class IdentityError(AuthnError):
    """Identity data is invalid (ID number, name, date of birth, phone) or the account state
    does not allow the operation (unknown, already enrolled, locked)."""


class PasswordPolicyError(AuthnError):
    """A new password does not meet the active password policy; the message names the rule,
    never the password."""


class AuthenticationFailedError(AuthnError):
    """A login factor did not verify. The message is uniform: it never says which factor failed
    or whether the account exists."""


class AccountLockedError(AuthenticationFailedError):
    """Brute-force protection or an administrative lock refuses the attempt."""


class TokenError(AuthnError):
    """A token is malformed, forged, expired, oversized or not meant for this audience."""


class ThrottledError(AuthnError):
    """Too many requests of one kind (SMS codes for an account); ``retry_at`` is the earliest
    time another one is accepted."""

    def __init__(self, message: str, retry_at: dt.datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class GatewayError(SigningError):
    """Base of the signing gateway's refusals (remote signing, CSC API). Messages start with the
    request parameter they are about (``credentialID``, ``SAD``, ``hashes``…) when there is one."""


class GatewayRequestError(GatewayError):
    """A gateway request is malformed: a hash of the wrong length, an unsupported algorithm,
    a count that does not match."""


class UnknownCredentialError(GatewayError):
    """No such credential for this caller. Another citizen's credential gets the same answer,
    so the error never tells whether the identifier exists."""


class CredentialExistsError(GatewayError):
    """The citizen already has an enabled signing credential; ``credential_id`` names it."""

    def __init__(self, message: str, credential_id: str) -> None:
        super().__init__(message)
        self.credential_id = credential_id


class CredentialSuspendedError(GatewayError):
    """The credential may not sign now: the e-ID account is locked, the credential suspended,
    or its certificate on hold, revoked or expired."""


class ActivationError(GatewayError):
    """Signature activation data (SAD) is unknown, expired, already used, or not for this
    credential, these hashes or this number of signatures."""


class StepUpRequiredError(GatewayError):
    """The login behind the request is not a fresh level-2 step-up (too old, too low, or it has
    already authorized a signature): log in again with ``prompt=login max_age=0``."""
