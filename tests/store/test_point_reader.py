"""The store's point reader: one hot single-row SELECT outside the pool, always seeing the
latest committed data; and the OCSP status lookup built on it, which must agree with
serial_status for every status."""

from __future__ import annotations

import pytest

from conftest import CITIZEN, STAFF
from kyso.context import Kyso
from kyso.errors import StoreError
from kyso.pki import issuance, lifecycle
from kyso.pki.authority import CertificateAuthority
from kyso.pki.ocsp import StatusLookup, serial_status
from kyso.pki.records import RevocationReason
from kyso.pki.subjects import SubjectRequest
from kyso.store import schema


def test_a_point_reader_sees_each_commit_at_once(kyso: Kyso) -> None:
    read = kyso.store.point_reader("SELECT org FROM ca_settings WHERE id = ?")
    assert read(1) is None

    kyso.store.write(lambda conn: conn.execute(schema.ca_settings.insert().values(
        id=1, org="UBND tỉnh Hưng Yên", province_slug="hung-yen", province_name="Hưng Yên",
        email_domain="hungyen.gov.vn", base_url="http://pki.hungyen.gov.vn",
        key_type="ec-p384", created_at=kyso.now())))
    first = read(1)
    kyso.store.write(lambda conn: conn.execute(
        schema.ca_settings.update().values(org="UBND tỉnh Tây Ninh")))

    assert first == ("UBND tỉnh Hưng Yên",)
    assert read(1) == ("UBND tỉnh Tây Ninh",)


def test_a_point_reader_reopens_after_close_and_names_a_bad_query(kyso: Kyso) -> None:
    read = kyso.store.point_reader("SELECT 1 FROM ca_settings WHERE id = ?")
    read(1)
    read.close()
    assert read(1) is None  # reopened

    broken = kyso.store.point_reader("SELECT nothing FROM no_such_table WHERE id = ?")
    with pytest.raises(StoreError, match="database read failed"):
        broken(1)


def test_the_status_lookup_agrees_with_serial_status_for_every_status(
        kyso: Kyso, ca: CertificateAuthority) -> None:
    good, revoked, held = (issuance.issue(kyso, ca, "staff", SubjectRequest.of(
        **{**STAFF, "id": f"019099012{n:03d}", "email": f"s{n}@thainguyen.gov.vn"})).record
        for n in range(3))
    lifecycle.revoke(kyso, revoked.serial, reason=RevocationReason.KEY_COMPROMISE)
    lifecycle.hold(kyso, held.serial)
    lookup = StatusLookup(kyso, "staff")
    citizen = issuance.issue(kyso, ca, "citizen", SubjectRequest.of(**CITIZEN)).record

    serials = [int(r.serial, 16) for r in (good, revoked, held, citizen)] + [0x1234]
    assert [lookup(s) for s in serials] == [serial_status(kyso, "staff", s) for s in serials]
    assert [lookup(s).status.value for s in serials] == [
        "good", "revoked", "revoked", "unknown", "unknown"]  # a citizen serial is not staff's
