"""Tests for clf/data/collector.py: the real `arxiv` client against a loopback arXiv API, and the snapshot source."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import arxiv
import pytest

from clf.data.collector import ArxivCollector, CollectionError, EmptyCategoryError, paper_from_result
from clf.data.preprocess import DatasetPreprocessor
from clf.io import DataFileError, read_json
from tests.conftest import REPO, load_shared_papers
from tests.helpers.arxiv_server import ArxivTestServer

CATEGORIES = ("cs.DB", "cs.NE", "cs.RO")


@pytest.fixture(scope="module")
def papers() -> list[dict]:
    """~300 real papers: 80 of each test category plus papers cross-listed to them from other primaries."""
    chosen: list[dict] = []
    per_primary: Counter[str] = Counter()
    cross = 0
    for paper in load_shared_papers():
        if paper["primary"] in CATEGORIES and per_primary[paper["primary"]] < 80:
            per_primary[paper["primary"]] += 1
            chosen.append(paper)
        elif paper["primary"] not in CATEGORIES and set(paper["categories"]) & set(CATEGORIES) and cross < 60:
            cross += 1
            chosen.append(paper)
        if len(chosen) == 300:
            break
    assert cross > 10, "the fixture needs cross-listed papers to test the primary-category filter"
    return chosen


@pytest.fixture
def server(papers, atom_dir):
    with ArxivTestServer(papers=papers, atom_dir=atom_dir, hang_seconds=5) as running:
        yield running


def api_collector(server: ArxivTestServer, data_dir: Path, **settings) -> ArxivCollector:
    defaults = dict(delay_seconds=0.0, page_size=10, backoff_seconds=0.01, max_retries=3, timeout_seconds=2.0)
    defaults.update(settings)
    return ArxivCollector(data_dir, source="api", api_url=server.url, **defaults)


def saved_ids(data_dir: Path, category: str) -> list[str]:
    path = data_dir / "raw" / "arxiv" / f"{category}.jsonl"
    return [json.loads(line)["arxiv_id"] for line in path.read_text().splitlines()]


def expected_ids(papers: list[dict], category: str) -> list[str]:
    """What a full collection of `category` must keep: its primary papers, newest first like the API sorts."""
    own = [p for p in papers if p["primary"] == category]
    return [p["id"] for p in sorted(own, key=lambda p: (p["published"], p["id"]), reverse=True)]


# --------------------------------------------------------------------------- parsing real Atom responses


def test_metadata_from_recorded_atom_feeds(server):
    client = arxiv.Client(delay_seconds=0, num_retries=0)
    client.query_url_format = server.query_url_format
    new = paper_from_result(next(client.results(arxiv.Search(id_list=["2104.12255v1"]))))
    assert new.arxiv_id == "2104.12255"
    assert new.categories[0] == new.primary_category
    assert new.published <= new.updated and len(new.published) == 10
    assert new.authors and all(isinstance(a, str) and a for a in new.authors)
    assert new.title and "\n" not in new.title and new.abstract and "  " not in new.abstract
    legacy = paper_from_result(next(client.results(arxiv.Search(id_list=["quant-ph/0201082v1"]))))
    assert legacy.arxiv_id == "quant-ph/0201082"
    assert legacy.primary_category == "quant-ph"


# --------------------------------------------------------------------------- rate limit, retries, faults


def test_requests_are_spaced_by_the_delay(server, tmp_path):
    collector = api_collector(server, tmp_path, delay_seconds=0.25)
    collector.collect_papers_by_category("cs.DB", 40)
    arrivals = [r.arrived for r in server.requests]
    assert len(arrivals) >= 4
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # The pager spaces the starts of its requests by 0.25 s; the server stamps their arrival, which trails each start
    # by that request's own latency (a few ms, tens on a loaded machine), so a gap may fall short by as much.
    assert min(gaps) >= 0.25 - 0.05, gaps


def test_default_delay_is_polite():
    assert ArxivCollector(source="api").pager.delay_seconds >= 3.0


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ("503", "HTTP 503"),
        ("429", "HTTP 429 (rate limited by arXiv)"),
        ("hang", "timeout"),
        ("truncated", "malformed feed"),
        ("malformed", "malformed feed"),
        ("empty", "empty feed"),
    ],
)
def test_a_failed_page_is_retried_and_logged(server, papers, tmp_path, caplog, fault, logged):
    server.inject_fault(fault, times=2, match=20)
    collector = api_collector(server, tmp_path, timeout_seconds=0.5, max_backoff_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="clf.data.api_pager"):
        collected = collector.collect_papers_by_category("cs.DB", 80)
    assert [p.arxiv_id for p in collected] == expected_ids(papers, "cs.DB")
    assert saved_ids(tmp_path, "cs.DB") == expected_ids(papers, "cs.DB")
    failures = [r for r in caplog.records if "starting at 20 failed" in r.getMessage()]
    assert len(failures) == 2 and all(logged in r.getMessage() for r in failures), caplog.text


def test_backoff_doubles_between_retries(server, tmp_path):
    server.inject_fault("503", times=3, match=0)
    api_collector(server, tmp_path, backoff_seconds=0.1).collect_papers_by_category("cs.DB", 5)
    first_page = [r.arrived for r in server.requests if r.params.get("start") == "0"]
    gaps = [b - a for a, b in zip(first_page, first_page[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps


def test_clear_error_after_the_last_retry_keeps_saved_pages(server, papers, tmp_path):
    server.inject_fault("503", times=3, match=30)
    collector = api_collector(server, tmp_path, max_retries=2)
    with pytest.raises(CollectionError) as caught:
        collector.collect_papers_by_category("cs.DB", 80)
    message = str(caught.value)
    assert "gave up on the page starting at 30 after 3 attempt(s)" in message
    assert "HTTP 503" in message and "are kept" in message and "Re-run the same command" in message
    saved = saved_ids(tmp_path, "cs.DB")
    assert saved and saved == expected_ids(papers, "cs.DB")[: len(saved)]
    # The same command, once the server has recovered, finishes without fetching the saved pages again.
    server.reset_log()
    collector.collect_papers_by_category("cs.DB", 80)
    assert saved_ids(tmp_path, "cs.DB") == expected_ids(papers, "cs.DB")
    assert min(server.served_starts()) == 30


# --------------------------------------------------------------------------- what is collected


def test_only_primary_category_papers_are_kept_newest_first(server, papers, tmp_path):
    got = api_collector(server, tmp_path).collect_papers_by_category("cs.NE", 30)
    assert [p.arxiv_id for p in got] == expected_ids(papers, "cs.NE")[:30]
    assert all(p.primary_category == "cs.NE" and p.categories[0] == "cs.NE" for p in got)


def test_cross_listed_papers_are_kept_once_without_primary_filter(server, tmp_path):
    collector = api_collector(server, tmp_path, primary_only=False)
    collector.collect_balanced_dataset(list(CATEGORIES), 200)
    ids = [i for c in CATEGORIES for i in saved_ids(tmp_path, c)]
    assert len(ids) == len(set(ids)), "a paper cross-listed to two categories was saved twice"
    assert any(
        json.loads(line)["primary_category"] not in CATEGORIES
        for c in CATEGORIES
        for line in (tmp_path / "raw" / "arxiv" / f"{c}.jsonl").read_text().splitlines()
    )


def test_date_range_goes_into_the_query_and_the_results(server, papers, tmp_path):
    days = sorted(p["published"] for p in papers if p["primary"] == "cs.RO")
    first, last = days[len(days) // 4], days[3 * len(days) // 4]
    got = api_collector(server, tmp_path).collect_papers_by_category("cs.RO", 50, start_date=first, end_date=last)
    published = {p["id"]: p["published"] for p in papers}
    wanted = [i for i in expected_ids(papers, "cs.RO") if first <= published[i] <= last]
    assert [p.arxiv_id for p in got] == wanted[:50] and len(wanted) >= 20
    window = f"submittedDate:[{first.replace('-', '')}0000 TO {last.replace('-', '')}2359]"
    assert all(window in r.params["search_query"] for r in server.requests)


def test_balanced_dataset_and_manifest(server, papers, tmp_path):
    collector = api_collector(server, tmp_path)
    dataset = collector.create_classification_dataset(60, list(CATEGORIES))
    samples = [json.loads(line) for line in dataset.read_text().splitlines()][:60]
    assert Counter(s["label"] for s in samples) == {c: 20 for c in CATEGORIES}
    by_id = {p["id"]: p for p in papers}
    for sample in samples:
        paper = by_id[sample["arxiv_id"]]
        assert sample["text"] == f"{paper['title'].rstrip('.')}. {paper['abstract']}"
    manifest = json.loads((tmp_path / "raw" / "arxiv" / "manifest.json").read_text())
    assert manifest["num_samples"] == 60 and manifest["categories"] == list(CATEGORIES)
    assert manifest["source"]["kind"] == "api" and manifest["source"]["api_url"] == server.url
    assert len(manifest["content_hash"]) == 64 and manifest["created_at"]


def test_snapshot_source_builds_the_same_dataset_offline(shared_papers_path, tmp_path):
    collector = ArxivCollector(tmp_path, source="snapshot", snapshot_path=shared_papers_path)
    dataset = collector.create_classification_dataset(300, list(CATEGORIES))
    samples = [json.loads(line) for line in dataset.read_text().splitlines()][:300]
    assert Counter(s["label"] for s in samples) == {c: 100 for c in CATEGORIES}
    assert len({s["arxiv_id"] for s in samples}) == 300
    again = ArxivCollector(tmp_path / "again", source="snapshot", snapshot_path=shared_papers_path)
    assert again.create_classification_dataset(300, list(CATEGORIES)).read_bytes() == dataset.read_bytes()
    manifest = json.loads((tmp_path / "raw" / "arxiv" / "manifest.json").read_text())
    assert manifest["source"] == {
        "kind": "snapshot",
        "primary_only": True,
        "path": str(shared_papers_path),
        "seed": 42,
        "start_date": None,
        "end_date": None,
    }


# --------------------------------------------------------------------------- papers of other categories


def dataset_samples(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "raw" / "arxiv" / "classification_dataset.jsonl").open()]


def test_snapshot_adds_a_seeded_sample_of_other_categories_after_the_classes(shared_papers_path, tmp_path):
    def collect(name: str, others: int) -> list[dict]:
        collector = ArxivCollector(
            tmp_path / name, source="snapshot", snapshot_path=shared_papers_path, out_of_scope_papers=others
        )
        collector.create_classification_dataset(150, list(CATEGORIES))
        return dataset_samples(tmp_path / name)

    without, with_others, again = collect("without", 0), collect("with", 200), collect("again", 200)
    assert with_others[:150] == without and len(without) == 150
    others = with_others[150:]
    assert len(others) == 200 and with_others == again
    assert not {s["label"] for s in others} & set(CATEGORIES)
    assert [s["arxiv_id"] for s in others] == sorted({s["arxiv_id"] for s in others})
    primary = {p["id"]: p["primary"] for p in load_shared_papers()}
    assert all(primary[s["arxiv_id"]] == s["label"] for s in others)
    assert len({s["label"] for s in others}) > 5, "a uniform sample of the snapshot spans many categories"
    manifest = json.loads((tmp_path / "with" / "raw" / "arxiv" / "manifest.json").read_text())
    assert manifest["num_samples"] == 150 and manifest["out_of_scope"] == 200
    assert manifest["counts"] == {c: 50 for c in CATEGORIES}


def test_other_categories_leave_the_splits_unchanged_and_fill_out_of_scope(shared_papers_path, tmp_path):
    splits = {}
    for others in (0, 300):
        data_dir = tmp_path / str(others)
        ArxivCollector(
            data_dir, source="snapshot", snapshot_path=shared_papers_path, out_of_scope_papers=others
        ).create_classification_dataset(300, list(CATEGORIES))
        paths = DatasetPreprocessor(data_dir, categories=list(CATEGORIES)).run()
        splits[others] = {name: read_json(path) for name, path in paths.items()}
        scope = read_json(data_dir / "processed" / "out_of_scope.json")
        assert (scope["metadata"]["num_samples"] > 250) == bool(others), scope["metadata"]
    for name in ("train", "val", "test"):
        assert splits[300][name] == splits[0][name], name
        assert splits[300][name]["metadata"]["dataset_hash"] == splits[0][name]["metadata"]["dataset_hash"]


def test_api_keeps_cross_listed_papers_of_other_primaries_resumably(server, papers, tmp_path):
    def collect(data_dir: Path, others: int) -> list[dict]:
        api_collector(server, data_dir, out_of_scope_papers=others).create_classification_dataset(240, list(CATEGORIES))
        return dataset_samples(data_dir)

    without = collect(tmp_path / "without", 0)
    assert not list((tmp_path / "without" / "raw" / "arxiv").glob("*.out_of_scope.jsonl"))
    cross = {p["id"] for p in papers if p["primary"] not in CATEGORIES}
    samples = collect(tmp_path / "with", 1000)
    assert samples[: len(without)] == without
    others = samples[len(without) :]
    assert {s["arxiv_id"] for s in others} == cross
    assert [s["arxiv_id"] for s in others] == sorted(cross)
    requests = len(server.requests)
    assert collect(tmp_path / "with", 1000) == samples and len(server.requests) == requests, "re-run refetched"
    saved: set[str] = set()
    for path in (tmp_path / "with" / "raw" / "arxiv").glob("*.out_of_scope.jsonl"):
        ids = [json.loads(line)["arxiv_id"] for line in path.read_text().splitlines()]
        assert len(ids) == len(set(ids)), f"{path.name} saved a paper twice"
        saved.update(ids)
    assert saved == cross

    capped = collect(tmp_path / "capped", 7)[len(without) :]
    assert len(capped) == 7 and {s["arxiv_id"] for s in capped} <= cross
    assert json.loads((tmp_path / "capped" / "raw" / "arxiv" / "manifest.json").read_text())["out_of_scope"] == 7


def test_papers_kept_as_others_are_still_collected_for_their_own_category(server, papers, tmp_path):
    collector = api_collector(server, tmp_path, out_of_scope_papers=1000)
    collector.create_classification_dataset(200, ["cs.DB", "cs.NE"])
    saved_others = {
        json.loads(line)["primary_category"]
        for path in (tmp_path / "raw" / "arxiv").glob("*.out_of_scope.jsonl")
        for line in path.read_text().splitlines()
    }
    assert "cs.RO" in saved_others, "the fixture needs cs.RO papers cross-listed to cs.DB or cs.NE"
    got = collector.collect_papers_by_category("cs.RO", 200)
    assert [p.arxiv_id for p in got] == expected_ids(papers, "cs.RO")


# --------------------------------------------------------------------------- resume after interruption

_CHILD = """
import logging, sys
from clf.data.collector import ArxivCollector
logging.basicConfig(level=logging.INFO)
collector = ArxivCollector(sys.argv[1], source="api", api_url=sys.argv[2], delay_seconds=0.05, page_size=10,
                           category_delay_seconds=0)
