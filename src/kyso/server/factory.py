"""The app of one ``kyso serve --workers N`` worker process.

uvicorn starts each worker in a fresh process and builds its app from an import string, so the
parent hands everything over in environment variables that only this user's processes can read:
the home (``KYSO_HOME``), the database URL, the issuer, the limits, the log level and the
passphrases (the same variables an operator may set). Each worker logs as the parent does (JSON
lines on stderr at the level of ``--log-level``) and opens its own store connection pool; the
audit log is shared through its file lock, the database through transactions.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI

from kyso.audit.logging import configure_logging
from kyso.config import ENV_CA_PASSPHRASE, ENV_TOKEN_KEY_PASSPHRASE, load_settings, passphrase_from_env
from kyso.server.app import create_app
from kyso.server.options import DEFAULT_ISSUER, DEFAULT_MAX_PDF_BYTES

ENV_ISSUER = "KYSO_SERVE_ISSUER"
ENV_MAX_PDF_BYTES = "KYSO_SERVE_MAX_PDF_BYTES"
ENV_LOG_LEVEL = "KYSO_SERVE_LOG_LEVEL"


def worker_app() -> FastAPI:
    """``create_app`` from the environment the ``kyso serve`` parent set."""
    configure_logging(level=os.environ.get(ENV_LOG_LEVEL, "info"), json=True, stream=sys.stderr)
    return create_app(load_settings(),
                      key_passphrase=passphrase_from_env(ENV_TOKEN_KEY_PASSPHRASE),
                      ca_passphrase=passphrase_from_env(ENV_CA_PASSPHRASE),
                      issuer=os.environ.get(ENV_ISSUER, DEFAULT_ISSUER),
                      max_pdf_bytes=int(os.environ.get(ENV_MAX_PDF_BYTES,
                                                       DEFAULT_MAX_PDF_BYTES)))
