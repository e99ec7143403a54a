"""Self-test of tests/helpers/arxiv_server.py, driven by the real `arxiv` client (never the internet)."""

from __future__ import annotations

import functools
import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arxiv
import pytest
import requests
from lxml import etree

from tests.helpers.arxiv_server import ArxivTestServer, Fault

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"


@pytest.fixture(scope="module")
def papers(shared_papers_path: Path) -> list[dict[str, Any]]:
    """About 300 real papers: cs.DB primaries, papers cross-listed to cs.DB, others, and some with &, < in text."""
    with gzip.open(shared_papers_path, "rt", encoding="utf-8") as lines:
        everything = [json.loads(line) for line in lines]
    db_primary = [p for p in everything if p["primary"] == "cs.DB"][::8][:90]
    db_cross = [p for p in everything if "cs.DB" in p["categories"][1:]][::3][:40]
    others = [p for p in everything if "cs.DB" not in p["categories"]]
    markup = [p for p in others if "&" in p["abstract"] or "<" in p["abstract"] or "&" in p["title"]][:15]
    chosen = db_primary + db_cross + markup + others[::160][:155]
    return list({p["id"]: p for p in chosen}.values())


@pytest.fixture
def server(papers: list[dict[str, Any]], atom_dir: Path) -> Iterator[ArxivTestServer]:
    with ArxivTestServer(papers=papers, atom_dir=atom_dir, hang_seconds=5.0, retry_after_seconds=2) as running:
        yield running


def make_client(server: ArxivTestServer, page_size: int = 100, timeout: float | None = None) -> arxiv.Client:
    client = arxiv.Client(page_size=page_size, delay_seconds=0, num_retries=0)
    client.query_url_format = server.query_url_format
    if timeout is not None:
        client._session.request = functools.partial(client._session.request, timeout=timeout)
    return client


def fetch(server: ArxivTestServer, **params: Any) -> requests.Response:
    """One raw API request with the parameters the arxiv client sends."""
    query = {"search_query": "cat:cs.DB", "id_list": "", "sortBy": "submittedDate", "sortOrder": "descending"}
    query |= {"start": 0, "max_results": 10} | params
    return requests.get(server.url, params=query, timeout=5)


def short_id(result: arxiv.Result) -> str:
    return re.sub(r"v\d+$", "", result.get_short_id())


