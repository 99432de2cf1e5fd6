"""Real kyso servers on loopback: the independent-client tests' server in-process (uvicorn over
TLS with the demo's throw-away CA and server certificate for 127.0.0.1, the real clock, a
level-2 citizen with a TOTP credential and a confidential client; the socket, uvicorn and the
server's home are tests/loopback_support.py's, shared with tests/signing), and ``kyso serve``
as a real process (:func:`start_serve`), as an operator runs it."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from server_support import Citizen

from kyso.demo_web import loopback_tls_files

KYSO = str(Path(sys.executable).with_name("kyso"))


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


# --- kyso serve as a process ----------------------------------------------------------------


def free_port() -> int:
    """A loopback port free right now (for a process that binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """A running ``kyso serve``: its base URL and what it wrote (stderr through a pipe, or
    stdout and stderr into ``log``)."""

    def __init__(self, proc: subprocess.Popen[str], base: str, log: Path | None = None) -> None:
        self.proc, self.base, self.log = proc, base, log

    def _output(self) -> str:
        """What the process wrote (once it has ended)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return self.proc.stderr.read() if self.proc.stderr else ""

    def wait_ready(self, verify: bool | ssl.SSLContext = True, *, path: str = "/health",
                   within: float = 90) -> None:
        """Until ``path`` answers 200; AssertionError with its output if the process ends
        first, or after ``within`` seconds (start-up on a loaded machine, not a timing check)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kyso serve ({self.base}) exited {self.proc.returncode}: "
                                     f"{self._output()[-2000:]}")
            try:
                if httpx.get(f"{self.base}{path}", verify=verify, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"kyso serve ({self.base}) did not start")

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def logged(self) -> str:
        """What the process has written into its ``log`` file so far."""
        assert self.log is not None, "start with log= to read the output while it runs"
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, within: float = 120) -> None:
        """Until ``text`` appears in the ``log`` file; AssertionError with the output if the
        process ends first or after ``within`` seconds."""
        assert self.log is not None, "wait_for reads the log file: start with log="
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in self._output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"kyso serve exited {self.proc.returncode}: "
                                     f"{self._output()[-2000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear: {self._output()[-2000:]}")

    def stop(self) -> tuple[int, str]:
        """SIGTERM (SIGKILL after 30 s); the exit code and what it wrote."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, self._output() if self.log is not None else err


def start_serve(port: int, *args: str, env: Mapping[str, str], scheme: str = "http",
                log: Path | None = None) -> ServeProcess:
    """``kyso serve --port PORT ARGS`` with exactly ``env`` as its environment, stdin closed;
    its output piped (text), or into the file ``log``."""
    command = [KYSO, "serve", "--port", str(port), *args]
    if log is None:
        proc = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    else:
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=dict(env), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, text=True)
    return ServeProcess(proc, f"{scheme}://127.0.0.1:{port}", log)
