"""Tests for clf/artifact/scoring.py's abstention fields: ``abstain_target_accuracy`` round-trips, artifacts written
before it existed read as a fixed threshold, and a value out of range names the file."""

from __future__ import annotations

import json

import pytest

from clf.artifact.scoring import DEFAULT_ABSTAIN_BELOW, Scoring, ScoringError, read_scoring, write_scoring


def test_the_target_accuracy_and_its_evidence_round_trip(tmp_path):
    evidence = {"outcome": "reached", "threshold": 0.7312, "coverage": 0.78, "accuracy": 0.903, "papers": 1000}
    scoring = Scoring(abstain_below=0.7312, abstain_target_accuracy=0.9, fitted={"abstain": evidence})

    write_scoring(tmp_path, scoring)

    assert read_scoring(tmp_path) == scoring
    assert json.loads((tmp_path / "scoring.json").read_text())["abstain_target_accuracy"] == 0.9


def test_a_scoring_file_written_before_the_target_existed_reads_as_a_fixed_threshold(tmp_path):
    (tmp_path / "scoring.json").write_text(json.dumps({"calibration": {"temperature": 1.2}, "abstain_below": 0.6}))

    scoring = read_scoring(tmp_path)

    assert (scoring.abstain_below, scoring.abstain_target_accuracy) == (0.6, None)
    assert read_scoring(tmp_path / "elsewhere").abstain_below == DEFAULT_ABSTAIN_BELOW, "no file: the plain scoring"


def test_a_target_out_of_range_is_refused():
    with pytest.raises(ScoringError, match=r"abstain_target_accuracy must be in \(0, 1\] or null, got 1.5"):
        Scoring(abstain_target_accuracy=1.5)
