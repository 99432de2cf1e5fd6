"""``kyso demo``: the one scenario of DESIGN.md, played end to end on the embedded defaults.

A citizen applies online for a copy of her birth-registration extract at the commune:

1. the province's CA is created; the commune's official (``staff``) and the commune People's
   Committee (``seal``) receive certificates in encrypted PKCS#12 files;
2. she is enrolled at level 2 with her chip ID card (test CSCA → Document Signer → SOD; passive
   authentication must pass), sets a password and enrols an authenticator app (TOTP);
3. she logs in to the provincial portal through the running OpenID Connect provider: a real
   uvicorn server on a free loopback port, driven over HTTPS exactly as a browser would
   (authorize → login form with CSRF → TOTP form → code → token with PKCE S256); with that
   fresh level-2 token the portal enrols her signing credential at the signing gateway the
   same server runs (the gateway generates and keeps her key; the citizen CA issues her
   ``citizen`` certificate; no PKCS#12 exists);
4. a level-2 step-up (fresh password + TOTP, ``prompt=login max_age=0``) gives a token for the
   portal and the gateway (audience ``kyso-csc``); the gateway authorizes the hash of the
   application's signed attributes (SAD: that hash only, single use, 300 s) and signs it with
   her key (CSC ``signHash``), and kyso embeds the signature (B-LT);
5. the official approves with a visible Decree 30 stamp (B-LT);
6. the agency seal certifies and locks the dossier (B-LTA);
7. a backend service holding only the root certificate verifies the dossier (TOTAL-PASSED)
   and catches a copy changed after signing (TOTAL-FAILED);
8. a checkpoint is signed and the audit log verifies;
9. the level-3 policy report of the current regime is summed up (a report: items that need
   evidence do not fail the demo).

Every step is a function (:mod:`kyso.demo_steps`, re-exported here); :func:`run_demo` runs them
in order, tells the story through ``out`` (:mod:`kyso.demo_story`) and returns a
:class:`DemoResult`. How the browser and the portal talk to the running provider over HTTPS is
:mod:`kyso.demo_web`. Any step that does not turn out as the scenario says raises
a :class:`~kyso.errors.KysoError` naming it. The demo's passphrases are random, written to
``<home>/demo-secrets.txt`` (0600) and never printed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kyso.clock import Clock
from kyso.config import Settings, load_settings
from kyso.context import open_kyso
from kyso.demo_steps import (
    Phone,
    citizen_logs_in,
    citizen_signs,
    create_ca_and_certificates,
    enrol_citizen,
    enrol_signing_credential,
    official_approves,
    policy_report,
    provider_ready,
    seal_certifies,
    step_up,
    tamper,
    verify_audit,
    verify_dossier,
)
from kyso.demo_story import (
    DOSSIER_TITLE,
    PORTAL,
    DemoCertificate,
    DemoRun,
    DemoSecrets,
    Out,
    tell_closing,
    tell_opening,
)
from kyso.demo_web import running_provider
from kyso.errors import CAExistsError, ConfigError
from kyso.files import atomic_write, ensure_private_dir
from kyso.signing.sample import write_sample_pdf
from kyso.signing.services import LocalServices

__all__ = ["DemoCertificate", "DemoResult", "Phone", "citizen_logs_in", "citizen_signs",
           "create_ca_and_certificates", "enrol_citizen", "enrol_signing_credential",
           "official_approves", "policy_report", "prepare_home", "provider_ready", "run_demo",
           "seal_certifies", "step_up", "tamper", "verify_audit", "verify_dossier"]

MARKER = "demo.json"  # written first: marks the home as the demo's (a later demo may replace it)
MARKER_TEXT = '{"format": "kyso-demo/1"}\n'
SECRETS_FILE = "demo-secrets.txt"
ARTIFACTS = "demo"
# What a demo leaves in its home: a previous demo's home holding only these may be replaced.
DEMO_ENTRIES = frozenset({MARKER, SECRETS_FILE, ARTIFACTS, "kyso.db", "kyso.db-wal", "kyso.db-shm",
                          "kyso.db-journal", "ca", "crl", "audit", "secrets", "csca"})


# --- the result ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoResult:
    """What the demo made and what every check said. No secret is held here."""

    home: Path
    secrets_file: Path
    key_kdf_iterations: int  # PBKDF2 iterations of the key files
    password_hash: str  # argon2id parameter set of the passwords
    issuer: str
    certificates: tuple[DemoCertificate, ...]
    trust_anchor: Path
    chip: Path
    passive_auth: str
    citizen: str  # masked ID number
    citizen_credential: str  # her credential id at the signing gateway
    login_acr: str
    step_up_acr: str
    documents: tuple[tuple[str, Path], ...]  # (stage, file), in the order they were made
    final_pdf: Path
    final_verdict: str
    tampered_pdf: Path
    tampered_verdict: str
    audit_ok: bool
    audit_entries: int
    audit_root: str
    checkpoint: Path
    policy_verdict: str
    policy_counts: tuple[tuple[str, int], ...]
    timings: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home), "secrets_file": str(self.secrets_file),
            "settings": {"key_kdf_iterations": self.key_kdf_iterations,
                         "password_hash": self.password_hash},
            "issuer": self.issuer,
            "certificates": [c.to_dict() for c in self.certificates],
            "trust_anchor": str(self.trust_anchor), "chip": str(self.chip),
            "passive_auth": self.passive_auth, "citizen": self.citizen,
            "citizen_credential": self.citizen_credential,
            "login_acr": self.login_acr, "step_up_acr": self.step_up_acr,
            "documents": {name: str(path) for name, path in self.documents},
            "final": {"file": str(self.final_pdf), "indication": self.final_verdict},
            "tampered": {"file": str(self.tampered_pdf), "indication": self.tampered_verdict},
            "audit": {"ok": self.audit_ok, "entries": self.audit_entries,
                      "root": self.audit_root, "checkpoint": str(self.checkpoint)},
            "policy": {"level": 3, "regime": "current", "verdict": self.policy_verdict,
                       "summary": dict(self.policy_counts)},
            "timings": {name: round(seconds, 2) for name, seconds in self.timings},
        }


# --- the home ----------------------------------------------------------------------------------

def prepare_home(home: Path) -> None:
    """Make ``home`` ready: created when missing. A directory that holds anything but a
    ``config.toml`` is refused — unless a previous demo made it (its marker is there, and
    nothing the demo does not make): that demo's files are then removed (``config.toml``
    stays). So a real kyso home, or any other folder, is never touched."""
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{home} exists and is not a directory")
    ensure_private_dir(home)
    entries = {p.name for p in home.iterdir()} - {"config.toml"}
    if not entries:
        return
    if MARKER not in entries:
        what = "a kyso home" if entries & {"kyso.db", "ca", "audit"} else "other files"
        raise CAExistsError(f"{home} already holds {what} ({', '.join(sorted(entries)[:5])}); "
                            "the demo needs a new or empty directory (or a previous demo's)")
    foreign = sorted(entries - DEMO_ENTRIES)
    if foreign:
        raise CAExistsError(f"{home} was a demo's home but now also holds "
                            f"{', '.join(foreign[:5])}; the demo does not replace it")
    for name in sorted(entries):
        path = home / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _settings(home: Path) -> Settings:
    """The embedded defaults: SQLite in the home, whatever KYSO_DATABASE_URL says."""
    return load_settings(home=home, database_url=f"sqlite:///{(home / 'kyso.db').absolute()}")


# --- the whole scenario ----------------------------------------------------------------------------

def run_demo(home: Path, clock: Clock, out: Out) -> DemoResult:
    """Play the scenario in ``home`` (see :func:`prepare_home`), telling it through ``out``."""
    started = time.perf_counter()
    home = home.absolute()
    prepare_home(home)
    atomic_write(home / MARKER, MARKER_TEXT.encode("ascii"))
    settings = _settings(home)
    secrets_file = home / SECRETS_FILE
    tell_opening(out, home, settings, secrets_file)
    kyso = open_kyso(settings, clock=clock, actor="admin:kyso-demo", source="demo")
    try:
        keys = DemoSecrets.new(settings.authn.password_policy)
        folder = ensure_private_dir(home / ARTIFACTS)
        d = DemoRun(kyso, out, keys, folder, LocalServices(kyso, keys.ca))
        keys.write(secrets_file, {})

        d.step(1)
        create_ca_and_certificates(d)
        d.step(2)
        phone = enrol_citizen(d)
        keys.write(secrets_file, {"DEMO_CITIZEN_TOTP_SECRET": d.facts["totp_secret"]})
        application = folder / "1-don-de-nghi.pdf"
        write_sample_pdf(application, pages=2, title=DOSSIER_TITLE)
        d.documents.append(("application", application))

        d.step(3)
        with running_provider(kyso, keys.token_keys, PORTAL, ca_passphrase=keys.ca) as server:
            browser, portal = provider_ready(d, server)
            login = citizen_logs_in(d, portal, browser, phone)
            credential = enrol_signing_credential(d, server, login)
            d.step(4)
            stepped_up = step_up(d, portal, browser, phone)
            signed = citizen_signs(d, server, stepped_up, application)
            issuer = server.issuer
        d.step(5)
        approved = official_approves(d, signed)
        d.step(6)
        final = seal_certifies(d, approved)
        d.step(7)
        good, bad = verify_dossier(d, final)
        d.step(8)
        entries, root, checkpoint = verify_audit(d)
        d.step(9)
        verdict, counts = policy_report(d)
        d.step(0)
        total = time.perf_counter() - started
        tell_closing(d, total, home, final)
        return DemoResult(
            home=home, secrets_file=secrets_file,
            key_kdf_iterations=settings.key_kdf_iterations,
            password_hash=settings.authn.password_hash, issuer=issuer,
            certificates=tuple(d.certificates.values()), trust_anchor=d.facts["root"],
            chip=d.facts["chip"], passive_auth=d.facts["passive_auth"],
            citizen=d.facts["masked_id"], citizen_credential=credential.credential_id or "",
            login_acr=d.facts["login_acr"],
            step_up_acr=d.facts["step_up_acr"], documents=tuple(d.documents), final_pdf=final,
            final_verdict=good.indication.value, tampered_pdf=d.facts["tampered"],
            tampered_verdict=bad.indication.value, audit_ok=True, audit_entries=entries,
            audit_root=root, checkpoint=checkpoint, policy_verdict=verdict,
            policy_counts=tuple((s.value, n) for s, n in counts.items()),
            timings=(*d.timings, ("total", total)))
    finally:
        kyso.close()
