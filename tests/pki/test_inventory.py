"""The certificate inventory: filters by profile, status, expiry window, holder and issuer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from conftest import CITIZEN, SEAL, STAFF
from kyso.clock import FrozenClock
from kyso.context import Kyso
from kyso.errors import InvalidIdentifierError, PkiError, ProfileError
from kyso.pki import issuance
from kyso.pki.authority import CertificateAuthority
from kyso.pki.inventory import Query, parse_duration, search
from kyso.pki.lifecycle import hold, revoke
from kyso.pki.subjects import SubjectRequest
from kyso.store import schema

CITIZEN_2 = {"name": "Lê Văn Cường", "id": "001085004567"}


@dataclass
class Issued:
    staff: str
    seal: str
    citizen: str
    citizen2: str

    @property
    def all(self) -> set[str]:
        return {self.staff, self.seal, self.citizen, self.citizen2}


@pytest.fixture
def issued(kyso: Kyso, ca: CertificateAuthority) -> Issued:
    def one(profile: str, values: dict[str, str]) -> str:
        return issuance.issue(kyso, ca, profile, SubjectRequest.of(**values)).record.serial

    return Issued(one("staff", STAFF), one("seal", SEAL), one("citizen", CITIZEN),
                  one("citizen", CITIZEN_2))


def serials(kyso: Kyso, **query: object) -> set[str]:
    return {r.serial for r in search(kyso, Query(**query))}  # type: ignore[arg-type]


# --- profile, issuer, limit -------------------------------------------------------------------

def test_no_filter_lists_every_certificate_including_services(
    kyso: Kyso, issued: Issued
) -> None:
    records = search(kyso, Query())
    assert issued.all <= {r.serial for r in records}
    assert {r.profile for r in records} == {"staff", "seal", "citizen", "ocsp", "tsa",
                                            "audit-signer"}
    assert [r.not_after for r in records] == sorted(r.not_after for r in records)


def test_filter_by_profile(kyso: Kyso, issued: Issued) -> None:
    assert serials(kyso, profile="citizen") == {issued.citizen, issued.citizen2}
    assert serials(kyso, profile="seal") == {issued.seal}
    assert serials(kyso, profile="tsa") != set()


def test_filter_by_unknown_profile_is_refused(kyso: Kyso, issued: Issued) -> None:
    with pytest.raises(ProfileError, match="unknown profile 'nurse'"):
        search(kyso, Query(profile="nurse"))


def test_filter_by_issuer(kyso: Kyso, issued: Issued) -> None:
    staff_ca = search(kyso, Query(issuer="staff"))
    assert {issued.staff, issued.seal} <= {r.serial for r in staff_ca}
    assert {r.issuer for r in staff_ca} == {"staff"}
    assert {r.profile for r in staff_ca} == {"staff", "seal", "ocsp"}
    assert serials(kyso, issuer="citizen", profile="citizen") == {issued.citizen,
                                                                  issued.citizen2}
    assert serials(kyso, issuer="nobody") == set()


def test_limit_caps_the_result(kyso: Kyso, issued: Issued) -> None:
    assert len(search(kyso, Query(limit=2))) == 2
    earliest = search(kyso, Query(profile="citizen", limit=1))
    assert [r.serial for r in earliest] == [sorted(
        search(kyso, Query(profile="citizen")), key=lambda r: (r.not_after, r.serial))[0].serial]


# --- status -----------------------------------------------------------------------------------

def test_filter_by_status_valid_revoked_and_on_hold(kyso: Kyso, issued: Issued) -> None:
    revoke(kyso, issued.citizen, reason="keyCompromise")
    hold(kyso, issued.staff)
    assert serials(kyso, status="revoked") == {issued.citizen}
    assert serials(kyso, status="on_hold") == {issued.staff}
    valid = serials(kyso, status="valid")
    assert {issued.seal, issued.citizen2} <= valid
    assert issued.citizen not in valid
    assert issued.staff not in valid


def test_expired_certificates_are_not_valid(
    kyso: Kyso, issued: Issued, clock: FrozenClock
) -> None:
    clock.advance(dt.timedelta(days=366))  # citizen (1 y) expired, staff and seal (3 y) not
    assert serials(kyso, status="expired", profile="citizen") == {issued.citizen,
                                                                  issued.citizen2}
    assert serials(kyso, status="valid", profile="citizen") == set()
    assert serials(kyso, status="valid", profile="staff") == {issued.staff}
    assert serials(kyso, status="expired", profile="staff") == set()
    records = search(kyso, Query(profile="citizen"))
    assert {r.display_status(clock.now()) for r in records} == {"expired"}


def test_certificate_expires_just_after_not_after(
    kyso: Kyso, issued: Issued, clock: FrozenClock
) -> None:
    clock.advance(dt.timedelta(days=365))
    assert issued.citizen in serials(kyso, status="valid", profile="citizen")
    clock.advance(dt.timedelta(seconds=1))
    assert issued.citizen in serials(kyso, status="expired", profile="citizen")


def test_revoked_certificate_that_expired_stays_revoked(
    kyso: Kyso, issued: Issued, clock: FrozenClock
) -> None:
    revoke(kyso, issued.citizen)
    clock.advance(dt.timedelta(days=400))
    assert serials(kyso, status="expired", profile="citizen") == {issued.citizen2}
    assert serials(kyso, status="revoked") == {issued.citizen}


def test_unknown_status_is_refused(kyso: Kyso, issued: Issued) -> None:
    with pytest.raises(PkiError, match="unknown status 'suspended'"):
        search(kyso, Query(status="suspended"))


# --- expiring window --------------------------------------------------------------------------

def test_expiring_within_a_window(kyso: Kyso, issued: Issued, clock: FrozenClock) -> None:
    clock.advance(dt.timedelta(days=300))  # citizens expire in 65 days, staff/seal in 795
    window = dt.timedelta(days=90)
    expiring = search(kyso, Query(expiring_within=window))
    assert {issued.citizen, issued.citizen2} <= {r.serial for r in expiring}
    assert issued.staff not in {r.serial for r in expiring}
    now = clock.now()
    assert all(now <= r.not_after <= now + window for r in expiring)
    assert serials(kyso, expiring_within=dt.timedelta(days=64), profile="citizen") == set()
    assert serials(kyso, expiring_within=dt.timedelta(days=65), profile="citizen") == {
        issued.citizen, issued.citizen2}


def test_expiring_window_leaves_out_expired_and_revoked(
    kyso: Kyso, issued: Issued, clock: FrozenClock
) -> None:
    revoke(kyso, issued.citizen2)
    clock.advance(dt.timedelta(days=300))
    assert serials(kyso, expiring_within=dt.timedelta(days=90), profile="citizen") == {
        issued.citizen}
    clock.advance(dt.timedelta(days=100))  # now expired
    assert serials(kyso, expiring_within=dt.timedelta(days=90), profile="citizen") == set()


@pytest.mark.parametrize(
    ("text", "delta"),
    [("30d", dt.timedelta(days=30)), ("2w", dt.timedelta(days=14)),
     ("12h", dt.timedelta(hours=12)), (" 7D ", dt.timedelta(days=7))],
)
def test_parse_duration(text: str, delta: dt.timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["30", "d", "3x", "-1d", "1.5d", "", "30 d"])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    with pytest.raises(PkiError, match="30d, 2w or 12h"):
        parse_duration(text)


# --- holder -----------------------------------------------------------------------------------

def test_filter_by_holder_personal_id(kyso: Kyso, ca: CertificateAuthority,
                                      issued: Issued) -> None:
    assert serials(kyso, holder_id=STAFF["id"]) == {issued.staff}
    assert serials(kyso, holder_id=CITIZEN["id"]) == {issued.citizen}
    assert serials(kyso, holder_id=f" {CITIZEN_2['id']} ") == {issued.citizen2}
    renewed = issuance.renew(kyso, ca, issued.staff).record.serial
    assert serials(kyso, holder_id=STAFF["id"]) == {issued.staff, renewed}


def test_filter_by_holder_tax_code(kyso: Kyso, issued: Issued) -> None:
    assert serials(kyso, holder_id=SEAL["tax_code"]) == {issued.seal}


def test_holder_without_certificates_finds_nothing(kyso: Kyso, issued: Issued) -> None:
    assert serials(kyso, holder_id="079199001234") == set()
    assert serials(kyso, holder_id="0100233488") == set()


def test_holder_lookup_goes_through_the_pseudonym_not_the_raw_number(
    kyso: Kyso, issued: Issued
) -> None:
    c = schema.certificates
    with kyso.store.read() as conn:
        row = conn.execute(sa.select(c.c.holder_pseudonym, c.c.holder_hint, c.c.subject)
                           .where(c.c.serial == issued.staff)).mappings().one()
    assert row["holder_pseudonym"] == kyso.pseudonyms.pseudonym(STAFF["id"])
    assert STAFF["id"] not in row["holder_pseudonym"]
    assert row["holder_hint"] == "019******345"
    assert STAFF["id"] not in row["subject"]


def test_malformed_holder_id_is_refused(kyso: Kyso, issued: Issued) -> None:
    with pytest.raises(InvalidIdentifierError):
        search(kyso, Query(holder_id="003099012345"))  # no province 003
    with pytest.raises(InvalidIdentifierError):
        search(kyso, Query(holder_id="Nguyễn Văn An"))


def test_filters_combine(kyso: Kyso, issued: Issued) -> None:
    revoke(kyso, issued.citizen)
    assert serials(kyso, holder_id=CITIZEN["id"], status="valid") == set()
    assert serials(kyso, holder_id=CITIZEN["id"], status="revoked") == {issued.citizen}
    assert serials(kyso, holder_id=CITIZEN["id"], issuer="staff") == set()
    assert serials(kyso, profile="citizen", status="valid", issuer="citizen") == {
        issued.citizen2}


def test_query_repr_hides_the_holder_id() -> None:
    assert STAFF["id"] not in repr(Query(holder_id=STAFF["id"], profile="staff"))


@pytest.mark.parametrize("text", ["1000000000d", "99999999w"])
def test_absurd_durations_are_refused_not_overflowed(text: str) -> None:
    with pytest.raises(PkiError):
        parse_duration(text)
