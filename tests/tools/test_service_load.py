"""tools/bench/service_load.py against real `clf serve` processes holding a tiny random DistilBERT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.bench import loaded_bench_tool
from tests.helpers.exports import build_registry


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    yield from loaded_bench_tool("service_load")


def test_both_modes_answer_every_request_and_the_server_counts_them(
    tool: ModuleType, tmp_path: Path, tiny_exports: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry = build_registry(tmp_path / "registry", {"v1.0.0": tiny_exports["v1.0.0"]}, production="v1.0.0")
    out = tmp_path / "results" / "service_load.json"

    code = tool.main(
        ["--registry", str(registry.base_dir), "--concurrency", "4", "--requests", "40", "--out", str(out)]
    )

    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result["modes"]) == {"batching_on", "batching_off"}
    assert result["ok"] is True
    assert result["command"].startswith("python tools/bench/service_load.py --registry ")
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["torch"]
    assert result["config"]["version"] == "v1.0.0"
    for name, mode in result["modes"].items():
        client, server, metrics = mode["client"], mode["server"], mode["server_metrics"]
        assert mode["batching"] is (name == "batching_on")
        assert client["sent"] == client["answered"] == 40, client["error_samples"]
        assert client["status_4xx"] == client["status_5xx"] == client["connection_errors"] == 0
        assert not client["stopped_by_time_limit"]
        assert client["requests_per_s"] > 0
        latency = client["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 60_000
        # The monitor saw every warm-up and load request, none failed, and its latencies are plausible.
        assert metrics["requests_total"] == metrics["total"] == 40 + mode["warmup"]["answered"]
        assert metrics["errors_total"] == 0 and metrics["error_rate"] == 0
        assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"]
        assert metrics["latency_p50_ms"] <= latency["p99"]
        assert server["version"] == "v1.0.0"
        assert server["graceful_shutdown"], "the server did not finish its shutdown after SIGTERM"
        assert server["log_error_lines"] == []
    ratio = result["ratio"]
    assert ratio["requests_per_s_on_over_off"] > 0
    assert ratio["p95_ms_on"] == result["modes"]["batching_on"]["client"]["latency_ms"]["p95"]
    printed = capsys.readouterr().out
    assert "batching_on   40/40 answered" in printed and "batching_off  40/40 answered" in printed
    assert "batching on/off:" in printed


def test_a_server_that_cannot_start_is_reported_with_its_log(tool: ModuleType, tmp_path: Path) -> None:
    empty = tmp_path / "empty_registry"
    empty.mkdir()

    with pytest.raises(SystemExit, match="never got healthy") as excinfo:
        tool.main(["--registry", str(empty), "--requests", "4", "--out", str(tmp_path / "out.json")])

    assert "holds no model versions" in str(excinfo.value)
    assert not (tmp_path / "out.json").exists()


def test_summary_counts_each_outcome(tool: ModuleType) -> None:
    records = [{"status": 200, "latency_ms": float(ms), "answered": True, "error": None} for ms in range(1, 101)] + [
        {"status": 422, "latency_ms": 1.0, "answered": False, "error": "422: bad"},
        {"status": 503, "latency_ms": 1.0, "answered": False, "error": "503: closed"},
        {"status": None, "latency_ms": 1.0, "answered": False, "error": "ConnectionError()"},
        {"status": 200, "latency_ms": 1.0, "answered": False, "error": "200: {}"},
    ]

    summary = tool.summarise(records, seconds=2.0)

    assert summary["sent"] == 104 and summary["answered"] == 100
    assert (summary["status_4xx"], summary["status_5xx"], summary["connection_errors"]) == (1, 1, 1)
    assert summary["requests_per_s"] == 50.0
    assert summary["latency_ms"] == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert len(summary["error_samples"]) == 4
