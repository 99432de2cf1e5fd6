"""TOTP credentials: pending → active with the first code, one active per account, seeds sealed,
the confirming code never usable again, events without secrets."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import sqlalchemy as sa

from conftest import audit_events, audit_text
from kyso.authn.credentials import CredentialStatus, OtpCredentials
from kyso.authn.otp import MemoryTotpStepStore, TotpVerifier
from kyso.authn.registry import Identity, Person, Registry
from kyso.authn.sealing import SecretSealer
from kyso.authn.stores import SqlTotpStepStore
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import AuthenticationFailedError, AuthnError, IdentityError
from kyso.store.schema import otp_credentials

ID_NUMBER = "019090012345"


@pytest.fixture
def identity(kyso: Kyso) -> Identity:
    return Registry(kyso.store, kyso.clock).create(
        Person.of(id_number=ID_NUMBER, full_name="Nguyễn Văn Bình", birth_date="1990-03-04",
                  sex="male"), password_hash=None)


@pytest.fixture
def creds(kyso: Kyso) -> OtpCredentials:
    return OtpCredentials(kyso.store, kyso.clock, SecretSealer.for_home(kyso.settings.home),
                          audit=kyso)


@pytest.fixture
def verifier(kyso: Kyso, clock: FrozenClock) -> TotpVerifier:
    return TotpVerifier(SqlTotpStepStore(kyso.store), clock)


def code(secret: str, clock: FrozenClock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + dt.timedelta(seconds=30 * steps))


def test_begin_stores_a_pending_credential_with_a_sealed_seed(
        kyso: Kyso, creds: OtpCredentials, identity: Identity) -> None:
    enrolment = creds.begin_totp(identity.subject)
    [stored] = creds.credentials(identity.subject)
    assert stored.credential_id == enrolment.credential_id
    assert stored.status is CredentialStatus.PENDING
    assert creds.active_totp(identity.subject) is None
    with kyso.store.read() as conn:
        sealed = conn.execute(sa.select(otp_credentials.c.secret_sealed)).scalar_one()
    assert enrolment.secret.encode() not in sealed
    assert enrolment.secret not in repr(enrolment)
    assert enrolment.secret not in repr(stored)
    assert "secret" not in stored.to_dict()


def test_the_provisioning_uri_shows_the_masked_id_only(creds: OtpCredentials,
                                                       identity: Identity) -> None:
    enrolment = creds.begin_totp(identity.subject)
    uri = urlsplit(enrolment.provisioning_uri)
    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert unquote(uri.path) == "/kyso:019******345"
    assert parse_qs(uri.query)["secret"] == [enrolment.secret]
    assert ID_NUMBER not in enrolment.provisioning_uri
    assert enrolment.to_dict() == {"credential_id": enrolment.credential_id,
                                   "uri": enrolment.provisioning_uri}


def test_a_new_begin_replaces_the_earlier_pending_one(
        creds: OtpCredentials, identity: Identity, verifier: TotpVerifier,
        clock: FrozenClock) -> None:
    first = creds.begin_totp(identity.subject)
    second = creds.begin_totp(identity.subject)
    assert [c.credential_id for c in creds.credentials(identity.subject)] == [second.credential_id]
    with pytest.raises(AuthnError, match="no pending TOTP enrolment"):
        creds.confirm_totp(identity.subject, first.credential_id, code(first.secret, clock),
                           verifier)


def test_the_first_valid_code_activates_it(creds: OtpCredentials, identity: Identity,
                                           verifier: TotpVerifier, clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    active = creds.confirm_totp(identity.subject, enrolment.credential_id,
                                code(enrolment.secret, clock), verifier)
    assert active.status is CredentialStatus.ACTIVE
    assert active.activated_at == clock.now()
    assert creds.active_totp(identity.subject) == (enrolment.credential_id, enrolment.secret)


def test_a_wrong_code_leaves_it_pending(creds: OtpCredentials, identity: Identity,
                                        verifier: TotpVerifier, clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    good = code(enrolment.secret, clock)
    with pytest.raises(AuthenticationFailedError):
        creds.confirm_totp(identity.subject, enrolment.credential_id,
                           f"{(int(good) + 1) % 10**6:06d}", verifier)
    assert creds.active_totp(identity.subject) is None
    assert creds.credentials(identity.subject)[0].status is CredentialStatus.PENDING


def test_the_confirming_code_cannot_be_replayed_to_log_in(
        creds: OtpCredentials, identity: Identity, verifier: TotpVerifier,
        clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    first = code(enrolment.secret, clock)
    creds.confirm_totp(identity.subject, enrolment.credential_id, first, verifier)
    with pytest.raises(AuthenticationFailedError):
        verifier.verify(enrolment.credential_id, enrolment.secret, first)
    clock.advance(dt.timedelta(seconds=30))
    assert verifier.verify(enrolment.credential_id, enrolment.secret,
                           code(enrolment.secret, clock)).step > 0


def test_the_confirming_step_is_stored_even_with_a_memory_verifier(
        kyso: Kyso, creds: OtpCredentials, identity: Identity, clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    memory = TotpVerifier(MemoryTotpStepStore(), clock)
    active = creds.confirm_totp(identity.subject, enrolment.credential_id,
                                code(enrolment.secret, clock), memory)
    assert active.last_step == pyotp.TOTP(enrolment.secret).timecode(clock.now())
    sql = TotpVerifier(SqlTotpStepStore(kyso.store), clock)
    with pytest.raises(AuthenticationFailedError):
        sql.verify(enrolment.credential_id, enrolment.secret, code(enrolment.secret, clock))


def test_confirming_a_new_credential_retires_the_previous_active_one(
        creds: OtpCredentials, identity: Identity, verifier: TotpVerifier,
        clock: FrozenClock) -> None:
    old = creds.begin_totp(identity.subject)
    creds.confirm_totp(identity.subject, old.credential_id, code(old.secret, clock), verifier)
    new = creds.begin_totp(identity.subject)
    assert creds.active_totp(identity.subject) == (old.credential_id, old.secret)  # until confirmed
    creds.confirm_totp(identity.subject, new.credential_id, code(new.secret, clock), verifier)
    assert creds.active_totp(identity.subject) == (new.credential_id, new.secret)
    statuses = {c.credential_id: c.status for c in creds.credentials(identity.subject)}
    assert statuses == {old.credential_id: CredentialStatus.RETIRED,
                        new.credential_id: CredentialStatus.ACTIVE}


def test_another_accounts_enrolment_cannot_be_confirmed(
        kyso: Kyso, creds: OtpCredentials, identity: Identity, verifier: TotpVerifier,
        clock: FrozenClock) -> None:
    other = Registry(kyso.store, kyso.clock).create(
        Person.of(id_number="033301000123", full_name="Trần Thị Bình", birth_date="2001-01-01",
                  sex="female"), password_hash=None)
    enrolment = creds.begin_totp(identity.subject)
    with pytest.raises(AuthnError, match="no pending"):
        creds.confirm_totp(other.subject, enrolment.credential_id,
                           code(enrolment.secret, clock), verifier)


def test_remove_retires_the_credential(creds: OtpCredentials, identity: Identity,
                                       verifier: TotpVerifier, clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    creds.confirm_totp(identity.subject, enrolment.credential_id, code(enrolment.secret, clock),
                       verifier)
    removed = creds.remove(identity.subject, enrolment.credential_id)
    assert removed.status is CredentialStatus.RETIRED
    assert creds.active_totp(identity.subject) is None
    with pytest.raises(AuthnError, match="no such TOTP credential"):
        creds.remove(identity.subject, enrolment.credential_id)


def test_a_tampered_seed_fails_closed(kyso: Kyso, creds: OtpCredentials, identity: Identity,
                                      verifier: TotpVerifier, clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    creds.confirm_totp(identity.subject, enrolment.credential_id, code(enrolment.secret, clock),
                       verifier)
    kyso.store.write(lambda conn: conn.execute(sa.update(otp_credentials).values(
        secret_sealed=sa.func.substr(otp_credentials.c.secret_sealed, 1, 20))))
    with pytest.raises(AuthnError, match="sealed secret"):
        creds.active_totp(identity.subject)


def test_an_unknown_account_cannot_enrol(creds: OtpCredentials) -> None:
    with pytest.raises(IdentityError):
        creds.begin_totp("u-nobody")


def test_changes_are_audited_without_secrets(kyso: Kyso, creds: OtpCredentials,
                                             identity: Identity, verifier: TotpVerifier,
                                             clock: FrozenClock) -> None:
    enrolment = creds.begin_totp(identity.subject)
    good = code(enrolment.secret, clock)
    with pytest.raises(AuthenticationFailedError):
        creds.confirm_totp(identity.subject, enrolment.credential_id,
                           f"{(int(good) + 1) % 10**6:06d}", verifier)
    creds.confirm_totp(identity.subject, enrolment.credential_id, good, verifier)
    creds.remove(identity.subject, enrolment.credential_id)
    events = [e for e in audit_events(kyso) if e["layer"] == "authn"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("UPDATE_CREDENTIAL", "success"), ("UPDATE_CREDENTIAL_ERROR", "failure"),
        ("UPDATE_CREDENTIAL", "success"), ("REMOVE_CREDENTIAL", "success")]
    for event in events:
        assert event["object"] == identity.subject
        assert event["details"]["id_hint"] == "019******345"
        assert event["details"]["holder"] == kyso.pseudonyms.pseudonym(ID_NUMBER)
        assert event["details"]["authenticator"] == enrolment.credential_id
    text = audit_text(kyso)
    assert ID_NUMBER not in text
    assert enrolment.secret not in text
    assert good not in text
