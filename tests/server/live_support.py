"""A real kyso server on loopback for the independent-client tests: uvicorn over TLS (the
demo's throw-away CA and server certificate for 127.0.0.1), the real clock, a
level-2 citizen with a TOTP credential and a confidential client."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from server_support import Citizen

from kyso.demo_web import loopback_tls_files


@dataclass(frozen=True)
class LiveServer:
    issuer: str
    ca_file: Path
    citizen: Citizen
    client_secret: str = field(repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files for 127.0.0.1: the demo's
    throw-away TLS set."""
    return loopback_tls_files(folder)


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
