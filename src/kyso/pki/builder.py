"""Building and signing a certificate from a profile. Pure: no store, no files, no clock reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ObjectIdentifier

from kyso.errors import ValidityError
from kyso.pki.keys import PrivateKey, PublicKey, signature_hash
from kyso.pki.profiles import (
    ATTRIBUTES,
    EXTENDED_KEY_USAGES,
    Profile,
    ProfileKind,
    render,
)


@dataclass(frozen=True)
class Issuer:
    """A CA able to sign: its name in URLs, certificate and unlocked key."""

    name: str
    certificate: x509.Certificate
    key: PrivateKey

    def __repr__(self) -> str:
        return f"Issuer({self.name!r}, key=<hidden>)"


def validity_window(
    profile: Profile, now: dt.datetime, days: int | None, issuer_not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """``(not_before, not_after)``; refuses more than the profile's maximum or than the issuer
    lives."""
    requested = profile.default_days if days is None else days
    if requested <= 0:
        raise ValidityError("validity must be at least one day")
    if requested > 36525:
        raise ValidityError(f"validity of {requested} days is more than 100 years")
    if requested > profile.max_days:
        raise ValidityError(
            f"validity of {requested} days exceeds the {profile.name} profile's maximum "
            f"of {profile.max_days} days"
        )
    not_before = now.replace(microsecond=0)
    not_after = not_before + dt.timedelta(days=requested)
    if issuer_not_after is not None and not_after > issuer_not_after:
        if days is not None:
            raise ValidityError(
                f"validity of {requested} days would outlive the issuing CA "
                f"(valid until {issuer_not_after.date().isoformat()})"
            )
        not_after = issuer_not_after  # the default shortens quietly to the issuer's end
    return not_before, not_after


def _key_usage(names: frozenset[str]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digitalSignature" in names,
        content_commitment="nonRepudiation" in names,
        key_encipherment="keyEncipherment" in names,
        data_encipherment="dataEncipherment" in names,
        key_agreement="keyAgreement" in names,
        key_cert_sign="keyCertSign" in names,
        crl_sign="cRLSign" in names,
        encipher_only=False,
        decipher_only=False,
    )


def build_certificate(
    *,
    profile: Profile,
    subject: x509.Name,
    public_key: PublicKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: Issuer | None,
    self_key: PrivateKey | None = None,
    context: dict[str, str],
    email: str | None = None,
) -> x509.Certificate:
    """Sign a certificate for ``public_key``. ``issuer`` is None only for a self-signed root,
    which signs with ``self_key``."""
    if issuer is None:
        if profile.kind is not ProfileKind.ROOT or self_key is None:
            raise ValueError("only a root profile is self-signed")
        issuer_name, signing_key = subject, self_key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self_key.public_key())
    else:
        issuer_name, signing_key = issuer.certificate.subject, issuer.key
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length),
            critical=True,
        )
        .add_extension(_key_usage(profile.key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([EXTENDED_KEY_USAGES[e] for e in profile.extended_key_usage]),
            critical=profile.extended_key_usage_critical,
        )
    if email is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
    if profile.policy_oids:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier(o), None) for o in profile.policy_oids]
            ),
            critical=False,
        )
    if profile.crl_distribution_point:
        url = render(profile.crl_distribution_point, context)
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
            ),
            critical=False,
        )
    access = []
    if profile.ocsp_url:
        access.append(x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier(render(profile.ocsp_url, context)),
        ))
    if profile.ca_issuers_url:
        access.append(x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(render(profile.ca_issuers_url, context)),
        ))
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if profile.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    if profile.name_constraints is not None:
        nc = profile.name_constraints
        permitted: list[x509.GeneralName] = [
            x509.RFC822Name(render(e, context)) for e in nc.email
        ]
        for rdns in nc.directory:
            permitted.append(x509.DirectoryName(x509.Name([
                x509.RelativeDistinguishedName([
                    x509.NameAttribute(ATTRIBUTES[r.type], render(r.value, context))
                ]) for r in rdns
            ])))
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
    return builder.sign(signing_key, signature_hash(signing_key))
