"""Helpers of the tests that run a real server on loopback (imported by name from any test
folder: tests/ is on sys.path, as for ``conftest``): a free loopback socket, uvicorn serving an
app on it in a thread, and the home such a server runs on (the real clock; optionally a CA
whose base URL is the server's own, so the OCSP, CRL and issuer addresses inside its
certificates point at it)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from conftest import FAST_KDF, PASSPHRASE
from kyso.clock import SystemClock
from kyso.config import load_settings
from kyso.context import Kyso, open_kyso
from kyso.pki.authority import init_ca
from kyso.pki.keys import KeyType


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1 (the caller closes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(app: Any, sock: socket.socket, **config: Any) -> Iterator[uvicorn.Server]:
    """uvicorn serving ``app`` on ``sock`` in a background thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # wait for start-up (not a timing assertion)
            if server.started:
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def server_home(home: Path, database_url: str | None = None, *,
                ca_base_url: str | None = None) -> Iterator[Kyso]:
    """The context of a live server's home on the real clock (its events by ``server``),
    closed when the block ends. With ``ca_base_url``, ``kyso ca init`` has run (EC P-384,
    passphrase ``conftest.PASSPHRASE``) with that base URL."""
    kyso = open_kyso(load_settings(home=home, database_url=database_url, environ=FAST_KDF),
                     clock=SystemClock(), actor="server", source="server")
    try:
        if ca_base_url is not None:
            init_ca(kyso, passphrase=PASSPHRASE, org="UBND tỉnh Thái Nguyên",
                    province="thai-nguyen", key_type=KeyType.EC_P384, base_url=ca_base_url)
        yield kyso
    finally:
        kyso.close()
