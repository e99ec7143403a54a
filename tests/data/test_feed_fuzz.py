"""Property-based fuzzing of the Atom feed checks in clf/data/api_pager.py and of the collector that relies on them.

The promise: a corrupt answer of the arXiv API (not XML, truncated, XML bombs and entities, wrong namespaces, a
missing or non-numeric ``opensearch:totalResults``, entries without ids or titles, invalid UTF-8, a body cut short
in transfer) is a `MalformedFeedError`, which the pager retries and turns into `PageFetchError` and the collector
into `CollectionError`; a feed that passes the check is one the `arxiv` client reads whole, every entry becoming a
valid `Paper`. Nothing already collected is lost.

The properties run the pure check on real recorded feeds (fast), and the real client and pager against the loopback
arXiv server; ``pytest -m slow`` runs them with many more examples.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from arxiv import _feed as arxiv_feed  # what `arxiv.Client` parses each page with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from clf.data.api_pager import ArxivApiPager, MalformedFeedError, PageFetchError, check_feed
from clf.data.collector import ArxivCollector, CollectionError, paper_from_result
from tests.conftest import load_shared_papers
from tests.helpers.arxiv_server import ArxivTestServer
from tests.helpers.papers import assert_valid_paper

FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=5_000)
URL = "http://127.0.0.1/api/query?search_query=cat%3Acs.DB&start=0&max_results=10"
ATOM_ENTRY = "{http://www.w3.org/2005/Atom}entry"

# ------------------------------------------------------------------------------------------------ corruptions

TAGS = (b"id", b"title", b"summary", b"published", b"updated", b"category", b"arxiv:primary_category")
TAGS += (b"opensearch:totalResults", b"entry", b"author", b"name", b"link", b"feed")
NAMESPACES = (b"http://www.w3.org/2005/Atom", b"http://arxiv.org/schemas/atom", b"http://a9.com/-/spec/opensearch/1.1/")
TOKENS = (b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"<", b"&", b"]]>", b"&nbsp;", b"&#0;", b"&#xD800;", b"</feed>")
TOKENS += (b"<entry>", b"<!--", b"<?xml version='1.0'?>", b"\r", b'"', b"\xef\xbb\xbf")


def _element(tag: bytes) -> re.Pattern[bytes]:
    name = re.escape(tag)
    return re.compile(rb"<" + name + rb"(?:\s[^>]*)?/>|<" + name + rb"(?:\s[^>]*)?>.*?</" + name + rb">", re.S)


def _nth(spans: list[tuple[int, int]], where: float) -> tuple[int, int] | None:
    return spans[min(int(where * len(spans)), len(spans) - 1)] if spans else None


@dataclass(frozen=True)
class Edit:
    """One change to the bytes of a feed; its repr is what Hypothesis prints for a failing example."""

    kind: str
    where: float
    payload: bytes = b""
    tag: bytes = b""

    def __call__(self, body: bytes) -> bytes:
        at = int(self.where * len(body))
        if self.kind == "cut":
            return body[:at]
        if self.kind == "insert":
            return body[:at] + self.payload + body[at:]
        if self.kind == "delete":
            return body[:at] + body[at + 1 + len(self.payload) :]
        if self.kind == "flip":
            return body[:at] + bytes([body[at] ^ (self.payload or b"\x01")[0]]) + body[at + 1 :] if body else body
        if self.kind == "namespace":
            return body.replace(NAMESPACES[int(self.where * len(NAMESPACES)) % len(NAMESPACES)], self.payload)
        if self.kind == "doctype":
            declaration = b'<!DOCTYPE feed [<!ENTITY e "' + self.payload.replace(b'"', b"") + b'">]>\n'
            body = re.sub(rb"<title>", b"<title>&e;", body, count=1 + int(self.where * 3))
            return declaration + body if not body.startswith(b"<?xml") else body.replace(b"?>", b"?>" + declaration, 1)
        if self.kind == "encode":
            codec = ("latin-1", "utf-16", "utf-32", "cp1252", "utf-16-be")[int(self.where * 5) % 5]
            return body.decode("utf-8", "replace").encode(codec, "replace")
        if self.kind == "term":
            span = _nth([m.span(1) for m in re.finditer(rb'term="([^"]*)"', body)], self.where)
            return body if span is None else body[: span[0]] + self.payload + body[span[1] :]
        span = _nth([m.span() for m in _element(self.tag).finditer(body)], self.where)
        if span is None:
            return body
        start, end = span
        if self.kind == "drop":
            return body[:start] + body[end:]
        if self.kind == "duplicate":
            return body[:end] + body[start:end] + body[end:]
        # "text": the element's content replaced
        element = body[start:end]
        opened = element.find(b">") + 1
        closed = element.rfind(b"</")
        if closed < opened:  # an empty element <x/>
            return body
        return body[: start + opened] + self.payload + body[start + closed :]


@dataclass(frozen=True)
class Mutation:
    """A few edits applied in turn; called on a body by `ArxivTestServer.inject_corruption` or directly."""

    edits: tuple[Edit, ...]

    def __call__(self, body: bytes) -> bytes:
        for edit in self.edits:
            body = edit(body)
        return body


odd_texts = st.one_of(
    st.sampled_from(["", " ", "2024-01-01", "2024-02-30T00:00:00Z", "0001-01-01T00:00:00+05:00", "24 Feb 2022"]),
    st.sampled_from(["9999-12-31T23:59:59-05:00", "20240101T000000Z", "2024-W01-1", "-1", "1e3", "٣", "1_000"]),
    st.sampled_from(["http://arxiv.org/abs/", "http://arxiv.org/abs/v2", "https://arxiv.org/api/errors#x", "cs AI"]),
    st.integers(-(10**20), 10**20).map(str),
    st.text(max_size=30),
)
text_payloads = st.builds(
    lambda text, escaped: (escape(text) if escaped else text).encode("utf-8", "surrogatepass"), odd_texts, st.booleans()
)
byte_payloads = st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=12)
wheres = st.floats(0, 1, exclude_max=True)
edits = st.one_of(
    st.builds(Edit, st.just("cut"), wheres),
    st.builds(Edit, st.sampled_from(["insert", "delete", "flip"]), wheres, byte_payloads),
    st.builds(Edit, st.sampled_from(["drop", "duplicate"]), wheres, tag=st.sampled_from(TAGS)),
    st.builds(Edit, st.just("text"), wheres, text_payloads | byte_payloads, st.sampled_from(TAGS)),
    st.builds(Edit, st.just("term"), wheres, text_payloads),
    st.builds(Edit, st.just("namespace"), wheres, st.sampled_from([b"", b"http://example.org/", *NAMESPACES])),
    st.builds(Edit, st.just("doctype"), wheres, text_payloads),
    st.builds(Edit, st.just("encode"), wheres),
)
mutations = st.lists(edits, min_size=1, max_size=3).map(lambda found: Mutation(tuple(found)))


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def recorded_feeds(atom_dir: Path) -> list[bytes]:
    """The bodies of the real arXiv answers with status 200 (the 2026 backend and the legacy one)."""
    manifest = json.loads((atom_dir / "manifest.json").read_text(encoding="utf-8"))
    return [(atom_dir / item["file"]).read_bytes() for item in manifest if item.get("status_code", 200) == 200]


@pytest.fixture(scope="module")
def db_papers() -> list[dict[str, Any]]:
    """60 real cs.DB papers for the loopback server."""
    return load_shared_papers(limit=60, categories={"cs.DB"})


@pytest.fixture(scope="module")
def shared_server(db_papers: list[dict[str, Any]]) -> Iterator[ArxivTestServer]:
    with ArxivTestServer(papers=db_papers) as running:
        yield running


@pytest.fixture
def server(db_papers: list[dict[str, Any]]) -> Iterator[ArxivTestServer]:
    with ArxivTestServer(papers=db_papers) as running:
        yield running


def newest_first_ids(papers: list[dict[str, Any]]) -> list[str]:
    return [p["id"] for p in sorted(papers, key=lambda p: (p["published"], p["id"]), reverse=True)]


def saved_ids(data_dir: Path, category: str) -> list[str]:
    path = data_dir / "raw" / "arxiv" / f"{category}.jsonl"
    return [json.loads(line)["arxiv_id"] for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ properties


def check_feed_or_client_reads_it_whole(body: bytes) -> None:
    """`check_feed` rejects `body` with a MalformedFeedError, or the client reads every entry as a valid paper."""
    try:
        total = check_feed(URL, body)
    except MalformedFeedError as err:
        assert err.url == URL and err.detail and str(err) == f"malformed feed from {URL}: {err.detail}"
        return
    assert isinstance(total, int) and total >= 0
    parsed = arxiv_feed.parse(body)
    assert not parsed.malformed, parsed.error
    entries = etree.fromstring(body, etree.XMLParser(resolve_entities=False)).findall(ATOM_ENTRY)
    assert len(parsed.results) == len(entries), "the client skipped an entry the check let through"
    assert parsed.header.total_results == total
    for result in parsed.results:
        assert_valid_paper(paper_from_result(result))


def check_pager_gives_a_page_or_page_fetch_error(server: ArxivTestServer, mutation: Mutation, start: int) -> None:
    server.inject_corruption(mutation, match=start)
    pager = ArxivApiPager(
        server.url, 10, delay_seconds=0, max_retries=0, backoff_seconds=0, max_backoff_seconds=0, timeout_seconds=5
    )
    try:
        page = pager.fetch("cat:cs.DB", start, label="cs.DB")
    except PageFetchError as err:
        assert (err.start, err.attempts) == (start, 1) and err.reason, err
    else:
        assert page.total >= 0
        for result in page.results:
            assert_valid_paper(paper_from_result(result))
    assert server.pending_faults == 0


@settings(FAST, max_examples=1_000)  # a check is a millisecond: afford more
@given(data=st.data())
def test_a_feed_is_rejected_or_read_whole(recorded_feeds: list[bytes], data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(recorded_feeds), label="recorded feed")
    check_feed_or_client_reads_it_whole(data.draw(mutations, label="mutation")(body))


@settings(FAST, max_examples=60)
@given(mutation=mutations, start=st.sampled_from([0, 10, 50]))
def test_the_pager_answers_a_page_or_page_fetch_error(shared_server, mutation, start) -> None:
    check_pager_gives_a_page_or_page_fetch_error(shared_server, mutation, start)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_feed_fuzz_long(recorded_feeds: list[bytes], shared_server: ArxivTestServer, data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(recorded_feeds), label="recorded feed")
    check_feed_or_client_reads_it_whole(data.draw(mutations, label="mutation")(body))
    if data.draw(st.integers(0, 9), label="also through the pager") == 0:
        check_pager_gives_a_page_or_page_fetch_error(
            shared_server, data.draw(mutations), data.draw(st.sampled_from([0, 10, 50]))
        )


# ------------------------------------------------------------------------------------------------ what fuzzing found


def in_first_entry(edit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def apply(body: bytes) -> bytes:
        found = re.search(rb"<entry>.*?</entry>", body, re.S)
        assert found is not None
        return body[: found.start()] + edit(found.group()) + body[found.end() :]

    return apply


def sub(pattern: bytes, replacement: bytes) -> Callable[[bytes], bytes]:
    return lambda text: re.sub(pattern, replacement, text, count=1, flags=re.S)


# The billion laughs: ten entities of ten references each, nine deep.
_BOMB = b"".join(
    [
        b'<!DOCTYPE feed [<!ENTITY l0 "lol">',
        *(b'<!ENTITY l%d "%s">' % (i, b"&l%d;" % (i - 1) * 10) for i in range(1, 10)),
        b"]>",
    ]
)

# Each corruption, and what the client did with it before the check: (name, change, the error's detail).
CORRUPTIONS: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("not-xml", lambda body: b"<html><body>Service error&nbsp;</body></html>", r"not well-formed XML"),
    ("truncated", lambda body: body[: len(body) * 2 // 3], r"not well-formed XML"),
    ("html-root", lambda body: b"<html/>", r"root element is 'html', not an Atom feed"),
    # An XML bomb: entities ten times nested (libxml2's amplification limit stops it too).
    (
        "xml-bomb",
        lambda body: body.replace(b"?>", b"?>" + _BOMB, 1).replace(b"<title>", b"<title>&l9;", 2),
        r"Maximum entity amplification|declares a DOCTYPE",
    ),
    # Entities were left unexpanded: the title lost the entity's text without a word.
    ("entity", Edit("doctype", 0.0, b"Hidden words"), r"declares a DOCTYPE"),
    (
        "external-entity",
        lambda body: body.replace(b"?>", b'?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]>', 1),
        r"declares a DOCTYPE",
    ),
    (
        "wrong-namespace",
        lambda body: body.replace(b"http://www.w3.org/2005/Atom", b"http://www.w3.org/2005/Atom2"),
        r"root element is '\{http://www.w3.org/2005/Atom2\}feed'",
    ),
    # No or a non-numeric total: read as None, so a full page passed for the last one (the category "exhausted").
    ("no-total", sub(rb"<opensearch:totalResults>.*?</opensearch:totalResults>", b""), r"no opensearch:totalResults"),
    ("non-numeric-total", sub(rb"(<opensearch:totalResults>).*?(<)", rb"\1many\2"), r"'many', not a count"),
    ("negative-total", sub(rb"(<opensearch:totalResults>).*?(<)", rb"\1-3\2"), r"'-3', not a count"),
    # An entry without an id or a date was skipped by the client: the paper was lost without a word.
    ("entry-without-id", in_first_entry(sub(rb"<id>.*?</id>", b"")), r"entry 1 has no arXiv id"),
    (
        "entry-with-error-id",
        in_first_entry(sub(rb"<id>.*?</id>", b"<id>https://arxiv.org/api/errors#x</id>")),
        r"entry 1 has no arXiv id",
    ),
    ("entry-without-published", in_first_entry(sub(rb"<published>.*?</published>", b"")), r"has no <published> date"),
    (
        "entry-in-other-namespace",
        in_first_entry(sub(rb"<entry>", b'<entry xmlns="http://example.org/">')),
        r"an entry is in namespace 'http://example.org/'",
    ),
    # An entry without a title or a primary category became a paper with an empty title or the wrong label.
    ("entry-without-title", in_first_entry(sub(rb"<title>.*?</title>", b"")), r"has no title"),
    (
        "entry-without-primary",
        in_first_entry(sub(rb"<arxiv:primary_category[^>]*/>", b"")),
        r"has no arxiv:primary_category",
    ),
    ("blank-category", in_first_entry(sub(rb'(<category term=")[^"]*', rb"\1 ")), r"category term ' ', not a category"),
    # A date the client cannot read raised ValueError (or OverflowError) out of the collector.
    ("odd-date", in_first_entry(sub(rb"(<published>)[^<]*", rb"\g<1>24 Feb 2022")), r"'24 Feb 2022', not a readable"),
    (
        "out-of-range-date",
        in_first_entry(sub(rb"(<updated>)[^<]*", rb"\g<1>0001-01-01T00:00:00+05:00")),
        r"<updated> is '0001-01-01T00:00:00\+05:00', not a readable RFC 3339 date",
    ),
    ("invalid-utf8", in_first_entry(sub(rb"<title>", b"<title>\xff")), r"not well-formed XML: .*(Invalid bytes|UTF-8)"),
    ("nul-byte", in_first_entry(sub(rb"<summary>", b"<summary>\x00")), r"not well-formed XML"),
    ("empty", lambda body: b" \n", r"empty body"),
]


@pytest.mark.parametrize(("name", "corrupt", "detail"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_feeds_found_by_fuzzing_are_malformed(recorded_feeds, atom_dir: Path, name, corrupt, detail) -> None:
    body = (atom_dir / "new_q_testing_s0_m10_bc5a6c384fe9.xml").read_bytes()
    check_feed(URL, body)  # the real feed passes
    with pytest.raises(MalformedFeedError) as caught:
        check_feed(URL, corrupt(body))
    assert re.search(detail, caught.value.detail), caught.value.detail


@pytest.mark.parametrize(
    "name", ["not-xml", "truncated", "xml-bomb", "wrong-namespace", "no-total", "entry-without-id", "odd-date"]
)
def test_a_corrupt_page_stops_the_collector_and_keeps_what_was_saved(server, db_papers, tmp_path, name) -> None:
    corrupt = {n: c for n, c, _ in CORRUPTIONS}[name]
    server.inject_corruption(corrupt, times=3, match=20)
    collector = ArxivCollector(
        tmp_path,
        source="api",
        api_url=server.url,
        delay_seconds=0,
        page_size=10,
        max_retries=2,
        backoff_seconds=0.01,
        max_backoff_seconds=0.01,
        timeout_seconds=5,
    )
    with pytest.raises(CollectionError) as caught:
        collector.collect_papers_by_category("cs.DB", 40)
    message = str(caught.value)
    assert "gave up on the page starting at 20 after 3 attempt(s); last error: malformed feed (" in message
    assert "The 20 papers already saved" in message and "are kept" in message
    expected = newest_first_ids(db_papers)
    assert saved_ids(tmp_path, "cs.DB") == expected[:20]
    # The same command, once the server answers properly, resumes at the page that failed.
    server.reset_log()
    assert [p.arxiv_id for p in collector.collect_papers_by_category("cs.DB", 40)] == expected[:40]
    assert min(server.served_starts()) == 20
    assert saved_ids(tmp_path, "cs.DB") == expected[:40]


def test_a_category_listed_twice_is_kept_once(atom_dir: Path) -> None:
    """Found by the long run: duplicating a <category> gave the paper ['math.CO', 'math.ST', 'math.ST']."""
    body = (atom_dir / "new_q_testing_s0_m10_bc5a6c384fe9.xml").read_bytes()
    doubled = in_first_entry(sub(rb'(<category term="cs.LG"[^>]*/>)', rb"\1\1"))(body)
    check_feed(URL, doubled)
    paper = paper_from_result(arxiv_feed.parse(doubled).results[0])
    assert paper.categories == ["cs.SE", "cs.LG"]
    assert_valid_paper(paper)


class RawHTTPServer:
    """Answers every connection on 127.0.0.1 with the same raw bytes, status line and headers included."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/api/query"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            with connection:
                connection.recv(65536)
                connection.sendall(self.reply)

    def __enter__(self) -> RawHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave waiting
        self._socket.close()
        self._thread.join(timeout=5)