def newest_first(papers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(papers, key=lambda p: (p["published"], p["id"]), reverse=True)


def db_search(max_results: int | None = None, query: str = "cat:cs.DB") -> arxiv.Search:
    return arxiv.Search(query, max_results=max_results, sort_by=arxiv.SortCriterion.SubmittedDate)


# Recorded responses ------------------------------------------------------------------------------------------------


def test_recorded_id_lookup_returns_the_recorded_paper(server: ArxivTestServer) -> None:
    [result] = make_client(server).results(arxiv.Search(id_list=["1605.08386"]))

    assert result.title == "Heat-bath random walks with Markov bases"
    assert result.categories == ["math.CO", "math.ST"]
    assert result.primary_category == "math.CO"
    assert [a.name for a in result.authors] == ["Caprice Stanley", "Tobias Windisch"]
    assert server.requests[-1].recorded == "new_id_1605.08386_s0_m100_199195aa31ad.xml"


def test_recorded_search_pages_come_back_in_order(server: ArxivTestServer, atom_dir: Path) -> None:
    results = list(make_client(server, page_size=10).results(arxiv.Search("testing", max_results=60)))

    expected = []
    for start in range(0, 60, 10):
        [page] = atom_dir.glob(f"new_q_testing_s{start}_m10_*.xml")
        expected += [e.findtext(f"{ATOM}id") for e in etree.parse(page).getroot().iter(f"{ATOM}entry")]
    assert [r.entry_id for r in results] == expected
    assert [int(r.params["start"]) for r in server.requests] == [0, 10, 20, 30, 40, 50]
    assert all(r.recorded and r.status == 200 for r in server.requests)
    assert server.served_starts() == []  # recorded pages are not rendered pages


def test_recorded_bad_id_answers_400(server: ArxivTestServer) -> None:
    with pytest.raises(arxiv.HTTPError) as raised:
        list(make_client(server).results(arxiv.Search(id_list=["abc"])))
    assert raised.value.status == 400


# Rendered feeds ----------------------------------------------------------------------------------------------------


def test_category_paging_yields_every_paper_once_newest_first(server: ArxivTestServer, papers: list[dict]) -> None:
    results = list(make_client(server, page_size=25).results(db_search()))

    expected = newest_first([p for p in papers if "cs.DB" in p["categories"]])
    assert 100 < len(expected) < 160
    assert [short_id(r) for r in results] == [p["id"] for p in expected]
    for result, paper in zip(results, expected, strict=True):
        assert result.primary_category == paper["primary"]
        assert result.categories == paper["categories"]
        assert result.title == paper["title"]
        assert result.summary == paper["abstract"]
        assert result.published.date().isoformat() == paper["published"]
    assert any(r.primary_category != "cs.DB" for r in results)  # cross-listed papers count, as on arXiv
    assert server.served_starts() == list(range(0, len(expected), 25))


def test_escaping_and_ascending_order_round_trip(server: ArxivTestServer, papers: list[dict]) -> None:
    markup = [p for p in papers if "&" in p["abstract"] or "<" in p["abstract"] or "&" in p["title"]]
    search = arxiv.Search(
        id_list=[p["id"] for p in markup],
        sort_by=arxiv.SortCriterion.SubmittedDate,
        sort_order=arxiv.SortOrder.Ascending,
    )
    results = list(make_client(server).results(search))

    assert len(markup) >= 5
    assert [short_id(r) for r in results] == [p["id"] for p in reversed(newest_first(markup))]
    by_id = {p["id"]: p for p in markup}
    assert all((r.title, r.summary) == (by_id[short_id(r)]["title"], by_id[short_id(r)]["abstract"]) for r in results)


def test_date_range_returns_only_papers_in_range(server: ArxivTestServer, papers: list[dict]) -> None:
    dates = sorted(p["published"] for p in papers if "cs.DB" in p["categories"])
    low, high = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    query = f"cat:cs.DB AND submittedDate:[{low.replace('-', '')}0000 TO {high.replace('-', '')}2359]"

    results = list(make_client(server, page_size=20).results(db_search(query=query)))

    expected = newest_first([p for p in papers if "cs.DB" in p["categories"] and low <= p["published"] <= high])
    assert [short_id(r) for r in results] == [p["id"] for p in expected]
    assert {low, high} <= {r.published.date().isoformat() for r in results}  # both ends are inclusive
    assert len(expected) < len(dates)


def test_or_andnot_and_id_list_queries(server: ArxivTestServer, papers: list[dict]) -> None:
    client = make_client(server)
    query = "(cat:cs.DB OR cat:cs.NE) ANDNOT cat:cs.LG"
    results = list(client.results(db_search(query=query)))
    expected = [p for p in papers if {"cs.DB", "cs.NE"} & set(p["categories"]) and "cs.LG" not in p["categories"]]
    assert [short_id(r) for r in results] == [p["id"] for p in newest_first(expected)]

    first, second = papers[5]["id"], papers[200]["id"]
    results = list(client.results(arxiv.Search(id_list=[second, first + "v3", "1999.00001"])))
    assert [short_id(r) for r in results] == [second, first]  # relevance keeps the id_list order; unknown id skipped


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"search_query": "ti:deep learning"}, "unsupported field 'ti'"),
        ({"search_query": "cat:cs.DB+AND+cat:cs.AI"}, "malformed category"),
        ({"search_query": "cat:cs.DB AND submittedDate:[2025 TO 2026]"}, "submittedDate must be"),
        ({"search_query": "(cat:cs.DB OR cat:cs.AI"}, "unbalanced parentheses"),
        ({"search_query": "", "id_list": "2501.00001,abc"}, "incorrect id format for abc"),
        ({"sortBy": "citations"}, "sortBy must be one of"),
    ],
)
def test_unsupported_requests_answer_400_with_an_error_feed(
    server: ArxivTestServer, params: dict[str, str], message: str
) -> None:
    response = fetch(server, **params)

    assert response.status_code == 400
    root = etree.fromstring(response.content)  # strict: the error feed is well-formed
    assert message in root.find(f"{ATOM}entry").findtext(f"{ATOM}summary")
    assert server.served_starts(status=400) == [0]


