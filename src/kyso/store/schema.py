"""The tables. Serial numbers are stored in one canonical form only: lowercase hex, no leading
zeros (see :func:`kyso.pki.serials.serial_hex`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Stores UTC on every backend; always returns timezone-aware UTC datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(32), nullable=False),
)

ca_settings = sa.Table(
    "ca_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one CA per home
    sa.Column("org", sa.Text, nullable=False),
    sa.Column("province_slug", sa.String(64), nullable=False),
    sa.Column("province_name", sa.Text, nullable=False),
    sa.Column("email_domain", sa.String(253), nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("id = 1", name="one_ca_per_home"),
)

authorities = sa.Table(
    "authorities",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # root, staff, citizen, services
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("parent", sa.String(32), nullable=True),
    sa.Column("serial", sa.String(40), nullable=False, unique=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("key_file", sa.Text, nullable=False),
    sa.Column("crl_number", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("serial", sa.String(40), nullable=False, unique=True),
    sa.Column("issuer", sa.String(32), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("common_name", sa.Text, nullable=False),
    sa.Column("holder_pseudonym", sa.String(64), nullable=True, index=True),
    sa.Column("holder_hint", sa.String(32), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("spki_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("not_before", UTCDateTime(timezone=True), nullable=False),
    sa.Column("not_after", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("revocation_reason", sa.String(32), nullable=True),
    sa.Column("invalidity_date", UTCDateTime(timezone=True), nullable=True),
    sa.Column("replaces", sa.String(40), nullable=True),
    sa.Column("key_file", sa.Text, nullable=True),  # service keys only (OCSP, TSA, audit)
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "status IN ('valid', 'revoked', 'on_hold')", name="certificate_status"
    ),
)

# One row per public key ever certified: the store, not chance, refuses a second subscriber
# for a key. Renewals reuse the row of the certificate they renew.
certified_keys = sa.Table(
    "certified_keys",
    metadata,
    sa.Column("spki_sha256", sa.String(64), primary_key=True),
    sa.Column("first_serial", sa.String(40), nullable=False),
    sa.Column("compromised_at", UTCDateTime(timezone=True), nullable=True),  # schema v2
)

# -- e-ID (schema v3) ----------------------------------------------------------------------
# The registry keeps the raw 12-digit ID number (it is the national identifier the account is
# for); everything that leaves the store — events, errors, logs — carries the masked hint and
# the keyed pseudonym only.

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("subject", sa.String(40), primary_key=True),  # the OIDC ``sub``: opaque, random
    sa.Column("id_number", sa.String(12), nullable=False, unique=True),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("birth_date", sa.String(10), nullable=False),  # ISO 8601 date
    sa.Column("sex", sa.String(8), nullable=False),
    sa.Column("phone", sa.String(20), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lock_reason", sa.String(32), nullable=True),
    sa.Column("locked_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("locked_by", sa.Text, nullable=True),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("password_changed_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("face_score", sa.Float, nullable=True),  # level 1: selfie vs population database
    sa.Column("level2_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("level2_officer", sa.Text, nullable=True),
    sa.Column("level2_evidence", sa.Text, nullable=True),  # JSON: chip, DS serial, scores, consent
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.CheckConstraint("level IN (1, 2)", name="identity_level"),
    sa.CheckConstraint("status IN ('active', 'locked')", name="identity_status"),
)

# One-time-code credentials (TOTP). The secret is sealed (AES-GCM under the home's e-ID key);
# ``last_step`` is the replay guard: advanced only by a compare-and-set UPDATE.
otp_credentials = sa.Table(
    "otp_credentials",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(40), sa.ForeignKey("identities.subject", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # totp
    sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, active, retired
    sa.Column("last_step", sa.BigInteger, nullable=True),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("activated_at", UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'active', 'retired')", name="otp_status"),
)

# Bound devices (the app's EC P-256 key). At most one active device per account.
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(40), sa.ForeignKey("identities.subject", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),  # SubjectPublicKeyInfo DER
    sa.Column("thumbprint", sa.String(64), nullable=False, unique=True),  # RFC 7638, base64url
    sa.Column("status", sa.String(16), nullable=False),  # pending, active, retired
    sa.Column("approved_by", sa.Text, nullable=True),  # device:<id> or chip:<DS serial>
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("activated_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("retired_at", UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'active', 'retired')", name="device_status"),
)
sa.Index(
    "one_active_device", devices.c.subject, unique=True,
    sqlite_where=devices.c.status == "active", postgresql_where=devices.c.status == "active",
)

# One-time nonces a bound device signs: QR cross-device login, new-device approval.
device_challenges = sa.Table(
    "device_challenges",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # login, approve-device
    sa.Column("subject", sa.String(40), nullable=True),
    sa.Column("device_id", sa.String(40), nullable=True),  # the device that signed it
    sa.Column("target", sa.Text, nullable=True),  # what is approved (a pending device id)
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("approved_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("consumed_at", UTCDateTime(timezone=True), nullable=True),
)

# Brute-force state per account (compare-and-set on version); counters as JSON.
lockout_states = sa.Table(
    "lockout_states",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
)

# The live SMS code of each account (only its keyed hash) and the send history (throttling).
sms_challenges = sa.Table(
    "sms_challenges",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("challenge_id", sa.String(40), nullable=False),
    sa.Column("digest", sa.LargeBinary, nullable=False),
    sa.Column("issued_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("misses", sa.Integer, nullable=False, default=0),
)

sms_sends = sa.Table(
    "sms_sends",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(64), nullable=False, index=True),
    sa.Column("sent_at", UTCDateTime(timezone=True), nullable=False),
)

# The simulated phone network: messages the demo and tests read back. Not a log.
sms_outbox = sa.Table(
    "sms_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(20), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("sent_at", UTCDateTime(timezone=True), nullable=False),
)

# OpenID Connect relying parties, registered with exact redirect URIs.
oidc_clients = sa.Table(
    "oidc_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=True),  # "sha256:<hex>" (before: argon2id); NULL: public
    sa.Column("redirect_uris", sa.Text, nullable=False),  # JSON list, compared exactly
    sa.Column("post_logout_redirect_uris", sa.Text, nullable=False),  # JSON list
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated allowed scopes
    sa.Column("audiences", sa.Text, nullable=False),  # JSON list: APIs its access tokens are for
    sa.Column("status", sa.String(16), nullable=False),  # active, disabled
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
)

# Browser sessions at the provider. Keyed by the SHA-256 of the cookie value; ``data`` holds
# the login transaction (stage, pending authorize request, CSRF secret) as JSON.
oidc_sessions = sa.Table(
    "oidc_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(40), nullable=True, index=True),
    sa.Column("auth_time", UTCDateTime(timezone=True), nullable=True),
    sa.Column("acr", sa.String(64), nullable=True),
    sa.Column("amr", sa.Text, nullable=True),  # JSON list (RFC 8176)
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("last_seen", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
)

# Authorization codes (stored hashed): single use, short-lived, bound to client, redirect URI
# and PKCE challenge.
oidc_codes = sa.Table(
    "oidc_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(40), nullable=False),
    sa.Column("session_hash", sa.String(64), nullable=True),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("nonce", sa.Text, nullable=True),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("acr", sa.String(64), nullable=False),
    sa.Column("amr", sa.Text, nullable=False),  # JSON list
    sa.Column("auth_time", UTCDateTime(timezone=True), nullable=False),
    sa.Column("claims", sa.Text, nullable=True),  # JSON ``claims`` request parameter
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
)

# Tokens issued (by jti), so a replayed code can revoke what it produced and userinfo can
# refuse a revoked access token.
oidc_tokens = sa.Table(
    "oidc_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # access, id, refresh
    sa.Column("code_hash", sa.String(64), nullable=True, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(40), nullable=False, index=True),
    sa.Column("issued_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
)


# Roles granted to an identity (Keycloak realm roles): ``auditor`` reads the audit API,
# ``ca-admin`` issues and revokes over HTTP. Access tokens carry them in ``roles``.
identity_roles = sa.Table(
    "identity_roles",
    metadata,
    sa.Column("subject", sa.String(40), sa.ForeignKey("identities.subject"), primary_key=True),
    sa.Column("role", sa.String(32), primary_key=True),
    sa.Column("granted_by", sa.Text, nullable=False),
    sa.Column("granted_at", UTCDateTime(timezone=True), nullable=False),
)


# -- signing gateway (schema v5) -------------------------------------------------------------
# Citizens' remote-signing credentials: the key is generated by the service and stored only
# wrapped (AES-256-GCM under a key derived from the gateway's master secret and the owner's
# subject; see kyso.signing.gateway.keywrap). ``suspended_at`` is set while the owner's e-ID
# account is locked; ``hold_placed`` says whether that lock put the certificate on hold (so the
# unlock releases only the holds it placed). At most one enabled credential per citizen.
signing_credentials = sa.Table(
    "signing_credentials",
    metadata,
    sa.Column("credential_id", sa.String(64), primary_key=True),  # opaque, URL-safe random
    sa.Column("subject", sa.String(40), sa.ForeignKey("identities.subject"), nullable=False,
              index=True),
    sa.Column("serial", sa.String(40), nullable=False, unique=True),  # the certificate's
    sa.Column("issuer", sa.String(32), nullable=False),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("key_wrapped", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # enabled, disabled
    sa.Column("suspended_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("hold_placed", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("disabled_at", UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('enabled', 'disabled')", name="signing_credential_status"),
)
sa.Index(
    "one_enabled_credential", signing_credentials.c.subject, unique=True,
    sqlite_where=signing_credentials.c.status == "enabled",
    postgresql_where=signing_credentials.c.status == "enabled",
)

# Signature activation data (SAD): only its SHA-256 is stored; bound to the credential, the
# subject, the exact set of hashes and their algorithm; single use (``consumed_at`` is set by
# a conditional UPDATE); one authorization per access token (``jti`` unique).
signing_authorizations = sa.Table(
    "signing_authorizations",
    metadata,
    sa.Column("sad_hash", sa.String(64), primary_key=True),
    sa.Column("credential_id", sa.String(64),
              sa.ForeignKey("signing_credentials.credential_id"), nullable=False, index=True),
    sa.Column("subject", sa.String(40), nullable=False),
    sa.Column("jti", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("hash_algorithm", sa.String(16), nullable=False),
    sa.Column("hashes", sa.Text, nullable=False),  # JSON list of lowercase hex, sorted
    sa.Column("num_signatures", sa.SmallInteger, nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False, index=True),
    sa.Column("consumed_at", UTCDateTime(timezone=True), nullable=True),
)
