"""VNeID-style electronic identification: enrolment, login, lockout, OIDC, tokens."""
