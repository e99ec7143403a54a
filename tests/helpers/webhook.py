"""A loopback HTTP receiver that stands in for a Slack incoming webhook (or any JSON webhook) in tests.

Example::

    with WebhookReceiver() as hook:
        hook.respond_with(500)  # the next POST answers 500, the ones after it 200
        alerts = AlertManager(slack_webhook=hook.url, backoff_seconds=0)
        alerts.send("Deployed", "v1.3.0 is live")
        assert [r.status for r in hook.requests] == [500, 200]
        assert hook.payloads == [{"text": ":information_source: *[clf] Deployed*\\nv1.3.0 is live"}]

Every request is recorded, whatever it was answered. A 200 answer has Slack's body, ``ok``. For code that posts
from a background thread, `wait_for` blocks until enough requests have arrived instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.loopback import LoopbackHTTPServer

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/services/T0000000/B0000000/testsecret"
"""The path `WebhookReceiver.url` points at, shaped like a Slack webhook's (whose path is its secret)."""


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the receiver handled, recorded as it arrives (before any delay and before the answer)."""

    arrived: float
    """`time.monotonic()` when the request arrived."""
    method: str
    """``POST``, or whatever else the client sent."""
    path: str
    """The URL path, query included."""
    headers: dict[str, str]
    """The request headers (the last value of a repeated one)."""
    body: bytes
    """The raw body."""
    status: int | None
    """The status it is answered with; None when `WebhookReceiver.stop` cut its delay short and it got no answer.
    A client that timed out during a delay never reads the status, but it is recorded all the same."""
    delay: float
    """Seconds its answer was held back."""

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError):
            return None


@dataclass(frozen=True)
class _Plan:
    status: int
    delay: float
    retry_after: str | None


class WebhookReceiver(LoopbackHTTPServer):
    """Records HTTP requests on ``127.0.0.1`` from a daemon thread and answers them as told.

    Args:
        delay_seconds: how long every answer waits by default (`delay_next` sets it for single requests); `stop`
            ends any wait at once, so a slow receiver never holds up the end of a test.
    """

    thread_name = "webhook receiver"

    def __init__(self, *, delay_seconds: float = 0.0) -> None:
        super().__init__()
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must be >= 0, got {delay_seconds}")
        self.delay_seconds = delay_seconds
        self._plans: deque[_Plan] = deque()
        self._log: list[ReceivedRequest] = []
        self._changed = threading.Condition()

    @property
    def url(self) -> str:
        """The webhook URL, ``http://127.0.0.1:PORT`` + `WEBHOOK_PATH`."""
        return self.base_url + WEBHOOK_PATH

    # Scripting answers -------------------------------------------------------------------------------------------

    def respond_with(self, *statuses: int, retry_after: float | None = None) -> None:
        """Answers the next requests with these statuses, one each and in order; later requests get 200.

        Args:
            statuses: HTTP status codes, e.g. ``500, 500`` for two failures.
            retry_after: sent as the ``Retry-After`` header (seconds) with each of these answers.
        """
        for status in statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"status must be an HTTP status code, got {status}")
        header = None if retry_after is None else f"{retry_after:g}"
        with self._changed:
            self._plans.extend(_Plan(status, self.delay_seconds, header) for status in statuses)

    def delay_next(self, seconds: float, times: int = 1, status: int = 200) -> None:
        """Makes the next `times` requests wait `seconds` before answering `status` (or until `stop`)."""
        if seconds < 0 or times < 1:
            raise ValueError(f"seconds must be >= 0 and times >= 1, got {seconds} and {times}")
        with self._changed:
            self._plans.extend(_Plan(status, seconds, None) for _ in range(times))

    # What arrived ------------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of every request handled, oldest first."""
        with self._changed:
            return list(self._log)

    @property
    def payloads(self) -> list[Any]:
        """The parsed JSON bodies of the requests answered 2xx (a delayed one as soon as it arrives), oldest first."""
        return [r.json for r in self.requests if r.status is not None and 200 <= r.status < 300]

    @property
    def texts(self) -> list[str]:
        """The ``text`` field of each delivered payload (Slack's message text)."""
        return [p.get("text") for p in self.payloads if isinstance(p, dict)]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Blocks until at least `count` requests have arrived; returns them all.

        Raises:
            TimeoutError: when fewer arrived within `timeout` seconds (the message says how many did).
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._log) >= count, timeout):
                raise TimeoutError(f"expected {count} webhook requests within {timeout:g} s, got {len(self._log)}")
            return list(self._log)

    def reset(self) -> None:
        """Forgets the recorded requests and any scripted answers not used yet."""
        with self._changed:
            self._log.clear()
            self._plans.clear()

    # Answering ---------------------------------------------------------------------------------------------------

    def _next_plan(self) -> _Plan:
        with self._changed:
            return self._plans.popleft() if self._plans else _Plan(200, self.delay_seconds, None)

    def _record(self, request: ReceivedRequest) -> int:
        with self._changed:
            self._log.append(request)
            self._changed.notify_all()
            return len(self._log) - 1

    def _unanswered(self, index: int) -> None:
        with self._changed:
            if index < len(self._log):  # reset() may have cleared the log meanwhile
                self._log[index] = replace(self._log[index], status=None)


class _HTTPServer(ThreadingHTTPServer):
    app: WebhookReceiver
    # Non-daemon handler threads, so server_close() joins them and a test ends with no request half-handled.
    daemon_threads = False


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 5  # a connection that never sends its request must not block stop() for long

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        app = self.server.app
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        plan = app._next_plan()
        headers = dict(self.headers.items())
        index = app._record(ReceivedRequest(arrived, self.command, self.path, headers, body, plan.status, plan.delay))
        if plan.delay and app._stopping.wait(plan.delay):
            app._unanswered(index)
            self.close_connection = True
            return
        reply = b"ok" if plan.status == 200 else f"status {plan.status}".encode()
        try:
            self.send_response(plan.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(reply)))
            if plan.retry_after is not None:
                self.send_header("Retry-After", plan.retry_after)
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. it timed out during a delay)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s - %s", self.address_string(), format % args)


WebhookReceiver.server_class, WebhookReceiver.handler_class = _HTTPServer, _Handler
