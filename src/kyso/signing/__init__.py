"""PDF dossier signing and verification (PAdES). Built on the CA of :mod:`kyso.pki`."""

import logging

# pyHanko and its certificate validator log warnings with tracebacks and full certificate
# subjects, which carry personal ID numbers (serialNumber=IDCVN-…, UID=CCCD:…). Their findings
# reach the user through our reports instead, so their loggers stay silent.
for _name in ("pyhanko", "pyhanko_certvalidator", "fontTools"):
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)
