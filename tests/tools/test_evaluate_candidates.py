"""tools/bench/evaluate_candidates.py: two real models and the baseline side by side on two protocols built from
samples of the shared files, in one process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import SHARED_DATA
from tests.helpers.bench import loaded_bench_tool
from tests.helpers.exports import build_export


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    yield from loaded_bench_tool("evaluate_candidates")


def test_candidates_side_by_side(tool, trained_export, tmp_path, capsys):
    tiny = build_export(tmp_path / "tiny" / "export", seed=1, accuracy=0.3)
    output = tmp_path / "results" / "candidates.json"
    data = ["--snapshot", str(SHARED_DATA / "arxiv" / "papers.jsonl.gz"), "--cache-dir", str(tmp_path / "cache")]
    data += ["--new-snapshot", str(SHARED_DATA / "arxiv" / "new_papers.jsonl.gz"), "--max-papers", "90"]

    document = tool.main(
        [
            *("--candidate", f"fitted={trained_export}", "--candidate", f"random={tiny}"),
            *("--protocols", "standard", "temporal", "--bootstrap-resamples", "100", "--output", str(output)),
            *("--plots", str(tmp_path / "figures")),
            *data,
        ]
    )

    assert json.loads(output.read_text()) == json.loads(json.dumps(document))
    assert list(document["protocols"]) == ["standard", "temporal"]
    for result in document["protocols"].values():
        assert [c["name"] for c in result["candidates"]] == ["fitted", "random", "tfidf_logreg"]
        assert {c["report"]["num_samples"] for c in result["candidates"]} == {result["test_scored"]["count"]}
        assert set(result["versus_baseline"]) == {"fitted", "random"}
        assert set(result["paired_versus_baseline"]) == {"fitted", "random"}
        for name, paired in result["paired_versus_baseline"].items():
            for metric, difference in paired.items():
                assert difference["low"] <= difference["difference"] <= difference["high"]
                assert difference["difference"] == pytest.approx(result["versus_baseline"][name][metric], abs=1e-6)
    temporal = {c["name"]: c["report"] for c in document["protocols"]["temporal"]["candidates"]}
    assert temporal["fitted"]["accuracy"] > temporal["random"]["accuracy"]  # a fitted head against random weights
    table = output.with_suffix(".md").read_text()
    assert "**Sampled (--max-papers 90)" in table
    assert table.count("| tfidf_logreg |") == 2
    assert table.count("| fitted |") == 4, "a row in each protocol's table and in its paired differences"
    fitted = temporal["fitted"]
    assert f"| fitted | {fitted['accuracy']:.4f} [{fitted['intervals']['accuracy']['low']:.4f}," in table
    assert table in capsys.readouterr().out
    figures = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert figures == [
        f"{kind}_{name}.png" for kind in ("per_class_f1", "reliability") for name in ("standard", "temporal")
    ]


def test_two_candidates_of_one_name_are_refused(tool, tmp_path):
    tiny = build_export(tmp_path / "export", seed=1, accuracy=0.3)
    with pytest.raises(SystemExit, match="named alike"):
        tool.main(["--candidate", f"a={tiny}", "--candidate", f"a={tiny}", "--output", str(tmp_path / "x.json")])


def test_nothing_to_evaluate_is_refused(tool, tmp_path):
    with pytest.raises(SystemExit):
        tool.main(["--no-baseline", "--output", str(tmp_path / "x.json")])
    assert not Path(tmp_path / "x.json").exists()
