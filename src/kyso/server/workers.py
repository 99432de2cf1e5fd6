"""``kyso serve --workers N``: N uvicorn worker processes, each listening on its own socket bound
with ``SO_REUSEPORT`` to the same address, so that the kernel spreads new connections over the
workers (by a hash of each connection's addresses).

uvicorn's own supervisor hands one shared socket to every worker, and a worker's event loop
accepts every connection that is waiting when it wakes up. A burst of connections (a load
balancer opening its pool, a client's keep-alive pool) could therefore land on one worker and
leave the others idle for the life of those connections: with two workers, 2 of 8 runs of 32
connections put (almost) all of them on one worker, and OCSP answered 1,500/s instead of 3,400/s.

The supervisor (:class:`Workers`) keeps uvicorn's worker side (:class:`uvicorn.supervisors.
multiprocess.Process`: a spawned process, a health-check pipe): a worker that dies or stops
answering is replaced on the same socket (connections that arrive meanwhile wait in that
socket's queue), unless it failed while starting (then the service stops: the next one would
fail the same way); SIGHUP replaces the workers one by one, each after its replacement is ready;
SIGINT and SIGTERM stop them gracefully.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from kyso.errors import ConfigError

__all__ = ["Workers", "listening_sockets"]

_log = structlog.get_logger("kyso.server")


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host``:``port`` with ``SO_REUSEPORT`` (not listening yet:
    each worker listens on its own). :class:`ConfigError` if the address is taken — also by
    another server that uses ``SO_REUSEPORT``, which would otherwise silently share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:  # refuses a port in use
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


class Workers:
    """One worker process per socket, kept running until SIGINT or SIGTERM."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.processes: list[Process] = []
        self.stopping = threading.Event()
        self._restart = threading.Event()
        # how long a new worker may take to start: opening the store and unlocking the keys
        # takes seconds (uvicorn's health-check timeout, 5 s, is for an answer to a ping)
        self.startup_timeout = config.timeout_worker_healthcheck * 12

    def _start(self, index: int) -> Process:
        process = Process(self.config, [self.sockets[index]])
        process.start()
        return process

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._restart.set()
        else:
            self.stopping.set()

    def run(self, on_ready: Callable[[], None] | None = None) -> bool:
        """Serve until stopped (``on_ready`` is called once every worker answers that it has
        started); False when a worker failed while starting."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._signal)
        self.processes = [self._start(i) for i in range(len(self.sockets))]
        failed = False
        ready = all(p.wait_until_ready(self.startup_timeout, self.stopping)
                    for p in self.processes)
        if ready and on_ready is not None:
            on_ready()
        while not self.stopping.wait(0.5):
            if self._restart.is_set():
                self._restart.clear()
                self.restart_all()
            if not self.keep_alive():
                failed = True
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join()
        for sock in self.sockets:
            sock.close()
        return not failed

    def keep_alive(self) -> bool:
        """Replace each worker that died or does not answer; False (and stopping) when one
        failed while starting."""
        for index, process in enumerate(self.processes):
            if self.stopping.is_set():
                break
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                _log.error("worker_failed_to_start", pid=process.pid)
                self.stopping.set()
                return False
            _log.warning("worker_replaced", pid=process.pid, exit_code=process.exitcode)
            self.processes[index] = self._start(index)
        return True

    def restart_all(self) -> None:
        """Replace each worker by a new one on its socket, once the new one is ready."""
        for index, old in enumerate(self.processes):
            if self.stopping.is_set():
                return
            new = self._start(index)
            if not new.wait_until_ready(self.startup_timeout, self.stopping):
                new.kill()
                new.join()
                _log.error("worker_restart_aborted", pid=new.pid, keeping=old.pid)
                return
            old.terminate()
            old.join()
            self.processes[index] = new
