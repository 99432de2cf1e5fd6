"""Certificate profiles: shipped files load, strict parsing, site overrides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from conftest import FAST_KDF
from kyso.clock import FrozenClock
from kyso.config import load_settings
from kyso.context import open_kyso
from kyso.errors import ProfileError
from kyso.pki.keys import KeyType
from kyso.pki.profiles import (
    ProfileKind,
    Requirement,
    load_catalogue,
    parse_profile,
    shipped_profile_texts,
)

SHIPPED = ("audit-signer", "citizen", "issuing-citizen", "issuing-services", "issuing-staff",
           "ocsp", "root", "seal", "staff", "tsa")
SOURCE = "site/staff.toml"


def staff_text() -> str:
    return shipped_profile_texts()["staff"][0]


def edit(text: str, old: str, new: str) -> str:
    """Replace ``old`` (which must be present, so a mutation can never silently do nothing)."""
    assert old in text, old
    return text.replace(old, new, 1)


def parse_edit(old: str, new: str, text: str | None = None) -> None:
    parse_profile(edit(text or staff_text(), old, new), SOURCE)


# --- the shipped profiles ---------------------------------------------------------------------

def test_every_shipped_profile_loads() -> None:
    catalogue = load_catalogue()
    assert catalogue.names() == sorted(SHIPPED)
    for name in SHIPPED:
        profile = catalogue.get(name)
        assert profile.name == name
        assert profile.source == f"profiles/{name}.toml"
        assert profile.description


def test_shipped_profiles_parse_on_their_own() -> None:
    texts = shipped_profile_texts()
    assert set(texts) == set(SHIPPED)
    for stem, (text, source) in texts.items():
        assert parse_profile(text, source).name == stem


def test_shipped_policy_oids_have_small_arcs() -> None:
    for profile in load_catalogue().profiles.values():
        for oid in profile.policy_oids:
            assert all(int(arc) < 2**28 for arc in oid.split(".")), (profile.name, oid)
            x509.ObjectIdentifier(oid)


def test_staff_profile_matches_the_domain_table() -> None:
    staff = load_catalogue().get("staff")
    assert staff.kind is ProfileKind.END_ENTITY
    assert staff.issuers == ("staff",)
    assert (staff.default_days, staff.max_days) == (1095, 1826)
    assert staff.key_usage == {"digitalSignature", "nonRepudiation"}
    assert staff.extended_key_usage == ("emailProtection", "documentSigning")
    assert staff.required_inputs == {"name", "id", "title", "unit", "email"}
    assert staff.san_email is Requirement.REQUIRED
    assert [r.type for r in staff.rdns] == ["C", "ST", "O", "OU", "L", "T", "SN", "GN", "CN",
                                            "serialNumber", "UID"]
    assert KeyType.RSA_2048 in staff.allowed_keys
    assert not staff.is_ca


def test_citizen_and_seal_validity_and_keys() -> None:
    catalogue = load_catalogue()
    citizen, seal = catalogue.get("citizen"), catalogue.get("seal")
    assert (citizen.default_days, citizen.max_days) == (365, 1095)
    assert KeyType.EC_P384 not in citizen.allowed_keys
    assert KeyType.RSA_2048 not in seal.allowed_keys  # seal: RSA-3072 or P-256 upwards
    assert {"O", "OU", "T"}.isdisjoint(r.type for r in citizen.rdns)
    assert [r.value for r in seal.rdns if r.type == "UID"] == ["MST:{tax_code}",
                                                               "MNS:{budget_code}"]


def test_tsa_extended_key_usage_is_timestamping_only_and_critical() -> None:
    tsa = load_catalogue().get("tsa")
    assert tsa.extended_key_usage == ("timeStamping",)
    assert tsa.extended_key_usage_critical is True


def test_ocsp_profile_has_nocheck_and_ocsp_signing() -> None:
    ocsp = load_catalogue().get("ocsp")
    assert ocsp.ocsp_nocheck
    assert ocsp.extended_key_usage == ("OCSPSigning",)


def test_ca_profiles_have_path_length_zero_and_staff_ca_has_name_constraints() -> None:
    catalogue = load_catalogue()
    root = catalogue.get("root")
    assert root.kind is ProfileKind.ROOT
    assert root.issuers == ()
    assert root.path_length is None
    for name in ("issuing-staff", "issuing-citizen", "issuing-services"):
        profile = catalogue.get(name)
        assert profile.kind is ProfileKind.CA
        assert profile.path_length == 0
        assert profile.is_ca
    nc = catalogue.get("issuing-staff").name_constraints
    assert nc is not None
    assert nc.email == ("{email_domain}", ".{email_domain}")
    assert [r.type for r in nc.directory[0]] == ["C", "ST", "O"]


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'nurse'.*citizen.*staff"):
        load_catalogue().get("nurse")


def test_to_dict_reports_the_profile_settings() -> None:
    data = load_catalogue().get("staff").to_dict()
    assert data["name"] == "staff"
    assert data["kind"] == "end-entity"
    assert data["validity"] == {"default_days": 1095, "max_days": 1826}
    assert data["key"]["default"] == "ec-p256"
    assert "CN={name}" in data["subject"]
    assert data["san_email"] == "required"


# --- strict parsing: unknown keys -------------------------------------------------------------

def test_unknown_top_level_key_is_an_error_naming_file_and_key() -> None:
    with pytest.raises(ProfileError, match=r"site/staff\.toml: unknown key\(s\) colour"):
        parse_profile('colour = "red"\n' + staff_text(), SOURCE)


@pytest.mark.parametrize(
    ("old", "new", "table", "key"),
    [
        ('default = "ec-p256"', 'default = "ec-p256"\nsize = 256', "key", "size"),
        ("max_days = 1826", "max_days = 1826\nmin_days = 1", "validity", "min_days"),
        ('optional = ["dob"', 'forbidden = ["tax_code"]\noptional = ["dob"', "inputs",
         "forbidden"),
        ("rdns = [", 'order = "x509"\nrdns = [', "subject", "order"),
        ('policy_oids = ["1.3', 'critical = true\npolicy_oids = ["1.3', "extensions",
         "critical"),
        ('email = "required"', 'email = "required"\ndns = "optional"', "san", "dns"),
        ('{ type = "C", value = "VN" }', '{ type = "C", value = "VN", multi = true }',
         "subject.rdns", "multi"),
    ],
)
def test_unknown_key_in_a_table_is_an_error_naming_file_table_and_key(
    old: str, new: str, table: str, key: str
) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_edit(old, new)
    message = str(exc.value)
    assert message.startswith(SOURCE)
    assert f"[{table}]" in message
    assert key in message


def test_unknown_key_in_name_constraints_is_an_error() -> None:
    text = shipped_profile_texts()["issuing-staff"][0]
    with pytest.raises(ProfileError, match=r"\[extensions\.name_constraints\].*dns"):
        parse_edit('email = ["{email_domain}"', 'dns = ["x"]\nemail = ["{email_domain}"',
                   text)


def test_misspelt_table_is_an_unknown_key() -> None:
    with pytest.raises(ProfileError, match=r"unknown key.*extension"):
        parse_edit("[extensions]", "[extension]\nfoo = 1\n[extensions]")


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ProfileError, match=r"site/staff\.toml: validity\.max_days is missing"):
        parse_edit("max_days = 1826", "")


def test_table_given_as_a_scalar_is_a_type_error() -> None:
    text = "validity = 3\n" + edit(staff_text(), "[validity]", "[validity_old]")
    with pytest.raises(ProfileError, match=r"site/staff\.toml: validity must be dict, not int"):
        parse_profile(text, SOURCE)


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ProfileError, match=r"site/staff\.toml: not valid TOML"):
        parse_profile(staff_text() + "\n[key\n", SOURCE)


# --- strict parsing: wrong types --------------------------------------------------------------

@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("default_days = 1095", 'default_days = "1095"', r"validity\.default_days must be int"),
        ("default_days = 1095", "default_days = true", r"default_days must be an integer"),
        ("default_days = 1095", "default_days = 1095.0", r"default_days must be int"),
        ('issuers = ["staff"]', 'issuers = "staff"', r"issuers must be list"),
        ('issuers = ["staff"]', "issuers = [1]", r"issuers must be a list of strings"),
        ('name = "staff"', "name = 7", r"name must be str"),
        ('key_usage = ["digitalSignature", "nonRepudiation"]',
         'key_usage = "digitalSignature"', r"extensions\.key_usage must be list"),
        ('policy_oids = ["1.3.6.1.4.1.32473.704.1.2.1"]',
         'policy_oids = ["1.3.6.1.4.1.32473.704.1.2.1"]\nextended_key_usage_critical = "yes"',
         r"extended_key_usage_critical must be bool"),
        ('{ type = "C", value = "VN" }', '"C=VN"', r"entries must be tables"),
        ('{ type = "C", value = "VN" }', '{ type = "C", value = 84 }', r"value must be str"),
    ],
)
def test_wrong_type_is_an_error_naming_file_and_key(old: str, new: str, expected: str) -> None:
    with pytest.raises(ProfileError, match=expected) as exc:
        parse_edit(old, new)
    assert str(exc.value).startswith(SOURCE)


@pytest.mark.parametrize("name", ["Staff", "staff_2", "2staff", "", "s" * 65])
def test_profile_name_must_be_a_lowercase_slug(name: str) -> None:
    with pytest.raises(ProfileError, match="lowercase"):
        parse_edit('name = "staff"', f'name = "{name}"')


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ProfileError, match="kind must be root, ca or end-entity"):
        parse_edit('kind = "end-entity"', 'kind = "leaf"')


# --- strict parsing: unknown names ------------------------------------------------------------

def test_unknown_attribute_type_is_refused() -> None:
    with pytest.raises(ProfileError, match="unknown attribute type 'E'"):
        parse_edit('{ type = "C", value = "VN" }', '{ type = "E", value = "{email}" }')


def test_unknown_input_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"\[inputs\] unknown input 'nickname'"):
        parse_edit('optional = ["dob"', 'optional = ["nickname", "dob"')


def test_template_with_unknown_field_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"unknown field.*nickname"):
        parse_edit('value = "{name}"', 'value = "{nickname}"')


@pytest.mark.parametrize("template", ["{}", "{0}", "{name.upper}", "{name"])
def test_malformed_template_is_refused(template: str) -> None:
    with pytest.raises(ProfileError, match="template"):
        parse_edit('value = "{name}"', f'value = "{template}"')


def test_subject_using_a_field_that_is_not_an_input_is_refused() -> None:
    with pytest.raises(ProfileError, match="subject UID uses tax_code"):
        parse_edit('value = "CCCD:{id}"', 'value = "MST:{tax_code}"')


def test_unknown_key_usage_is_refused() -> None:
    with pytest.raises(ProfileError, match="unknown key usage 'signing'"):
        parse_edit('key_usage = ["digitalSignature"', 'key_usage = ["signing"')


def test_unknown_extended_key_usage_is_refused() -> None:
    with pytest.raises(ProfileError, match="unknown extended key usage 'pdfSigning'"):
        parse_edit('"documentSigning"]', '"pdfSigning"]')


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"\[key\].*rsa-1024"):
        parse_edit('allowed = ["ec-p256"', 'allowed = ["rsa-1024", "ec-p256"')


def test_default_key_outside_allowed_is_refused() -> None:
    with pytest.raises(ProfileError, match="default ed25519 is not in allowed"):
        parse_edit('default = "ec-p256"', 'default = "ed25519"')


# --- policy OIDs ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "oid",
    ["2.25.329800735698586629295641978511506172918", "1.3.6.1.4.1.268435456",
     "1.3.6.1.4.1.32473.4294967296"],
)
def test_policy_oid_with_arc_of_2_to_the_28_or_more_is_refused(oid: str) -> None:
    with pytest.raises(ProfileError, match="2\\^28"):
        parse_edit('"1.3.6.1.4.1.32473.704.1.2.1"', f'"{oid}"')


def test_policy_oid_with_largest_allowed_arc_is_accepted() -> None:
    text = edit(staff_text(), '"1.3.6.1.4.1.32473.704.1.2.1"', '"1.3.6.1.4.1.268435455"')
    assert parse_profile(text, SOURCE).policy_oids == ("1.3.6.1.4.1.268435455",)


@pytest.mark.parametrize("oid", ["1.3.6.x", "3.1.2", "1", "1..2", "1.02.3", " 1.2.3"])
def test_malformed_policy_oid_is_refused(oid: str) -> None:
    with pytest.raises(ProfileError, match="not an object identifier"):
        parse_edit('"1.3.6.1.4.1.32473.704.1.2.1"', f'"{oid}"')


# --- consistency rules ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("default", "maximum"), [(0, 10), (11, 10), (-1, 10)]
)
def test_validity_needs_default_between_one_and_max(default: int, maximum: int) -> None:
    text = edit(staff_text(), "default_days = 1095", f"default_days = {default}")
    with pytest.raises(ProfileError, match="default_days <= max_days"):
        parse_edit("max_days = 1826", f"max_days = {maximum}", text)


def test_end_entity_with_key_cert_sign_is_refused() -> None:
    with pytest.raises(ProfileError, match="end-entity profile cannot have keyCertSign"):
        parse_edit('key_usage = ["digitalSignature"', 'key_usage = ["keyCertSign"')


def test_ca_profile_without_key_cert_sign_is_refused() -> None:
    text = shipped_profile_texts()["issuing-citizen"][0]
    with pytest.raises(ProfileError, match="CA profile needs keyCertSign"):
        parse_edit('key_usage = ["keyCertSign", "cRLSign"]', 'key_usage = ["cRLSign"]', text)


def test_path_length_on_end_entity_is_refused() -> None:
    with pytest.raises(ProfileError, match="path_length is only for CA profiles"):
        parse_edit("[extensions]", "[extensions]\npath_length = 0")


def test_negative_path_length_is_refused() -> None:
    text = shipped_profile_texts()["issuing-citizen"][0]
    with pytest.raises(ProfileError, match="path_length"):
        parse_edit("path_length = 0", "path_length = -1", text)


def test_ocsp_nocheck_without_ocsp_signing_is_refused() -> None:
    with pytest.raises(ProfileError, match="ocsp_nocheck"):
        parse_edit("[extensions]", "[extensions]\nocsp_nocheck = true")


def test_san_email_without_email_input_is_refused() -> None:
    text = edit(staff_text(), '"unit", "email"]', '"unit"]')
    with pytest.raises(ProfileError, match=r"\[san\] email needs 'email'"):
        parse_profile(text, SOURCE)


def test_unknown_san_requirement_is_refused() -> None:
    with pytest.raises(ProfileError, match="required, optional or forbidden"):
        parse_edit('email = "required"', 'email = "always"')


def test_root_profile_with_issuers_is_refused() -> None:
    text = shipped_profile_texts()["root"][0]
    with pytest.raises(ProfileError, match="root profile has no issuers"):
        parse_edit("issuers = []", 'issuers = ["staff"]', text)


def test_non_root_profile_without_issuers_is_refused() -> None:
    with pytest.raises(ProfileError, match="issuers must name at least one CA"):
        parse_edit('issuers = ["staff"]', "issuers = []")


# --- site profiles ----------------------------------------------------------------------------

def test_site_profile_overrides_the_shipped_one(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    path = site / "staff.toml"
    path.write_text(edit(staff_text(), "default_days = 1095", "default_days = 730"),
                    encoding="utf-8")
    catalogue = load_catalogue(site)
    staff = catalogue.get("staff")
    assert staff.default_days == 730
    assert staff.source == str(path)
    assert catalogue.get("citizen").source == "profiles/citizen.toml"
    assert load_catalogue().get("staff").default_days == 1095


def test_site_profile_can_add_a_new_profile(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "staff-short.toml").write_text(
        edit(staff_text(), 'name = "staff"', 'name = "staff-short"'), encoding="utf-8")
    catalogue = load_catalogue(site)
    assert "staff-short" in catalogue.names()
    assert "staff" in catalogue.names()


def test_site_profiles_in_the_home_are_used_by_open_kyso(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "citizen.toml").write_text(
        edit(shipped_profile_texts()["citizen"][0], "default_days = 365", "default_days = 90"),
        encoding="utf-8")
    ctx = open_kyso(load_settings(home=home, environ=FAST_KDF),
                    clock=FrozenClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), actor="admin:t")
    try:
        assert ctx.profiles.get("citizen").default_days == 90
    finally:
        ctx.close()


def test_profile_whose_file_name_differs_from_its_name_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    path = site / "officials.toml"
    path.write_text(staff_text(), encoding="utf-8")
    with pytest.raises(ProfileError, match="differs from the file name") as exc:
        load_catalogue(site)
    assert str(path) in str(exc.value)


def test_invalid_site_profile_names_its_path(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    path = site / "staff.toml"
    path.write_text('colour = "red"\n' + staff_text(), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"unknown key.*colour") as exc:
        load_catalogue(site)
    assert str(exc.value).startswith(str(path))


def test_site_profile_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "staff.toml").write_bytes(staff_text().encode("utf-16"))
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_catalogue(site)


def test_missing_site_directory_means_shipped_profiles_only(tmp_path: Path) -> None:
    assert load_catalogue(tmp_path / "nowhere").names() == sorted(SHIPPED)


def test_non_toml_files_in_the_site_directory_are_ignored(tmp_path: Path) -> None:
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "README.md").write_text("notes", encoding="utf-8")
    (site / "staff.toml.bak").write_text("garbage", encoding="utf-8")
    assert load_catalogue(site).get("staff").source == "profiles/staff.toml"


def test_url_templates_may_not_use_holder_inputs() -> None:
    from kyso.pki.profiles import shipped_profile_texts

    text, _ = shipped_profile_texts()["staff"]
    bad = text.replace('ocsp_url = "{base_url}/ocsp/{issuer}"',
                       'ocsp_url = "{base_url}/ocsp/{issuer}/{name}"')
    with pytest.raises(ProfileError, match="may only use"):
        parse_profile(bad, "staff.toml")
