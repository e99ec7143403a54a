"""A loopback HTTP server that answers like the arXiv API, so tests can drive the real `arxiv` client offline.

Example::

    with ArxivTestServer(papers=papers, atom_dir=ATOM_DIR) as server:
        client = arxiv.Client(delay_seconds=0, num_retries=0)
        client.query_url_format = server.query_url_format
        server.inject_fault("503")  # the first page answers 503 once
        results = list(client.results(arxiv.Search("cat:cs.DB", max_results=50)))

A request whose parameters equal a recorded one in ``atom_dir/manifest.json`` gets the recorded bytes and status.
Any other is rendered from the papers (the shared ``papers.jsonl.gz`` format) in the shape of arXiv's 2026 feeds.
Supported ``search_query`` syntax: ``cat:X`` and ``submittedDate:[YYYYMMDDHHMM TO YYYYMMDDHHMM]`` terms joined by
``AND``, ``OR``, ``ANDNOT`` and parentheses; anything else answers HTTP 400 with an arXiv-like error feed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.helpers.loopback import LoopbackHTTPServer

logger = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[2]
SHARED_DATA_DIR = next(
    (d for d in (_REPO.parent / "shared" / "data", _REPO / "shared" / "data") if d.is_dir()),
    _REPO.parent / "shared" / "data",
)
"""The shared real-data folder (``../shared/data`` next to the repository)."""
PAPERS_PATH = SHARED_DATA_DIR / "arxiv" / "papers.jsonl.gz"
NEW_PAPERS_PATH = SHARED_DATA_DIR / "arxiv" / "new_papers.jsonl.gz"
ATOM_DIR = SHARED_DATA_DIR / "atom"

API_PATH = "/api/query"
PLACEHOLDER_AUTHOR = "Anonymous"
"""Author rendered for papers without an ``authors`` list (the shared format has none)."""

ATOM_TYPE = "application/atom+xml; charset=utf-8"
_DEFAULTS = {
    "search_query": "",
    "id_list": "",
    "sortBy": "relevance",
    "sortOrder": "descending",
    "start": "0",
    "max_results": "10",
}
_SORT_BY = ("relevance", "lastUpdatedDate", "submittedDate")
_SORT_ORDER = ("ascending", "descending")
_PAPER_KEYS = ("id", "title", "abstract", "categories", "primary", "published")
_ID = re.compile(r"(?:\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?")
_CATEGORY = re.compile(r"[a-z][a-z\-]*(?:\.[A-Za-z\-]+)?")
_DATE_RANGE = re.compile(r"\[\s*(\d{12})\s+TO\s+(\d{12})\s*\]")
_TOKEN = re.compile(
    r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<op>ANDNOT|AND|OR)(?=[\s(]|$)"
    r"|(?P<field>\w+):(?P<value>\[[^\]]*\]|\"[^\"]*\"|[^\s()]+)|(?P<junk>\S+))"
)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FEED_OPEN = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom"'
    ' xmlns="http://www.w3.org/2005/Atom">\n'
)
# Not XML at all: an undeclared entity and unclosed tags, as a proxy's error page might be.
_MALFORMED_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Service error</title></head>\n"
    b"<body><p>Something went wrong&nbsp;on our side.<br>Please try again later.\n</body></html>\n"
)

Predicate = Callable[[dict[str, Any]], bool]


class Fault(StrEnum):
    """What an injected fault does to an answer; the values are what `ArxivTestServer.inject_fault` accepts."""

    UNAVAILABLE = "503"
    """HTTP 503 with a short text body."""
    RATE_LIMITED = "429"
    """HTTP 429 with a short text body and a ``Retry-After`` header."""
    HANG = "hang"
    """Waits ``hang_seconds`` (or until the server stops) before answering normally."""
    TRUNCATED = "truncated"
    """The normal answer cut in the middle of an entry's summary; Content-Length fits the cut body."""
    EMPTY = "empty"
    """The normal answer with every entry removed; the header (totalResults) stays true."""
    MALFORMED = "malformed"
    """HTTP 200 with an HTML page that is not well-formed XML."""
    CORRUPTED = "corrupted"
    """HTTP 200 with the normal answer passed through the function given to `ArxivTestServer.inject_corruption`."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the server handled, logged just before its answer is sent."""

    arrived: float
    """`time.monotonic()` when the request arrived."""
    path: str
    """The URL path (``/api/query`` for API calls)."""
    params: dict[str, str]
    """The query parameters as sent (last value of each), without defaults filled in."""
    status: int | None
    """The HTTP status answered; None when `stop()` cut a hanging request before it answered."""
    fault: Fault | None
    """The injected fault applied to this request, if any."""
    recorded: str | None
    """File name of the recorded response served, or None for a rendered or faulted answer."""


