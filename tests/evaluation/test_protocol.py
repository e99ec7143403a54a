"""clf/evaluation/protocol.py on the real shared files: the protocols are what clf.data builds, deterministic,
disjoint, and the temporal and date-ordered test papers are later than every paper trained or validated on.

The protocols are built from per-class samples (``max_papers``) to stay within seconds; the full-size build is the
slow test at the end (``pytest -m slow``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from clf.data.cleaning import normalised_title_hash
from clf.data.collector import ArxivCollector
from clf.data.preprocess import DatasetPreprocessor
from clf.evaluation.protocol import (
    DATE_TEST_FRACTION,
    Protocol,
    ProtocolError,
    build_protocol,
    canonical_order,
    split_protocol,
)
from tests.conftest import SHARED_DATA

PAPERS = SHARED_DATA / "arxiv" / "papers.jsonl.gz"
NEW_PAPERS = SHARED_DATA / "arxiv" / "new_papers.jsonl.gz"
CLASSES = ("cs.CV", "cs.DB", "cs.RO")
MAX_PAPERS = 600  # 200 per class


def build(name: str, cache: Path, **options) -> Protocol:
    settings = {"categories": CLASSES, "snapshot": PAPERS, "new_snapshot": NEW_PAPERS, "max_papers": MAX_PAPERS}
    return build_protocol(name, cache_dir=cache, **{**settings, **options})


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("protocols")


@pytest.fixture(scope="module")
def protocols(cache: Path) -> dict[str, Protocol]:
    return {name: build(name, cache) for name in ("standard", "temporal", "date_ordered")}


def ids(samples: list[dict]) -> list[str]:
    return [s["arxiv_id"] for s in samples]


def test_standard_is_byte_for_byte_what_collect_and_preprocess_write(protocols, tmp_path):
    ArxivCollector(tmp_path, source="snapshot", snapshot_path=PAPERS).create_classification_dataset(
        MAX_PAPERS, list(CLASSES)
    )
    paths = DatasetPreprocessor(data_dir=tmp_path, categories=list(CLASSES)).run()
    standard = protocols["standard"]
    for name, path in paths.items():
        assert (standard.data_dir / "splits" / f"{name}.json").read_bytes() == path.read_bytes()
    kept = json.loads((tmp_path / "processed" / "dataset.json").read_text())["metadata"]["num_samples"]
    assert [len(part) for part in standard.parts.values()] == [kept - 120, 60, 60]  # a tenth (rounded up) each
    assert "--num-papers 600" in standard.description


@pytest.mark.parametrize("name", ["standard", "temporal", "date_ordered"])
def test_a_protocol_is_built_again_identically(protocols, tmp_path, name):
    again = build(name, tmp_path)
    for part, samples in protocols[name].parts.items():
        assert ids(again.parts[part]) == ids(samples), part
        written = protocols[name].data_dir / "splits" / f"{part}.json"
        assert (again.data_dir / "splits" / f"{part}.json").read_bytes() == written.read_bytes()


@pytest.mark.parametrize("name", ["standard", "temporal", "date_ordered"])
def test_no_paper_is_in_two_parts(protocols, name):
    parts = protocols[name].parts
    assert all(parts.values()), {part: len(samples) for part, samples in parts.items()}
    for field in ("arxiv_id", "title"):
        seen: dict[str, str] = {}
        for part, samples in parts.items():
            for sample in samples:
                key = normalised_title_hash(sample["title"]) if field == "title" else sample["arxiv_id"]
                assert seen.setdefault(key, part) == part, f"{sample['arxiv_id']} in {seen[key]} and {part}"
        assert all(s["label"] in CLASSES for samples in parts.values() for s in samples)


def test_temporal_tests_on_new_papers_later_than_every_training_paper(protocols):
    temporal, standard = protocols["temporal"], protocols["standard"]
    assert ids(temporal.train) == ids(standard.train) and ids(temporal.val) == ids(standard.val)
    with gzip.open(NEW_PAPERS, "rt", encoding="utf-8") as handle:
        new = {record["id"]: record for record in map(json.loads, handle)}
    assert all(s["arxiv_id"] in new and new[s["arxiv_id"]]["primary"] == s["label"] for s in temporal.test)
    latest = max(s["published"] for s in temporal.train + temporal.val)
    assert min(s["published"] for s in temporal.test) > latest
    assert min(s["published"] for s in temporal.test) >= "2026-06-01"
    # 200 per class asked; cs.DB has only 46 new papers: all of them are taken.
    assert temporal.summary()["parts"]["test"]["label_distribution"] == {"cs.CV": 200, "cs.DB": 46, "cs.RO": 200}


def test_date_ordered_cuts_between_two_days_near_eighty_percent(protocols):
    protocol = protocols["date_ordered"]
    training = protocol.train + protocol.val
    cut = protocol.details["cut_day"]
    assert max(s["published"] for s in training) < cut <= min(s["published"] for s in protocol.test)
    assert abs(len(protocol.test) / (len(training) + len(protocol.test)) - DATE_TEST_FRACTION) < 0.02
    # Every paper of the standard protocol's cleaned pool is in exactly one part.
    pool = ids(protocols["standard"].train + protocols["standard"].val + protocols["standard"].test)
    assert sorted(ids(training + protocol.test)) == sorted(pool)
    # The validation set is a stratified tenth of the training pool: every class is in it, in proportion.
    counts = protocol.summary()["parts"]
    for label, n in counts["val"]["label_distribution"].items():
        pool_n = n + counts["train"]["label_distribution"][label]
        assert abs(n - pool_n / 10) <= 1


def test_a_cached_protocol_is_read_back_and_rebuilt_when_its_source_changes(protocols, cache, tmp_path):
    split = protocols["standard"].data_dir / "splits" / "test.json"
    before = split.stat().st_mtime_ns
    assert ids(build("standard", cache).test) == ids(protocols["standard"].test)
    assert split.stat().st_mtime_ns == before  # read back, not written again
    # Another snapshot (the first 3,000 lines of the shared one) in the same cache: built again from it.
    smaller = tmp_path / "papers.jsonl.gz"
    with gzip.open(PAPERS, "rt", encoding="utf-8") as source, gzip.open(smaller, "wt", encoding="utf-8") as out:
        out.writelines(line for _, line in zip(range(3000), source, strict=False))
    rebuilt = build("standard", tmp_path / "cache", snapshot=smaller)
    assert rebuilt.details["key"] != protocols["standard"].details["key"]
    assert rebuilt.details["source"] == str(smaller)


def snapshot_record(sample: dict, **changes) -> dict:
    """A sample written back in the shared snapshot format, with some fields changed."""
    record = {"id": sample["arxiv_id"], "primary": sample["label"]}
    record.update({key: sample[key] for key in ("title", "abstract", "categories", "published")})
    return {**record, **changes}


def test_new_papers_repeating_or_preceding_training_papers_are_dropped(protocols, tmp_path):
    first, second = [s for s in protocols["standard"].train if s["label"] == "cs.CV"][:2]
    with gzip.open(NEW_PAPERS, "rt", encoding="utf-8") as handle:
        later = [record for record in map(json.loads, handle) if record["primary"] in CLASSES][:60]
    crafted = [
        snapshot_record(first, title="Retitled", published="2026-07-01"),  # a training paper's id again, dated later
        snapshot_record(second, id="2607.99999", published="2026-07-02"),  # another's title under a new id
        {**later[0], "id": "2601.99999", "title": "An older paper", "published": "2020-01-01"},
    ]
    new_file = tmp_path / "new.jsonl.gz"
    with gzip.open(new_file, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(record) + "\n" for record in crafted + later[1:])

    temporal = build("temporal", tmp_path / "cache", new_snapshot=new_file)

    assert temporal.details["test_dropped_repeating_a_training_paper"] == 2
    assert temporal.details["test_dropped_not_later_than_training"] == 1
    assert ids(temporal.train) == ids(protocols["standard"].train)
    kept = set(ids(temporal.test))
    assert kept <= {record["id"] for record in later[1:]} and len(kept) > 50


def test_the_classes_are_collected_in_clfs_order_whatever_order_the_model_gives(protocols, cache):
    assert canonical_order(["cs.RO", "zz.XX", "cs.CV", "cs.DB"]) == ("cs.CV", "cs.DB", "cs.RO", "zz.XX")
    shuffled = build("standard", cache, categories=("cs.RO", "cs.CV", "cs.DB"))
    assert shuffled.data_dir == protocols["standard"].data_dir and ids(shuffled.test) == ids(protocols["standard"].test)


def test_a_split_file_protocol_trains_the_baseline_on_the_files_beside_it(protocols, tmp_path):
    splits = protocols["standard"].data_dir / "splits"
    protocol = split_protocol(splits / "test.json")
    assert ids(protocol.test) == ids(protocols["standard"].test)
    assert ids(protocol.train) == ids(protocols["standard"].train) and protocol.data_dir is None
    alone = tmp_path / "test.json"
    alone.write_bytes((splits / "test.json").read_bytes())
    sampled = split_protocol(alone, max_papers=10)
    assert len(sampled.test) == 10 and sampled.train == [] and sampled.val == []
    assert ids(sampled.test) == ids(split_protocol(alone, max_papers=10).test)


def test_what_cannot_be_built_is_refused_naming_the_option(tmp_path):
    with pytest.raises(ProtocolError, match="--max_papers must be at least 10 per class"):
        build("standard", tmp_path, max_papers=20)
    with pytest.raises(ProtocolError, match="--protocol must be one of"):
        build("random", tmp_path)
    with pytest.raises(ProtocolError, match="gone.jsonl.gz: not found"):
        build("standard", tmp_path, snapshot=tmp_path / "gone.jsonl.gz")


@pytest.mark.slow
def test_the_full_size_protocols(tmp_path):
    """Every shared paper: 24,523 of the ten classes left after cleaning, 2,284 new ones (about 20 s)."""
    standard, temporal, date_ordered = (
        build_protocol(name, snapshot=PAPERS, new_snapshot=NEW_PAPERS, cache_dir=tmp_path)
        for name in ("standard", "temporal", "date_ordered")
    )
    assert [len(p) for p in standard.parts.values()] == [19617, 2453, 2453]
    assert "--num-papers 30000" in standard.description
    assert len(temporal.test) == 2284
    assert min(s["published"] for s in temporal.test) > max(s["published"] for s in temporal.train + temporal.val)
    assert date_ordered.details["cut_day"] == "2026-02-03" and len(date_ordered.test) == 4877
