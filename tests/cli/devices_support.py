"""Helpers for the ``kyso id device`` CLI tests: device keys as files, signatures as base64
files, a home where An is enrolled at level 2 through the CLI (chip issued, ``enrol-l2``), and
chips that must not pass (tampered, under a rogue CSCA)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from cli_support import run_json, run_ok
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import FAST_KDF
from kyso.authn.chip import ChipPersonalData, chip_to_json, issue_chip
from kyso.authn.csca import DocumentSigner, build_csca_certificate, build_ds_certificate
from kyso.authn.registry import Person
from kyso.clock import Clock, SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso

AN_ID = "019090012345"
AN_MASKED = "019******345"
AN = ("--id", AN_ID, "--name", "Nguyễn Văn An", "--dob", "1990-05-17", "--sex", "male")
BINH_ID = "001085001234"
BINH = ("--id", BINH_ID, "--name", "Trần Văn Bình", "--dob", "1985-01-01", "--sex", "male")
OFFICER = "CA-TN-0042"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def private_pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def signature_file(key: ec.EllipticCurvePrivateKey, message: bytes, path: Path) -> Path:
    """The base64 (DER ECDSA, wrapped at 76 columns as `base64` does) of ``key``'s signature."""
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    text = base64.b64encode(der).decode()
    path.write_text("\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + "\n")
    return path


@dataclass(frozen=True)
class Citizen:
    """An enrolled at level 2 through the CLI, with his chip file."""

    home: Path
    chip: Path
    work: Path


def enrolled(home: Path, work: Path) -> Citizen:
    chip = work / "an-chip.json"
    run_ok(home, "id", "chip-issue", *AN, "--out", str(chip))
    run_ok(home, "id", "enrol-l2", "--id", AN_ID, "--chip", str(chip), "--officer", OFFICER,
           "--face-score", "0.95", "--fingerprint-score", "0.97", "--consent",
           "--phone", "0912345678")
    return Citizen(home, chip, work)


def devices_of(home: Path, id_number: str = AN_ID) -> dict[str, dict[str, object]]:
    listed = run_json(home, "id", "device", "list", "--id", id_number, "--format", "json")
    return {d["id"]: d for d in listed["devices"]}


def ds_serial(home: Path) -> str:
    info = run_json(home, "id", "csca", "show", "--format", "json")
    return str(info["document_signers"][-1]["serial"])


def tampered(chip: Path, out: Path) -> Path:
    """The chip with one name changed in DG13 (the SOD no longer covers it)."""
    doc = json.loads(chip.read_text())
    dg13 = base64.b64decode(doc["data_groups"]["DG13"])
    doc["data_groups"]["DG13"] = base64.b64encode(
        dg13.replace("Văn An".encode(), "Văn Ân".encode())).decode()
    out.write_text(json.dumps(doc))
    return out


def rogue_chip(out: Path) -> Path:
    """An's data signed under a CSCA with the real one's name that nobody trusts."""
    now = SystemClock().now()
    key = ec.generate_private_key(ec.SECP384R1())
    csca = build_csca_certificate(key, now)
    ds_key = ec.generate_private_key(ec.SECP256R1())
    signer = DocumentSigner(build_ds_certificate(csca, key, ds_key.public_key(), now), ds_key)
    person = Person.of(id_number=AN_ID, full_name="Nguyễn Văn An", birth_date="1990-05-17",
                       sex="male")
    data = ChipPersonalData(person=person, document_number="123456789", issue_date=now.date(),
                            expiry_date=now.date() + dt.timedelta(days=3650))
    out.write_bytes(chip_to_json(issue_chip(data, b"face", signer, now)))
    return out


def open_home(home: Path, database_url: str | None, clock: Clock | None = None) -> Kyso:
    """The library's context on the CLI's home (and database), e.g. with a clock in the past."""
    return open_kyso(load_settings(home=home, database_url=database_url, environ=FAST_KDF),
                     clock=clock, actor="admin:test")
