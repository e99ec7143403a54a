"""A real `clf serve` process on a loopback port, for tests that need the whole server as users run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import requests

from tests.conftest import REPO
from tests.helpers.loopback import free_port

_BIND_FAILED = "error while attempting to bind"


class ServeProcess:
    """Runs ``python -m clf serve ARGS... --registry REGISTRY --port P`` while the context is open.

    The port is probed free, then bound by the child only after its imports; another process can take it in between,
    so a start that fails to bind is retried on a new port. The log goes to a file, not a pipe: a pipe nobody reads
    fills up under load and blocks every thread of the server that logs.

    Args:
        registry: the registry folder.
        args: further ``clf serve`` flags, given first, so that the registry and port override a ``--config``.
        env: extra environment variables.
        startup_timeout: seconds to wait for ``/health``.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started.
        stderr: the process's log once stopped.
    """

    def __init__(
        self,
        registry: str | Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.registry, self.args = str(registry), list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr = ""
        self.returncode: int | None = None

    def __enter__(self) -> ServeProcess:
        for _ in range(3):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "clf",
                "serve",
                *self.args,
                "--registry",
                self.registry,
                "--port",
                str(port),
            ]
            self._log = tempfile.TemporaryFile("w+", encoding="utf-8")
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._log, text=True, env=self.env
            )
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_until_up():
                return self
            self.process.wait(timeout=30)
            stderr = self._read_log()
            if _BIND_FAILED not in stderr:
                raise AssertionError(f"clf serve exited with {self.process.returncode}:\n{stderr[-4000:]}")
        raise AssertionError("clf serve could not bind a port in three tries")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.stderr = self._read_log()
        self.returncode = self.process.returncode

    def _read_log(self) -> str:
        self._log.seek(0)
        text = self._log.read()
        self._log.close()
        return text

    def _wait_until_up(self) -> bool:
        """True once /health answers; False when the process exited first."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                time.sleep(0.2)
        self.process.kill()
        raise AssertionError(f"clf serve did not answer /health within {self.startup_timeout:.0f} s")
