"""``kyso ca``, ``kyso crl`` and ``kyso profile`` (``kyso cert`` is in cert_commands): parse,
one library call, render."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.x509.oid import NameOID

from kyso.cliutil import (
    App,
    ca_passphrase,
    check_new_files,
    emit_fields,
    emit_json,
    emit_table,
    pass_app,
    passphrase_file_option,
)
from kyso.clock import vn_iso
from kyso.config import check_new_passphrase
from kyso.errors import PkiError, UsageError
from kyso.files import atomic_write
from kyso.pki import authority, crl
from kyso.pki.cert_commands import cert
from kyso.pki.keys import KeyType
from kyso.pki.profiles import load_catalogue

KEY_TYPES = [k.value for k in KeyType]


def register(root: click.Group) -> None:
    for group in (ca, cert, crl_group, profile):  # cert lives in cert_commands
        root.add_command(group)


# --- kyso ca -------------------------------------------------------------------------------

@click.group()
def ca() -> None:
    """Create and inspect the CA hierarchy (root, staff, citizen, services)."""


@ca.command("init", epilog="""\b
Examples:
  kyso ca init --org "UBND tỉnh Thái Nguyên" --province thai-nguyen
  kyso ca init --org "UBND tỉnh Hưng Yên" --province hung-yen --key-type ec-p384 \\
      --base-url http://pki.hungyen.gov.vn --passphrase-file ca.pass""")
@click.option("--org", required=True, help='Organisation, e.g. "UBND tỉnh Thái Nguyên" (O=).')
@click.option("--province", required=True, help="Province slug: thai-nguyen, hung-yen, tay-ninh…")
@click.option("--key-type", type=click.Choice(["rsa-4096", "ec-p384"]), default="rsa-4096",
              show_default=True, help="Key type of the root and issuing CAs.")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True,
              help="Where CRLs, CA certificates and OCSP are served (written into every "
                   "certificate).")
@click.option("--email-domain", help="E-mail domain of the staff name constraints "
                                     "(default <province>.gov.vn).")
@passphrase_file_option
@pass_app
def ca_init(app: App, org: str, province: str, key_type: str, base_url: str,
            email_domain: str | None, passphrase_file: Path | None) -> None:
    """Create root, issuing CAs and service certificates (OCSP, TSA, audit signer).

    Keys are encrypted at rest under the CA passphrase (files 0600). An existing CA is
    never overwritten.
    """
    # Everything is checked before the home gets its database: a refused init leaves nothing.
    authority.plan_ca(org=org, province=province, base_url=base_url, email_domain=email_domain)
    passphrase = check_new_passphrase(ca_passphrase(passphrase_file, confirm=True),
                                      "CA passphrase")
    kyso = app.open(create=True)
    if authority.ca_exists(kyso):
        raise PkiError(f"a CA already exists in {kyso.settings.home}; it is never overwritten")
    result = authority.init_ca(kyso, passphrase=passphrase, org=org, province=province,
                               key_type=KeyType(key_type), base_url=base_url,
                               email_domain=email_domain)
    if app.json:
        emit_json(result.to_dict())
        return
    click.echo(f"Created the CA of {result.settings.org} ({result.settings.province_name}) "
               f"in {kyso.settings.home}")
    _render_hierarchy(result.authorities, result.services)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)


def _render_hierarchy(authorities: tuple[authority.AuthorityInfo, ...] | list[
        authority.AuthorityInfo], services: tuple[authority.AuthorityInfo, ...] | list[
        authority.AuthorityInfo]) -> None:
    rows = []
    for a in list(authorities) + list(services):
        d = a.to_dict()
        cn = a.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        rows.append([a.name, a.parent or "(self)", d["key"], cn[0].value if cn else "",
                     d["not_after"][:10], d["sha256"][:16] + "…"])
    emit_table(["name", "issuer", "key", "common name", "valid until", "sha256"], rows)


