"""kyso — the security layer of Vietnamese provincial e-government.

A test CA with Vietnamese certificate profiles (:mod:`kyso.pki`), PDF dossier signing
(:mod:`kyso.signing`), a VNeID-style e-ID simulator (:mod:`kyso.authn`), a tamper-evident
audit log (:mod:`kyso.audit`) and security-level checks (:mod:`kyso.policies`).
"""

__version__ = "0.1.0"
