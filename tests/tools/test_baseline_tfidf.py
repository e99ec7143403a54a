"""tools/bench/baseline_tfidf.py on tiny splits of 300 real papers from three categories."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from clf.io import write_samples_json
from tests.conftest import load_shared_papers
from tests.helpers.bench import loaded_bench_tool

CATEGORIES = ("cs.CR", "cs.CV", "cs.RO")
PER_CLASS = 100
GRID = (1.0, 3.0, 10.0, 30.0)


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    yield from loaded_bench_tool("baseline_tfidf")


def write_splits(data_dir: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    for name, samples in splits.items():
        write_samples_json(data_dir / "splits" / f"{name}.json", {"split": name, "count": len(samples)}, samples)


@pytest.fixture(scope="module")
def tiny_splits() -> dict[str, list[dict[str, Any]]]:
    """80/10/10 of each class, shuffled with a fixed seed, in the split files' sample format."""
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    rng = random.Random(0)
    for category in CATEGORIES:
        papers = load_shared_papers(limit=PER_CLASS, categories={category})
        assert len(papers) == PER_CLASS, f"the shared data has only {len(papers)} {category} papers"
        samples = [
            {
                "arxiv_id": p["id"],
                "text": p["title"] + ". " + p["abstract"],
                "label": p["primary"],
                "title": p["title"],
                "abstract": p["abstract"],
            }
            for p in papers
        ]
        rng.shuffle(samples)
        n_train, n_val = int(0.8 * PER_CLASS), int(0.1 * PER_CLASS)
        splits["train"] += samples[:n_train]
        splits["val"] += samples[n_train : n_train + n_val]
        splits["test"] += samples[n_train + n_val :]
    return splits


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_splits: dict[str, list[dict[str, Any]]]) -> Path:
    path = tmp_path_factory.mktemp("baseline_data")
    write_splits(path, tiny_splits)
    return path


@pytest.fixture(scope="module")
def report(tool: ModuleType, data_dir: Path) -> dict[str, Any]:
    return tool.run_baseline(data_dir, seed=42, c_grid=GRID)


def test_beats_chance_by_far_on_three_classes(report: dict[str, Any]) -> None:
    test = report["test"]
    assert test["accuracy"] > 0.6
    assert test["macro_f1"] > 0.6
    assert test["top3_accuracy"] == pytest.approx(1.0)  # three classes: the true one is always in the top three
    assert test["labels"] == sorted(CATEGORIES)
    matrix = test["confusion_matrix"]
    assert [sum(row) for row in matrix] == [10, 10, 10]
    assert sum(matrix[i][i] for i in range(3)) / 30 == pytest.approx(test["accuracy"])
    assert set(CATEGORIES) <= set(test["per_class"])
    assert report["splits"]["train"]["count"] == 240
    assert report["splits"]["val"]["count"] == report["splits"]["test"]["count"] == 30


def test_c_is_the_best_on_validation(report: dict[str, Any]) -> None:
    scores = report["val_scores"]
    assert [score["C"] for score in scores] == list(GRID)
    best = max(score["macro_f1"] for score in scores)
    assert report["chosen_C"] == min(score["C"] for score in scores if score["macro_f1"] == best)
    assert all(score["converged"] for score in scores)


def without_timings(scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in score.items() if key != "fit_seconds"} for score in scores]


def test_test_labels_do_not_influence_the_choice_of_c(
    tool: ModuleType,
    tmp_path: Path,
    tiny_splits: dict[str, list[dict[str, Any]]],
    report: dict[str, Any],
) -> None:
    # Rotating the test labels wrecks test accuracy; if C were chosen on test, the choice or val scores would move.
    rotate = {a: b for a, b in zip(CATEGORIES, CATEGORIES[1:] + CATEGORIES[:1], strict=True)}
    corrupted = [{**sample, "label": rotate[sample["label"]]} for sample in tiny_splits["test"]]
    write_splits(tmp_path, {**tiny_splits, "test": corrupted})

    other = tool.run_baseline(tmp_path, seed=42, c_grid=GRID)

    assert other["chosen_C"] == report["chosen_C"]
    assert without_timings(other["val_scores"]) == without_timings(report["val_scores"])
    assert other["test"]["accuracy"] < 0.4


def test_cli_writes_the_report_and_prints_a_summary(
    tool: ModuleType, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results" / "baseline.json"

    tool.main(["--data-dir", str(data_dir), "--output", str(output), "--c-grid", "1", "10"])

    written = json.loads(output.read_text(encoding="utf-8"))
    assert written["chosen_C"] in (1.0, 10.0)
    assert written["test"]["accuracy"] > 0.6
    assert written["machine"]["cpu_count"] >= 1
    assert {"fit", "predict"} <= set(written["timings_s"])
    printed = capsys.readouterr().out
    assert f"accuracy {written['test']['accuracy']:.4f}" in printed
    assert f"chosen C = {written['chosen_C']:g}" in printed


def test_missing_split_names_the_file_and_the_command_that_makes_it(
    tool: ModuleType, tmp_path: Path, tiny_splits: dict[str, list[dict[str, Any]]]
) -> None:
    write_splits(tmp_path, {name: tiny_splits[name] for name in ("train", "test")})

    with pytest.raises(SystemExit, match=r"val\.json") as excinfo:
        tool.run_baseline(tmp_path)

    message = str(excinfo.value)
    assert "train.json" not in message
    assert f"clf preprocess --data-dir {tmp_path}" in message


def test_bad_c_grid_is_refused(tool: ModuleType, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="c_grid"):
        tool.run_baseline(data_dir, c_grid=(1.0, -3.0))