collector.collect_balanced_dataset(["cs.DB", "cs.NE", "cs.RO"], 40)
"""


def test_killed_collection_resumes_without_duplicates_or_refetching(server, papers, tmp_path):
    served = []
    killed = threading.Event()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), server.url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
    )

    def kill_halfway(record):
        if record.status == 200:
            served.append(record.params)
            if len(served) == 9 and not killed.is_set():
                killed.set()
                child.send_signal(signal.SIGKILL)

    server.on_request = kill_halfway
    child.wait(timeout=60)
    assert killed.is_set() and child.returncode == -signal.SIGKILL, child.stderr.read()
    server.on_request = None

    raw = tmp_path / "raw" / "arxiv"
    saved_pages = {}
    for category in CATEGORIES:
        state = raw / f"{category}.state.json"
        saved_pages[category] = json.loads(state.read_text())["next_start"] if state.exists() else 0
    assert sum(saved_pages.values()) > 0, "the kill came before any page was saved"
    assert sum(len(saved_ids(tmp_path, c)) for c in CATEGORIES if (raw / f"{c}.jsonl").exists()) < 120

    server.reset_log()
    api_collector(server, tmp_path).collect_balanced_dataset(list(CATEGORIES), 40)
    for category in CATEGORIES:
        ids = saved_ids(tmp_path, category)
        assert len(ids) == len(set(ids)), f"{category}: duplicates after resuming"
        assert ids == expected_ids(papers, category)[: len(ids)] and len(ids) >= 40, category
        refetched = [
            int(r.params["start"])
            for r in server.requests
            if f"cat:{category}" in r.params["search_query"] and int(r.params["start"]) < saved_pages[category]
        ]
        assert refetched == [], f"{category}: saved pages fetched again: {refetched}"


def test_other_settings_on_resume_are_refused(server, tmp_path):
    api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 10)
    before = saved_ids(tmp_path, "cs.DB")
    with pytest.raises(
        CollectionError, match=r"cs\.DB\.jsonl was collected with other settings \(start_date: None then"
    ):
        api_collector(server, tmp_path, start_date="2025-01-01").collect_papers_by_category("cs.DB", 20)
    assert saved_ids(tmp_path, "cs.DB") == before


# --------------------------------------------------------------------------- bad input


def test_empty_category_names_it_and_keeps_the_others(server, tmp_path):
    with pytest.raises(EmptyCategoryError, match=r"no papers with primary category cs\.ZZ .*are kept in"):
        api_collector(server, tmp_path).collect_balanced_dataset(["cs.DB", "cs.ZZ"], 20)
    assert len(saved_ids(tmp_path, "cs.DB")) >= 20


def test_invalid_category_names_the_option(tmp_path):
    with pytest.raises(ValueError, match=r"--categories: 'CS AI' is not an arXiv category"):
        ArxivCollector(tmp_path, source="api").collect_papers_by_category("CS AI", 10)


def test_missing_snapshot_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--source snapshot needs --snapshot_path PATH"):
        ArxivCollector(tmp_path, source="snapshot")
    collector = ArxivCollector(tmp_path, source="snapshot", snapshot_path=tmp_path / "missing.jsonl.gz")
    with pytest.raises(DataFileError, match=r"missing\.jsonl\.gz not found"):
        collector.create_classification_dataset(20, ["cs.DB", "cs.NE"])


def test_corrupt_saved_line_names_file_and_line_and_changes_nothing(server, tmp_path):
    api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 20)
    path = tmp_path / "raw" / "arxiv" / "cs.DB.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = '{"arxiv_id": "broken", "title": \n'
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(DataFileError, match=r"cs\.DB\.jsonl, line 5: not a valid JSON object"):
        api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 40)
    assert path.read_bytes() == before


def test_interrupted_append_is_cut_before_resuming(server, papers, tmp_path):
    api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 20)
    path = tmp_path / "raw" / "arxiv" / "cs.DB.jsonl"
    with path.open("a") as handle:
        handle.write('{"arxiv_id": "half-writ')
    got = api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 30)
    assert [p.arxiv_id for p in got] == expected_ids(papers, "cs.DB")[:30]
    saved = saved_ids(tmp_path, "cs.DB")
    assert saved == expected_ids(papers, "cs.DB")[: len(saved)]


def test_a_larger_request_later_continues_the_same_file(server, papers, tmp_path):
    api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 15)
    first_pass = set(server.served_starts())
    server.reset_log()
    got = api_collector(server, tmp_path).collect_papers_by_category("cs.DB", 50)
    assert [p.arxiv_id for p in got] == expected_ids(papers, "cs.DB")[:50]
    assert not first_pass & set(server.served_starts()), "pages saved by the first run were fetched again"


def test_the_arxiv_client_still_takes_a_session():
    """clf.data.api_pager hands the arxiv client a session with timeouts and feed checks through its `_session`
    attribute, the client's only seam; this fails first when a release of arxiv renames it."""
    import arxiv

    from clf.data.api_pager import ArxivApiPager, FeedSession

    pager = ArxivApiPager("http://127.0.0.1:9/api/query", 10, 0.0, 0, 0.0, 0.0, 1.0)
    assert isinstance(pager._client, arxiv.Client) and isinstance(pager._client._session, FeedSession)
    assert "_session" in vars(arxiv.Client(page_size=1, delay_seconds=0, num_retries=0))