def test_papers_path_loads_lazily(shared_papers_path: Path) -> None:
    with ArxivTestServer(papers_path=shared_papers_path) as server:
        assert server._papers is None
        response = fetch(server, max_results=1)
    total = etree.fromstring(response.content).findtext(f"{OPENSEARCH}totalResults")
    assert int(total) == sum("cs.DB" in p["categories"] for p in server.papers) > 800


def test_constructor_rejects_bad_settings(papers: list[dict]) -> None:
    with pytest.raises(ValueError, match="not both"):
        ArxivTestServer(papers_path=Path("x.jsonl"), papers=papers)
    with pytest.raises(ValueError, match=r"papers\[1\] .* lacks primary"):
        ArxivTestServer(papers=[papers[0], {k: v for k, v in papers[1].items() if k != "primary"}])
    with pytest.raises(ValueError, match="kind must be one of"):
        ArxivTestServer().inject_fault("500")


# Faults ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_status_fault_then_recovery(server: ArxivTestServer, status: int) -> None:
    client = make_client(server, page_size=10)
    server.inject_fault(str(status))

    with pytest.raises(arxiv.HTTPError) as raised:
        list(client.results(db_search(max_results=10)))
    assert raised.value.status == status
    assert len(list(client.results(db_search(max_results=10)))) == 10
    assert [(r.status, r.fault) for r in server.requests] == [(status, Fault(str(status))), (200, None)]


def test_rate_limit_sends_retry_after(server: ArxivTestServer) -> None:
    server.inject_fault(Fault.RATE_LIMITED)
    assert fetch(server).headers["Retry-After"] == "2"


def test_hang_makes_a_short_timeout_client_time_out(server: ArxivTestServer) -> None:
    client = make_client(server, page_size=10, timeout=0.5)
    server.inject_fault("hang")

    began = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):  # not caught by the client's own retries
        list(client.results(db_search(max_results=10)))
    # The hang held the answer for the client's whole timeout; that the client gave up before the hang's 5 s were
    # over is what the ReadTimeout says (a late answer would have been a normal one).
    assert time.monotonic() - began >= 0.5
    assert len(list(client.results(db_search(max_results=10)))) == 10


def test_stop_ends_a_hanging_request_promptly(papers: list[dict]) -> None:
    server = ArxivTestServer(papers=papers, hang_seconds=30.0).start()
    server.inject_fault("hang")
    outcome: list[BaseException | requests.Response] = []

    def call() -> None:
        try:
            outcome.append(fetch(server))
        except requests.RequestException as err:
            outcome.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 20
    while server.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 1

    server.stop()
    stopped = time.monotonic()
    caller.join(20)
    assert not caller.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)  # closed without an answer
    [record] = server.requests
    assert (record.status, record.fault) == (None, Fault.HANG)
    assert stopped < record.arrived + server.hang_seconds, "stop() waited for the hang to run out"


def test_truncated_page_is_cut_mid_entry(server: ArxivTestServer) -> None:
    server.inject_fault("truncated")
    response = fetch(server)

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)
    # The client's own recovering parser keeps the complete entries before the cut and drops the cut one.
    assert len(arxiv._feed.parse(response.content).results) == 5


