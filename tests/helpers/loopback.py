"""Loopback plumbing shared by the test servers: a free port, and the start/stop of a threaded HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS may hand it out again once closed, so bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port held bound but not listening while the context is open: every connection to it is refused,
    and no other process can start listening on it meanwhile (as it could on a port probed, then released)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


class LoopbackHTTPServer:
    """Serves `handler_class` on a free 127.0.0.1 port from a daemon thread while started.

    Subclasses name their server and handler classes; the server gets the instance as ``app``, so handlers reach
    it as ``self.server.app``. `_stopping` is set while stopping, to cut deliberate delays short.
    """

    server_class: ClassVar[type[ThreadingHTTPServer]]
    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "loopback-http"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Binds a free loopback port and serves from a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError(f"the {self.thread_name} is already running")
        self._stopping.clear()
        self._httpd = self.server_class(("127.0.0.1", 0), self.handler_class)
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, cuts delayed or hanging answers short and joins the serving thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins non-daemon handler threads
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: when the server is not running.
        """
        if self._httpd is None:
            raise RuntimeError(f"the {self.thread_name} is not running; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"
