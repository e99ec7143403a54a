"""Tests for clf/data/snapshot.py: both snapshot formats, streaming sampling, and clear errors."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from clf.data.snapshot import DateRange, SnapshotReader, paper_from_snapshot_record
from clf.io import DataFileError

OAI_RECORD = {
    "id": "0704.0001",
    "submitter": "Pavel Nadolsky",
    "authors": "C. Bal\\'azs, E. L. Berger, P. M. Nadolsky, C.-P. Yuan",
    "title": "Calculation of prompt diphoton production cross sections at Tevatron and\n  LHC energies",
    "comments": "37 pages, 15 figures",
    "journal-ref": "Phys.Rev.D76:013009,2007",
    "doi": "10.1103/PhysRevD.76.013009",
    "categories": "hep-ph cs.LG",
    "abstract": "  A fully differential calculation in perturbative quantum chromodynamics is\npresented.\n",
    "versions": [
        {"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"},
        {"version": "v2", "created": "Tue, 24 Jul 2007 20:10:27 GMT"},
    ],
    "update_date": "2008-11-13",
    "authors_parsed": [["Balázs", "C.", ""], ["Berger", "E. L.", ""]],
}


def test_oai_snapshot_record_is_normalised():
    paper = paper_from_snapshot_record(OAI_RECORD)
    assert paper.arxiv_id == "0704.0001"
    assert paper.primary_category == "hep-ph"
    assert paper.categories == ["hep-ph", "cs.LG"]
    assert paper.published == "2007-04-02"
    assert paper.updated == "2008-11-13"
    assert paper.authors == ["C. Balázs", "E. L. Berger"]
    assert paper.title == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    assert paper.abstract.startswith("A fully differential") and "\n" not in paper.abstract


def test_shared_record_keeps_primary_first():
    record = {
        "id": "2506.00001v2",
        "title": "T",
        "abstract": "A",
        "categories": ["cs.AI", "cs.CL"],
        "primary": "cs.CL",
        "published": "2025-06-03",
    }
    paper = paper_from_snapshot_record(record)
    assert paper.arxiv_id == "2506.00001"
    assert paper.categories == ["cs.CL", "cs.AI"]
    assert paper.updated == "2025-06-03"


def test_sampling_is_balanced_seeded_and_primary_only(shared_papers_path: Path):
    reader = SnapshotReader(shared_papers_path)
    first = reader.sample_by_category(["cs.DB", "cs.NE"], per_category=50, seed=1)
    again = reader.sample_by_category(["cs.DB", "cs.NE"], per_category=50, seed=1)
    other = reader.sample_by_category(["cs.DB", "cs.NE"], per_category=50, seed=2)
    assert {c: len(p) for c, p in first.items()} == {"cs.DB": 50, "cs.NE": 50}
    assert all(p.primary_category == c for c, papers in first.items() for p in papers)
    assert first == again
    assert [p.arxiv_id for p in first["cs.DB"]] != [p.arxiv_id for p in other["cs.DB"]]


def test_sampling_respects_dates_and_cross_listing(shared_papers_path: Path):
    reader = SnapshotReader(shared_papers_path)
    dates = DateRange(date(2025, 1, 1), date(2025, 3, 31))
    sample = reader.sample_by_category(["cs.CL", "cs.AI"], per_category=40, dates=dates, primary_only=False)
    papers = sample["cs.CL"] + sample["cs.AI"]
    assert all("2025-01-01" <= p.published <= "2025-03-31" for p in papers)
    assert len({p.arxiv_id for p in papers}) == len(papers), "a cross-listed paper was drawn twice"
    assert all(c in p.categories for c, drawn in sample.items() for p in drawn)
    # Without primary_only, papers cross-listed to a category count for it too.
    assert any(p.primary_category != c for c, drawn in sample.items() for p in drawn)


def test_missing_snapshot_names_the_path_and_the_option(tmp_path: Path):
    with pytest.raises(DataFileError, match=r"nowhere\.jsonl\.gz not found.*--snapshot"):
        SnapshotReader(tmp_path / "nowhere.jsonl.gz")


def test_corrupt_line_names_file_and_line(tmp_path: Path):
    path = tmp_path / "snap.jsonl.gz"
    good = json.dumps({"id": "1", "title": "t", "abstract": "a", "categories": "cs.AI"})
    with gzip.open(path, "wt") as handle:
        handle.write(good + "\n" + good.replace('"1"', '"2"') + "\n" + '{"id": "3", "title": \n')
    with pytest.raises(DataFileError, match=r"snap\.jsonl\.gz, line 3: not a valid JSON object"):
        list(SnapshotReader(path).iter_papers())


def test_missing_field_names_file_line_and_field(tmp_path: Path):
    path = tmp_path / "snap.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "t", "categories": "cs.AI"}) + "\n")
    with pytest.raises(DataFileError, match=r"snap\.jsonl, line 1: field 'abstract' is missing"):
        list(SnapshotReader(path).iter_papers())
