"""The sockets of ``kyso serve --workers N`` (kyso.server.workers): one per worker on one port,
and a clear refusal of a port in use. The supervisor itself runs in test_server_serve_command."""

from __future__ import annotations

import socket

import pytest

from kyso.errors import ConfigError
from kyso.server.workers import listening_sockets


def test_each_worker_gets_its_own_socket_on_the_same_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sockets = listening_sockets("127.0.0.1", port, 3)
    try:
        assert len({s.fileno() for s in sockets}) == 3
        assert {s.getsockname() for s in sockets} == {("127.0.0.1", port)}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        assert all(s.get_inheritable() for s in sockets)
        for sock in sockets:
            sock.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # one of them accepts it
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_in_use_is_refused_naming_the_address(reuse_port: bool) -> None:
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*in use"):
            listening_sockets("127.0.0.1", port, 2)


def test_an_address_that_is_not_local_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cannot listen on 192\.0\.2\.1:"):
        listening_sockets("192.0.2.1", 8080, 2)  # TEST-NET-1: not an address of this machine