class QueryError(ValueError):
    """A request the rendered API rejects with HTTP 400."""


class _Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = ATOM_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    recorded: str | None = None


class ArxivTestServer(LoopbackHTTPServer):
    """Serves recorded and rendered arXiv API feeds on ``127.0.0.1`` from a daemon thread.

    Args:
        papers_path: a ``.jsonl`` or ``.jsonl.gz`` file of papers in the shared format, loaded on the first rendered
            request. Mutually exclusive with ``papers``.
        papers: the papers to serve, e.g. a few hundred picked by a test. Neither given: rendered feeds are empty.
        atom_dir: a folder with ``manifest.json`` and recorded responses; None serves rendered feeds only.
        hang_seconds: how long a ``hang`` fault waits before answering; `stop()` ends the wait at once.
        retry_after_seconds: the ``Retry-After`` value of a ``429`` fault.

    Raises:
        ValueError: both ``papers_path`` and ``papers`` given, a paper lacks a field, or a negative setting.
        FileNotFoundError: ``papers_path``, ``atom_dir/manifest.json`` or a file it lists is missing.
    """

    thread_name = "arxiv test server"

    def __init__(
        self,
        papers_path: Path | None = None,
        papers: list[dict[str, Any]] | None = None,
        atom_dir: Path | None = None,
        *,
        hang_seconds: float = 10.0,
        retry_after_seconds: int = 1,
    ) -> None:
        super().__init__()
        if papers_path is not None and papers is not None:
            raise ValueError("give papers_path or papers, not both")
        if papers_path is not None and not Path(papers_path).is_file():
            raise FileNotFoundError(f"papers_path {papers_path} does not exist")
        if hang_seconds < 0:
            raise ValueError(f"hang_seconds must be >= 0, got {hang_seconds}")
        if retry_after_seconds < 0:
            raise ValueError(f"retry_after_seconds must be >= 0, got {retry_after_seconds}")
        if papers is not None:
            for index, paper in enumerate(papers):
                _check_paper(paper, f"papers[{index}]")
        self.papers_path = Path(papers_path) if papers_path is not None else None
        self.hang_seconds = hang_seconds
        self.retry_after_seconds = retry_after_seconds
        self.on_request: Callable[[RequestRecord], None] | None = None
        """Called with each record after its answer is sent, on the handler thread; exceptions are logged."""
        self._papers = list(papers) if papers is not None else None
        self._by_id: dict[str, dict[str, Any]] | None = None
        self._matches_cache: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._data_lock = threading.Lock()
        self._recordings, self._legacy = _load_manifest(Path(atom_dir)) if atom_dir is not None else ({}, [])
        self._lock = threading.Lock()
        self._faults: list[list[Any]] = []  # [Fault, remaining uses, match, corrupting function or None]
        self._log: list[RequestRecord] = []
        self._in_flight = 0

    @property
    def url(self) -> str:
        """The API endpoint, ``http://127.0.0.1:PORT/api/query``."""
        return self.base_url + API_PATH

    @property
    def query_url_format(self) -> str:
        """The value for `arxiv.Client.query_url_format`: ``url + "?{}"``."""
        return self.url + "?{}"

    # Faults and log ----------------------------------------------------------------------------------------------

    def inject_fault(
        self, kind: Fault | str, times: int = 1, match: Callable[[dict[str, str]], bool] | int | None = None
    ) -> None:
        """Spoils the next ``times`` API requests that ``match``; faults apply in the order injected.

        Args:
            kind: one of ``"503"``, ``"429"``, ``"hang"``, ``"truncated"``, ``"empty"``, ``"malformed"``.
            times: how many matching requests this fault applies to.
            match: a callable taking the request's params dict, or an int that the ``start`` parameter must
                equal; None matches every request.
        """
        try:
            fault = Fault(kind)
        except ValueError:
            raise ValueError(f"kind must be one of {[f.value for f in Fault]}, got {kind!r}") from None
        if fault is Fault.CORRUPTED:
            raise ValueError("a corrupted answer needs its corrupting function: use inject_corruption")
        self._queue(fault, times, match)

    def inject_corruption(
        self,
        corrupt: Callable[[bytes], bytes],
        times: int = 1,
        match: Callable[[dict[str, str]], bool] | int | None = None,
    ) -> None:
        """Answers the next ``times`` API requests that ``match`` with HTTP 200 and ``corrupt(normal body)``.

        Corruptions queue with the faults of `inject_fault` and apply in the order injected.

        Args:
            corrupt: turns the bytes of the answer the request would have had into the bytes sent instead.
            times: how many matching requests this corruption applies to.
            match: as for `inject_fault`.
        """
        if not callable(corrupt):
            raise TypeError(f"corrupt must be a function of the body, got {corrupt!r}")
        self._queue(Fault.CORRUPTED, times, match, corrupt)

    def _queue(
        self,
        fault: Fault,
        times: int,
        match: Callable[[dict[str, str]], bool] | int | None,
        corrupt: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        if not (match is None or callable(match) or (isinstance(match, int) and not isinstance(match, bool))):
            raise TypeError(f"match must be None, a callable or an int start offset, got {match!r}")
        with self._lock:
            self._faults.append([fault, times, match, corrupt])

    @property
    def pending_faults(self) -> int:
        """How many injected fault uses are still waiting for a matching request."""
        with self._lock:
            return sum(remaining for _, remaining, *_ in self._faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now (e.g. hanging)."""
        with self._lock:
            return self._in_flight

    def served_starts(self, status: int = 200) -> list[int]:
        """The ``start`` of every rendered (not recorded) API answer with ``status`` and no fault, in order."""
        with self._lock:
            return [
                int(r.params.get("start", "0"))
                for r in self._log
                if r.path == API_PATH
                and r.status == status
                and r.fault is None
                and r.recorded is None
                and r.params.get("start", "0").isdigit()
            ]

    def reset_log(self) -> None:
        """Forgets the logged requests (injected faults stay)."""
        with self._lock:
            self._log.clear()

    @property
    def papers(self) -> list[dict[str, Any]]:
        """The papers served (loading ``papers_path`` if not yet loaded)."""
        return self._load_papers()

    # Answering ---------------------------------------------------------------------------------------------------

    def _take_fault(self, params: dict[str, str]) -> tuple[Fault | None, Callable[[bytes], bytes] | None]:
        with self._lock:
            for entry in self._faults:
                fault, _, match, corrupt = entry
                if match is None or (_start_is(params, match) if isinstance(match, int) else match(params)):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                    return fault, corrupt
        return None, None

    def _reply(
        self, params: dict[str, str], fault: Fault | None, corrupt: Callable[[bytes], bytes] | None = None
    ) -> _Reply | None:
        """The answer to an API request, or None when the server stopped during a hang."""
        if fault is Fault.UNAVAILABLE:
            return _Reply(503, b"Service Unavailable\n", "text/plain; charset=utf-8")
        if fault is Fault.RATE_LIMITED:
            headers = (("Retry-After", str(self.retry_after_seconds)),)
            return _Reply(429, b"Rate exceeded.\n", "text/plain; charset=utf-8", headers)
        if fault is Fault.MALFORMED:
            return _Reply(200, _MALFORMED_BODY, "text/html; charset=utf-8")
        if fault is Fault.HANG and self._stopping.wait(self.hang_seconds):
            return None
        reply = self._recorded(params) or self._rendered(params)
        if fault is Fault.TRUNCATED:
            return reply._replace(body=_truncate(reply.body))
        if fault is Fault.EMPTY:
            return reply._replace(body=re.sub(rb"\s*<entry>.*?</entry>", b"", reply.body, flags=re.S))
        if fault is Fault.CORRUPTED and corrupt is not None:
            return reply._replace(status=200, body=corrupt(reply.body))
        return reply

    def _recorded(self, params: dict[str, str]) -> _Reply | None:
        query = {key: params.get(key, default) for key, default in _DEFAULTS.items()}
        found = self._recordings.get(tuple(query.values()))
        if found is None:
            found = next(
                ((path, 200) for path, wanted in self._legacy if all(query[k] == v for k, v in wanted.items())), None
            )
        if found is None:
            return None
        path, status = found
        return _Reply(status, path.read_bytes(), recorded=path.name)

    def _rendered(self, params: dict[str, str]) -> _Reply:
        query = {key: params.get(key, default) for key, default in _DEFAULTS.items()}
        try:
            if query["sortBy"] not in _SORT_BY:
                raise QueryError(f"sortBy must be one of {', '.join(_SORT_BY)}")
            if query["sortOrder"] not in _SORT_ORDER:
                raise QueryError(f"sortOrder must be one of {', '.join(_SORT_ORDER)}")
            for key in ("start", "max_results"):
                if not query[key].isdigit():
                    raise QueryError(f"{key} must be a non-negative integer")
            matches = self._matches(query["search_query"], query["id_list"], query["sortBy"], query["sortOrder"])
        except QueryError as err:
            return _Reply(400, _error_feed(str(err)).encode())
        start, size = int(query["start"]), int(query["max_results"])
        return _Reply(200, _feed(query, len(matches), matches[start : start + size]).encode())

    def _matches(self, search_query: str, id_list: str, sort_by: str, order: str) -> list[dict[str, Any]]:
        key = (search_query, id_list, sort_by, order)
        with self._data_lock:
            cached = self._matches_cache.get(key)
        if cached is not None:
            return cached
        ids = [i.strip() for i in id_list.split(",") if i.strip()]
        for paper_id in ids:
            if not _ID.fullmatch(paper_id):
                raise QueryError(f"incorrect id format for {paper_id}")
        predicate = parse_query(search_query) if search_query.strip() else None
        papers = self._load_papers()
        by_id = self._by_id or {}
        if ids:
            wanted = dict.fromkeys(re.sub(r"v\d+$", "", i) for i in ids)
            found = [by_id[i] for i in wanted if i in by_id]
            found = [p for p in found if predicate is None or predicate(p)]
            if sort_by != "relevance":  # like arXiv, relevance keeps the id_list order
                found.sort(key=_sort_key, reverse=order == "descending")
        elif predicate is None:
            found = []
        else:
            found = sorted((p for p in papers if predicate(p)), key=_sort_key, reverse=order == "descending")
        with self._data_lock:
            self._matches_cache[key] = found
        return found

    def _load_papers(self) -> list[dict[str, Any]]:
        with self._data_lock:
            if self._papers is None:
                self._papers = list(_read_jsonl(self.papers_path)) if self.papers_path is not None else []
            if self._by_id is None:
                self._by_id = {p["id"]: p for p in self._papers}
            return self._papers

    def _log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _finish(self, record: RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
        callback = self.on_request
        if callback is not None:
            try:
                callback(record)
            except Exception:
                logger.exception("on_request callback failed for %s", record)


class _HTTPServer(ThreadingHTTPServer):
    app: ArxivTestServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 10  # a connection that never sends its request must not block stop() forever

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        app = self.server.app
        arrived = time.monotonic()
        split = urlsplit(self.path)
        params = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        with app._lock:
            app._in_flight += 1
        fault = None
        reply: _Reply | None
        try:
            if split.path != API_PATH:
                reply = _Reply(404, b"Not Found\n", "text/plain; charset=utf-8")
            else:
                fault, corrupt = app._take_fault(params)
                reply = app._reply(params, fault, corrupt)
        except Exception:
            logger.exception("arXiv test server failed on %s", self.path)
            reply = _Reply(500, b"Internal Server Error\n", "text/plain; charset=utf-8")
        status = reply.status if reply is not None else None
        recorded = reply.recorded if reply is not None else None
        record = RequestRecord(arrived, split.path, params, status, fault, recorded)
        # Logged before the answer goes out, so a client that has its answer always finds it in the log.
        app._log_request(record)
        if reply is None:
            self.close_connection = True
        else:
            self._send(reply)
        app._finish(record)

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. timed out during a hang)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s - %s", self.address_string(), format % args)


# Queries -------------------------------------------------------------------------------------------------------------


def parse_query(query: str) -> Predicate:
    """Compiles a ``search_query`` into a predicate over papers.

    Raises:
        QueryError: the query uses syntax or fields this server does not support.
    """
    tokens: list[tuple[str, Any]] = []
    for found in _TOKEN.finditer(query):
        if found["junk"]:
            raise QueryError(f"unsupported query syntax near {found['junk']!r} (use field:value terms)")
        if found["field"]:
            tokens.append(("term", _term(found["field"], found["value"])))
        elif found["op"]:
            tokens.append(("op", found["op"]))
        elif found["open"] or found["close"]:
            tokens.append((found.lastgroup, None))
    pos = 0

    def expression() -> Predicate:
        nonlocal pos
        left = operand()
        while pos < len(tokens) and tokens[pos][0] == "op":
            op = tokens[pos][1]
            pos += 1
            left = _combine(op, left, operand())
        return left

    def operand() -> Predicate:
        nonlocal pos
        if pos >= len(tokens):
            raise QueryError(f"query ends where a term was expected: {query!r}")
        kind, value = tokens[pos]
        pos += 1
        if kind == "term":
            return value
        if kind == "open":
            inner = expression()
            if pos >= len(tokens) or tokens[pos][0] != "close":
                raise QueryError(f"unbalanced parentheses in {query!r}")
            pos += 1
            return inner
        raise QueryError(f"unexpected {kind} in {query!r}")

    predicate = expression()
    if pos != len(tokens):
        raise QueryError(f"unexpected {tokens[pos][0]} in {query!r}")
    return predicate


def _term(field: str, value: str) -> Predicate:
    if field == "cat":
        category = value.strip('"')
        if not _CATEGORY.fullmatch(category):
            raise QueryError(f"malformed category {value!r}")
        return lambda paper: category in paper["categories"]
    if field == "submittedDate":
        found = _DATE_RANGE.fullmatch(value)
        if found is None:
            raise QueryError(f"submittedDate must be [YYYYMMDDHHMM TO YYYYMMDDHHMM], got {value!r}")
        for stamp in found.groups():
            try:
                datetime.strptime(stamp, "%Y%m%d%H%M")
            except ValueError:
                raise QueryError(f"invalid date {stamp} in submittedDate") from None
        low, high = found.groups()
        # Papers carry a date only; it stands for 00:00 UTC, the time the rendered feed shows.
        return lambda paper: low <= paper["published"].replace("-", "") + "0000" <= high
    raise QueryError(f"unsupported field {field!r}: this test server knows cat: and submittedDate:")


def _combine(op: str, left: Predicate, right: Predicate) -> Predicate:
    if op == "AND":
        return lambda paper: left(paper) and right(paper)
    if op == "OR":
        return lambda paper: left(paper) or right(paper)
    return lambda paper: left(paper) and not right(paper)


def _start_is(params: dict[str, str], start: int) -> bool:
    value = params.get("start", "0")
    return value.isdigit() and int(value) == start


def _sort_key(paper: dict[str, Any]) -> tuple[str, str]:
    return paper["published"], paper["id"]


# Feeds ---------------------------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    return escape(_INVALID_XML.sub("", value))


def _attr(value: str) -> str:
    return escape(_INVALID_XML.sub("", value), {'"': "&quot;"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _feed(query: dict[str, str], total: int, page: list[dict[str, Any]]) -> str:
    search, ids, start, size = query["search_query"], query["id_list"], query["start"], query["max_results"]
    title = f"arXiv Query: search_query={search}&id_list={ids}&start={start}&max_results={size}"
    link = f"https://arxiv.org/api/query?search_query={search}&start={start}&max_results={size}&id_list={ids}"
    feed_id = base64.b64encode(hashlib.sha1(repr(sorted(query.items())).encode()).digest()).decode().rstrip("=")
    parts = [
        _FEED_OPEN,
        f"  <id>https://arxiv.org/api/{feed_id}</id>\n",
        f"  <title>{_text(title)}</title>\n",
        f"  <updated>{_now()}</updated>\n",
        f'  <link href="{_attr(link)}" type="application/atom+xml"/>\n',
        f"  <opensearch:itemsPerPage>{size}</opensearch:itemsPerPage>\n",
        f"  <opensearch:totalResults>{total}</opensearch:totalResults>\n",
        f"  <opensearch:startIndex>{start}</opensearch:startIndex>\n",
    ]
    parts.extend(_entry(paper) for paper in page)
    parts.append("</feed>\n")
    return "".join(parts)


def _entry(paper: dict[str, Any]) -> str:
    versioned = _attr(f"{paper['id']}v1")
    stamp = f"{paper['published']}T00:00:00Z"
    categories = "".join(
        f'    <category term="{_attr(c)}" scheme="http://arxiv.org/schemas/atom"/>\n' for c in paper["categories"]
    )
    authors = "".join(
        f"    <author>\n      <name>{_text(name)}</name>\n    </author>\n"
        for name in paper.get("authors") or [PLACEHOLDER_AUTHOR]
    )
    return (
        "  <entry>\n"
        f"    <id>http://arxiv.org/abs/{versioned}</id>\n"
        f"    <title>{_text(paper['title'])}</title>\n"
        f"    <updated>{stamp}</updated>\n"
        f'    <link href="https://arxiv.org/abs/{versioned}" rel="alternate" type="text/html"/>\n'
        f'    <link href="https://arxiv.org/pdf/{versioned}" rel="related" type="application/pdf" title="pdf"/>\n'
        f"    <summary>{_text(paper['abstract'])}</summary>\n"
        f"{categories}"
        f"    <published>{stamp}</published>\n"
        f'    <arxiv:primary_category term="{_attr(paper["primary"])}"/>\n'
        f"{authors}"
        "  </entry>\n"
    )


def _error_feed(message: str) -> str:
    """An error answer in the shape arXiv's 2026 backend sends with HTTP 400."""
    anchor = _attr("https://arxiv.org/api/errors#" + re.sub(r"\W+", "_", message.lower()).strip("_"))
    now = _now()
    return (
        f"{_FEED_OPEN}  <id>https://arxiv.org/</id>\n  <title>arXiv Search Results</title>\n"
        f"  <updated>{now}</updated>\n  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>\n"
        "  <opensearch:totalResults>1</opensearch:totalResults>\n  <opensearch:startIndex>0</opensearch:startIndex>\n"
        f"  <entry>\n    <id>{anchor}</id>\n    <title>Error</title>\n    <updated>{now}</updated>\n"
        f'    <link href="{anchor}" rel="alternate" type="text/html"/>\n    <summary>{_text(message)}</summary>\n'
        "    <author>\n      <name>arXiv api core</name>\n    </author>\n  </entry>\n</feed>\n"
    )


def _truncate(body: bytes) -> bytes:
    """Cuts a feed in the middle of the summary of its middle entry (mid-body when it has no entries)."""
    text = body.decode("utf-8", "surrogateescape")
    entries = [found.span() for found in re.finditer(r"<entry>.*?</entry>", text, re.S)]
    if not entries:
        return body[: len(body) // 2]
    begin, end = entries[len(entries) // 2]
    summary = text.find("<summary>", begin, end)
    if summary < 0:
        cut = (begin + end) // 2
    else:
        opened = summary + len("<summary>")
        cut = opened + max(text.find("</summary>", opened, end) - opened, 0) // 2
    return text[:cut].encode("utf-8", "surrogateescape")


# Data ----------------------------------------------------------------------------------------------------------------


def _check_paper(paper: Any, where: str) -> None:
    if not isinstance(paper, dict):
        raise ValueError(f"{where} must be a dict, got {type(paper).__name__}")
    missing = [key for key in _PAPER_KEYS if key not in paper]
    if missing:
        raise ValueError(f"{where} (id {paper.get('id')!r}) lacks {', '.join(missing)}")
    try:
        date.fromisoformat(paper["published"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}.published must be YYYY-MM-DD, got {paper['published']!r}") from None


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                paper = json.loads(line)
                _check_paper(paper, f"{path}:{number}")
                yield paper


def _load_manifest(atom_dir: Path) -> tuple[dict[tuple[str, ...], tuple[Path, int]], list[tuple[Path, dict]]]:
    """Maps each 2026 recording's six query parameters to (file, status); legacy ones match on what they name."""
    manifest = atom_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"atom_dir {atom_dir} has no manifest.json")
    recordings: dict[tuple[str, ...], tuple[Path, int]] = {}
    legacy: list[tuple[Path, dict[str, str]]] = []
    for item in json.loads(manifest.read_text(encoding="utf-8")):
        path = atom_dir / item["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{manifest} lists {item['file']}, which is missing")
        if "url" in item:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(item["url"]).query, keep_blank_values=True).items()}
            key = tuple(query.get(k, default) for k, default in _DEFAULTS.items())
            recordings.setdefault(key, (path, int(item.get("status_code", 200))))
        elif "query" in item:
            # Legacy recordings name only some parameters; they are the first page of their query.
            query = {k: v[-1] for k, v in parse_qs(item["query"], keep_blank_values=True).items()}
            wanted = {k: query.get(k, _DEFAULTS[k]) for k in ("search_query", "id_list", "start")}
            legacy.append((path, wanted))
    return recordings, legacy


ArxivTestServer.server_class, ArxivTestServer.handler_class = _HTTPServer, _Handler
