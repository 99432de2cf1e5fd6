"""PDF dossier signing and verification (PAdES). Built on the CA of :mod:`kyso.pki`."""
