"""The identity registry: validated personal data, one account per ID number, Decree 69 locks."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from kyso.authn.acr import ACR_LEVEL_1, ACR_LEVEL_2, EIDAS_HIGH, EIDAS_LOW, acr_for, level_of
from kyso.authn.registry import (
    AccountStatus,
    Level,
    LockGround,
    Person,
    Registry,
    new_subject,
    parse_phone,
)
from kyso.clock import FrozenClock
from kyso.errors import IdentityError, InvalidIdentifierError
from kyso.pki.identifiers import Sex
from kyso.store import open_store

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
AN = {"id_number": "019090012345", "full_name": "Nguyễn Văn An", "birth_date": "1990-05-17",
      "sex": "male", "phone": "0912345678", "email": "an@example.vn"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    clock = FrozenClock(T0)
    return Registry(open_store(f"sqlite:///{tmp_path / 'kyso.db'}", now=clock.now), clock)


def test_person_of_validates_and_normalises_every_field() -> None:
    person = Person.of(**{**AN, "full_name": "  Nguyễn   Văn An ", "phone": "+84 912 345 678"})
    assert person.full_name == "Nguyễn Văn An"
    assert person.phone == "+84912345678"
    assert person.birth_date == dt.date(1990, 5, 17)
    assert person.sex is Sex.MALE


@pytest.mark.parametrize(("field", "value", "message"), [
    ("id_number", "01909001234", "12 digits"),
    ("id_number", "０１９０９００１２３４５", "ASCII digits"),
    ("id_number", "999090012345", "not a province code"),
    ("id_number", "019190012345", "encodes sex female"),
    ("birth_date", "1991-05-17", "encodes birth year 1990"),
    ("birth_date", "17/05/1990", "ISO date"),
    ("sex", "m", "'male' or 'female'"),
    ("full_name", "", "full name"),
    ("full_name", "An<script>", "full name"),
    ("full_name", "A" * 101, "full name"),
    ("phone", "12345", "Vietnamese mobile number"),
    ("phone", "0112345678", "Vietnamese mobile number"),
    ("email", "not-an-email", "e-mail"),
])
def test_person_of_refuses_bad_fields_with_a_message_naming_them(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidIdentifierError, match=message) as caught:
        Person.of(**{**AN, field: value})
    assert "019090012345" not in str(caught.value)


def test_person_repr_never_shows_the_raw_id_number() -> None:
    person = Person.of(**AN)
    assert "019090012345" not in repr(person)
    assert person.masked_id == "019******345"


def test_parse_phone_accepts_both_national_forms() -> None:
    assert parse_phone("0912345678") == parse_phone("+84912345678") == "+84912345678"


def test_subjects_are_random_and_not_derived_from_the_id() -> None:
    assert new_subject() != new_subject()
    assert new_subject().startswith("u-")


def test_create_then_find_by_id_and_subject(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash="h", face_score=0.91)
    assert made.level is Level.ONE
    assert made.status is AccountStatus.ACTIVE
    assert registry.find("019090012345") == made
    assert registry.by_subject(made.subject) == made
    assert registry.password_hash(made.subject) == "h"
    assert registry.count() == 1


def test_identity_to_dict_masks_the_id_number(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash=None)
    data = made.to_dict()
    assert data["id_number"] == "019******345"
    assert "019090012345" not in repr(made) + str(data)


def test_a_second_account_for_one_id_number_is_refused(registry: Registry) -> None:
    registry.create(Person.of(**AN), password_hash=None)
    with pytest.raises(IdentityError, match=r"019\*{6}345 already exists"):
        registry.create(Person.of(**AN), password_hash=None)


def test_concurrent_registrations_of_one_id_create_one_account(registry: Registry) -> None:
    outcomes: list[str] = []

    def register() -> None:
        try:
            registry.create(Person.of(**AN), password_hash=None)
            outcomes.append("created")
        except IdentityError:
            outcomes.append("refused")

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * 5
    assert registry.count() == 1


@pytest.mark.parametrize("value", ["", "abc", "01909001234", "0190900123456", None, 19090012345])
def test_find_returns_none_for_anything_that_is_not_an_id(registry: Registry, value: object) -> None:
    assert registry.find(value) is None  # type: ignore[arg-type]


def test_get_names_a_malformed_number_and_an_unknown_account(registry: Registry) -> None:
    with pytest.raises(InvalidIdentifierError, match="12 digits"):
        registry.get("123")
    with pytest.raises(IdentityError, match=r"no e-ID account for 019\*{6}345"):
        registry.get("019090012345")


def test_promote_level2_replaces_personal_data_with_the_chip_data(registry: Registry) -> None:
    made = registry.create(Person.of(**{**AN, "full_name": "Nguyen Van An"}), password_hash=None)
    chip = Person.of(**AN)
    promoted = registry.promote_level2(made.subject, person=chip, officer="officer:ca-tn-01",
                                       evidence={"ds_serial": "1a2b", "consent": True})
    assert promoted.level is Level.TWO
    assert promoted.person.full_name == "Nguyễn Văn An"
    assert promoted.level2_at == T0
    assert promoted.version == made.version + 1
    assert registry.level2_evidence(made.subject) == {"ds_serial": "1a2b", "consent": True}


def test_a_level2_account_is_created_whole_with_its_evidence(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash=None, level=Level.TWO,
                           officer="officer:ca-tn-01", evidence={"ds_serial": "1a2b"})
    assert made.level is Level.TWO
    assert made.level2_at == T0
    assert registry.level2_evidence(made.subject) == {"ds_serial": "1a2b"}


def test_a_level1_account_with_enrolment_evidence_is_refused(registry: Registry) -> None:
    with pytest.raises(IdentityError, match="only a level-2 account"):
        registry.create(Person.of(**AN), password_hash=None, officer="o", evidence={})
    assert registry.count() == 0


def test_lock_records_the_decree_69_ground_and_unlock_clears_it(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash=None)
    locked = registry.lock(made.subject, LockGround.HOLDER_REQUEST, by="officer:1")
    assert locked.locked
    assert locked.lock_reason is LockGround.HOLDER_REQUEST
    assert locked.locked_at == T0
    unlocked = registry.unlock(made.subject, by="officer:1")
    assert unlocked.status is AccountStatus.ACTIVE
    assert unlocked.lock_reason is None


def test_unlocking_an_active_account_is_refused(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash=None)
    with pytest.raises(IdentityError, match="is not locked"):
        registry.unlock(made.subject, by="officer:1")


def test_a_deceased_holders_account_is_never_unlocked(registry: Registry) -> None:
    made = registry.create(Person.of(**AN), password_hash=None)
    registry.lock(made.subject, LockGround.DECEASED, by="officer:1")
    with pytest.raises(IdentityError, match="holder died"):
        registry.unlock(made.subject, by="officer:1")
    assert registry.by_subject(made.subject).locked


def test_every_lock_ground_has_a_vietnamese_label() -> None:
    assert all(ground.label_vi for ground in LockGround)


def test_changes_to_an_unknown_subject_are_refused(registry: Registry) -> None:
    with pytest.raises(IdentityError, match="no e-ID account"):
        registry.lock("u-nobody", LockGround.SECURITY, by="x")


def test_acr_levels_and_eidas_aliases() -> None:
    assert level_of(ACR_LEVEL_2) is Level.TWO
    assert level_of(EIDAS_HIGH) is Level.TWO
    assert level_of(EIDAS_LOW) is Level.ONE
    assert level_of("urn:vn:vneid:loa:3") is None
    assert level_of(2) is None
    assert acr_for(Level.ONE) == ACR_LEVEL_1
    assert acr_for(Level.TWO) == ACR_LEVEL_2
