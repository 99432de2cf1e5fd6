"""The test certificate authority: hierarchy, Vietnamese profiles, issuance, revocation, CRL."""