def _http(body: bytes, *headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + (b"Connection: close\r\n\r\n" + body)
    )


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        # Each escaped from the pager as requests' ChunkedEncodingError or ContentDecodingError before the fix.
        (lambda body: _http(body, b"Content-Length: %d" % (len(body) + 500)), r"IncompleteRead"),
        (lambda body: _http(body, b"Content-Encoding: gzip", b"Content-Length: %d" % len(body)), r"failed to decode"),
        (lambda body: _http(b"zz\r\n" + body, b"Transfer-Encoding: chunked"), r"InvalidChunkLength"),
    ],
    ids=["cut-before-content-length", "bad-gzip-encoding", "bad-chunk"],
)
def test_a_body_cut_short_in_transfer_is_a_malformed_feed(atom_dir: Path, reply, detail) -> None:
    body = (atom_dir / "new_q_testing_s0_m10_bc5a6c384fe9.xml").read_bytes()
    with RawHTTPServer(reply(body)) as raw:
        pager = ArxivApiPager(
            raw.url, 10, delay_seconds=0, max_retries=1, backoff_seconds=0, max_backoff_seconds=0, timeout_seconds=5
        )
        with pytest.raises(
            PageFetchError, match=rf"after 2 attempt\(s\): malformed feed \(incomplete body: .*{detail}"
        ):
            pager.fetch("cat:cs.DB", 0)