@ca.command("show")
@pass_app
def ca_show(app: App) -> None:
    """Print the hierarchy: subject, key, validity and SHA-256 fingerprints."""
    kyso = app.kyso
    settings = authority.load_settings(kyso)
    auths, services = authority.list_authorities(kyso), authority.list_services(kyso)
    if app.json:
        emit_json({"org": settings.org, "province": settings.province_name,
                   "base_url": settings.base_url, "email_domain": settings.email_domain,
                   "authorities": [a.to_dict() for a in auths],
                   "services": [s.to_dict() for s in services]})
        return
    click.echo(f"{settings.org} — {settings.province_name} — {settings.base_url}")
    for a in auths + services:
        d = a.to_dict()
        emit_fields([("subject", d["subject"]), ("issuer", a.parent or "(self-signed)"),
                     ("profile", a.profile), ("key", d["key"]), ("serial", d["serial"]),
                     ("valid", f"{d['not_before']} → {d['not_after']}"),
                     ("sha256", d["sha256"])], title=a.name)


@ca.command("export-chain", epilog="""\b
Examples:
  kyso ca export-chain --ca staff -o staff-chain.pem
  kyso ca export-chain --ca root > root.pem""")
@click.option("--ca", "ca_name", default="staff", show_default=True,
              type=click.Choice(list(authority.CA_NAMES)), help="Start of the chain.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@pass_app
def ca_export_chain(app: App, ca_name: str, out: Path | None) -> None:
    """Write the PEM chain from a CA up to the root (root last)."""
    pem = authority.chain_pem(app.kyso, ca_name)
    if out is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        check_new_files([out])
        atomic_write(out, pem, exclusive=True)
        if not app.json:
            click.echo(f"wrote {out}")


# --- kyso profile --------------------------------------------------------------------------

@click.group()
def profile() -> None:
    """Certificate profiles (data files; site overrides in <home>/profiles/)."""


@profile.command("list")
@pass_app
def profile_list(app: App) -> None:
    """List the profiles (shipped, and site overrides in <home>/profiles/)."""
    cat = load_catalogue(app.settings.profiles_dir)
    items = [cat.get(n) for n in cat.names()]
    if app.json:
        emit_json([p.to_dict() for p in items])
        return
    emit_table(["name", "kind", "issuers", "keys", "days (default/max)", "description"], [
        [p.name, p.kind.value, ",".join(p.issuers) or "(self)",
         ",".join(k.value for k in p.allowed_keys), f"{p.default_days}/{p.max_days}",
         p.description] for p in items])


@profile.command("show")
@click.argument("name")
@pass_app
def profile_show(app: App, name: str) -> None:
    """Show one profile in full."""
    p = load_catalogue(app.settings.profiles_dir).get(name)
    d = p.to_dict()
    if app.json:
        emit_json(d)
        return
    def text(value: object) -> str:
        if isinstance(value, list):
            return ", ".join(map(str, value))
        if isinstance(value, dict):
            return "; ".join(f"{a}: {text(b)}" for a, b in value.items())
        return "" if value is None else str(value)

    emit_fields([(k, text(v)) for k, v in d.items()], title=p.name)


# --- kyso crl ------------------------------------------------------------------------------

@click.group("crl")
def crl_group() -> None:
    """Certificate revocation lists."""


@crl_group.command("publish", epilog="""\b
Examples:
  kyso crl publish --ca staff
  kyso crl publish --ca all --out-dir /var/www/crl""")
@click.option("--ca", "ca_name", default="all", show_default=True,
              type=click.Choice(["all", *authority.CA_NAMES]))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Default <home>/crl.")
@passphrase_file_option
@pass_app
def crl_publish(app: App, ca_name: str, out_dir: Path | None, passphrase_file: Path | None
                ) -> None:
    """Sign and write a v2 CRL (DER <ca>.crl and PEM <ca>.crl.pem)."""
    kyso = app.kyso
    ca_obj = authority.CertificateAuthority(kyso, ca_passphrase(passphrase_file))
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"directory {out_dir} does not exist")
    names = list(authority.CA_NAMES) if ca_name == "all" else [ca_name]
    results = [crl.publish_crl(kyso, ca_obj, n, out_dir) for n in names]
    if app.json:
        emit_json([r.to_dict() for r in results])
        return
    for r in results:
        click.echo(f"{r.ca}: CRL #{r.number}, {r.entries} entr{'y' if r.entries == 1 else 'ies'}"
                   f", next update {vn_iso(r.next_update)} → {r.der_path}")
