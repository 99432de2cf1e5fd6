"""The test certificate authority: hierarchy, Vietnamese profiles, issuance, revocation, CRL."""

import warnings

# RFC 5280 bounds attribute lengths in characters; cryptography counts UTF-8 bytes for CN and
# warns when it parses an ordinary 40–64 character Vietnamese name. kyso checks the character
# bound itself (kyso.pki.subjects), so this one warning is noise.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