def test_client_reads_past_a_truncated_page_from_the_next_offset(server: ArxivTestServer, papers: list) -> None:
    server.inject_fault("truncated")
    results = list(make_client(server, page_size=10).results(db_search(max_results=20)))

    expected = newest_first([p for p in papers if "cs.DB" in p["categories"]])[:20]
    assert [short_id(r) for r in results] == [p["id"] for p in expected]
    assert [(int(r.params["start"]), r.fault) for r in server.requests] == [(0, Fault.TRUNCATED), (5, None), (15, None)]


def test_empty_page_keeps_the_true_total(server: ArxivTestServer, papers: list) -> None:
    server.inject_fault("empty")
    root = etree.fromstring(fetch(server).content)  # strict: still well-formed

    assert root.find(f"{ATOM}entry") is None
    assert int(root.findtext(f"{OPENSEARCH}totalResults")) == sum("cs.DB" in p["categories"] for p in papers)


def test_client_on_empty_pages(server: ArxivTestServer) -> None:
    client = make_client(server, page_size=10)
    server.inject_fault("empty")
    assert list(client.results(db_search(max_results=30))) == []  # an empty first page ends the search silently

    server.inject_fault("empty", match=10)
    results = []
    with pytest.raises(arxiv.UnexpectedEmptyPageError):
        results.extend(client.results(db_search(max_results=30)))
    assert len(results) == 10


def test_malformed_answer_is_not_xml(server: ArxivTestServer) -> None:
    client = make_client(server, page_size=10)
    server.inject_fault("malformed")
    response = fetch(server)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)

    server.inject_fault("malformed")
    assert list(client.results(db_search(max_results=30))) == []  # a malformed first page looks empty
    server.inject_fault("malformed", match=lambda params: params["start"] == "20")
    with pytest.raises(arxiv.UnexpectedEmptyPageError):
        list(client.results(db_search(max_results=30)))


def test_corruption_rewrites_the_normal_answer(server: ArxivTestServer) -> None:
    normal = fetch(server, start=10).content
    server.inject_corruption(lambda body: body.replace(b"<entry>", b"<entry>\xff", 1), match=10)
    server.inject_fault("503", match=10)
    with pytest.raises(ValueError, match="use inject_corruption"):
        server.inject_fault("corrupted")

    corrupted, unavailable, healed = (fetch(server, start=10) for _ in range(3))

    # The feed's own <updated> is the time of the request, so compare the bodies without it.
    unstamped = functools.partial(re.sub, rb"\n  <updated>[^<]*</updated>", b"")
    assert corrupted.status_code == 200
    assert unstamped(corrupted.content) == unstamped(normal).replace(b"<entry>", b"<entry>\xff", 1)
    assert unavailable.status_code == 503 and healed.content.count(b"<entry>") == normal.count(b"<entry>")
    assert [r.fault for r in server.requests[1:]] == [Fault.CORRUPTED, Fault.UNAVAILABLE, None]


def test_faults_apply_in_order_to_matching_requests(server: ArxivTestServer) -> None:
    server.inject_fault("503", match=25)
    server.inject_fault("429", times=2)
    assert server.pending_faults == 3

    statuses = [fetch(server, start=start).status_code for start in (0, 25, 0, 25)]

    assert statuses == [429, 503, 429, 200]
    assert server.pending_faults == 0


# Log ---------------------------------------------------------------------------------------------------------------


def test_request_log_and_callback(server: ArxivTestServer) -> None:
    seen = []
    server.on_request = seen.append
    list(make_client(server, page_size=10).results(db_search(max_results=30)))
    assert requests.get(server.url.replace("/api/query", "/elsewhere"), timeout=5).status_code == 404
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:  # the callback runs once the answer has gone out
        time.sleep(0.01)

    log = server.requests
    assert seen == log
    assert [r.status for r in log] == [200, 200, 200, 404]
    assert [r.arrived for r in log] == sorted(r.arrived for r in log)
    assert log[0].params["search_query"] == "cat:cs.DB" and log[0].params["max_results"] == "10"
    assert server.served_starts() == [0, 10, 20]

    server.reset_log()
    assert server.requests == [] and server.served_starts() == []
