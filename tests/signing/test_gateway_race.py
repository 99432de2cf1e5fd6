"""Single use under concurrency: threads racing with one SAD, or one login racing to authorize
twice, get exactly one success — on SQLite (``BEGIN IMMEDIATE``) and on PostgreSQL
(``SERIALIZABLE`` with retries; scripts/test runs this module in its PostgreSQL pass)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

from gateway_support import requester

from conftest import audit_events
from kyso.authn.registry import Identity
from kyso.context import Kyso
from kyso.errors import ActivationError, StepUpRequiredError
from kyso.signing.gateway import (
    Enrolment,
    HashAlgorithm,
    MasterSecret,
    Requester,
    authorize,
    sign_hash,
)

THREADS = 4
ROUNDS = 3

pytest_plugins = ("gateway_fixtures",)


def race(work: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work`` in THREADS threads released together; what they returned and raised."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            value = work()
        except BaseException as exc:  # collected and checked by the test
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_one_sad_used_by_racing_threads_signs_exactly_once(
        kyso: Kyso, master: MasterSecret, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    for round_ in range(ROUNDS):
        value = [hashlib.sha256(f"hồ sơ {round_}".encode()).digest()]
        sad = authorize(kyso, requester(kyso, binh), cid, value, HashAlgorithm.SHA256, 1).sad

        results, errors = race(lambda sad=sad, value=value: sign_hash(
            kyso, master, requester(kyso, binh), cid, sad, value, "1.2.840.10045.4.3.2"))

        assert len(results) == 1, errors
        assert len(errors) == THREADS - 1
        assert all(isinstance(e, ActivationError) and "already used" in str(e)
                   for e in errors), errors
    signed = [e["outcome"] for e in audit_events(kyso) if e["action"] == "CSC_SIGN_HASH"]
    assert signed.count("success") == ROUNDS
    assert signed.count("failure") == ROUNDS * (THREADS - 1)


def test_one_login_racing_to_authorize_twice_authorizes_once(
        kyso: Kyso, binh: Identity, enrolled: Enrolment) -> None:
    cid = enrolled.credential.credential_id
    for _ in range(ROUNDS):
        login = requester(kyso, binh)

        def approve(login: Requester = login) -> str:
            value = [hashlib.sha256(uuid.uuid4().bytes).digest()]  # each thread its own hash
            return authorize(kyso, login, cid, value, HashAlgorithm.SHA256, 1).sad

        results, errors = race(approve)

        assert len(results) == 1, errors
        assert len(errors) == THREADS - 1
        assert all(isinstance(e, StepUpRequiredError) and "already authorized" in str(e)
                   for e in errors), errors
