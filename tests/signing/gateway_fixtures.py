"""The fixtures of the signing-gateway library tests, loaded as a plugin
(``pytest_plugins = ("gateway_fixtures",)``): Bình at level 2, the gateway's master secret and
her enrolled credential."""

from __future__ import annotations

import pytest
from gateway_support import BINH, level2, requester

from conftest import PASSPHRASE
from kyso.authn.registry import Identity
from kyso.context import Kyso
from kyso.pki.authority import CertificateAuthority
from kyso.signing.gateway import Enrolment, MasterSecret, enrol, master_secret_path


@pytest.fixture
def binh(kyso: Kyso) -> Identity:
    return level2(kyso, BINH)


@pytest.fixture
def master(kyso: Kyso) -> MasterSecret:
    return MasterSecret.create(master_secret_path(kyso.settings.home), PASSPHRASE, 2000)


@pytest.fixture
def enrolled(kyso: Kyso, ca: CertificateAuthority, master: MasterSecret,
             binh: Identity) -> Enrolment:
    return enrol(kyso, ca, master, requester(kyso, binh))
