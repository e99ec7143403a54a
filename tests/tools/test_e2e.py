"""tools/e2e.sh: the whole path, from the shared snapshot to a canary promoted on a running `clf serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clf.deploy import DeploymentStore, Phase
from clf.registry import ModelRegistry
from tests.conftest import REPO
from tests.helpers.loopback import free_port

ENV = {**os.environ, "PYTHON": sys.executable}
STEPS = [
    "collect",
    "preprocess",
    "fit",
    "test",
    "register_v1",
    "serve",
    "traffic",
    "register_v2",
    "validate",
    "canary",
    "status",
    "stop",
]


def _e2e(*args: str, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "tools" / "e2e.sh"), *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.mark.slow  # about 3 minutes on 2 shared CPU cores: a dozen clf processes, each importing torch
@pytest.mark.timeout(600)
def test_tiny_config_runs_every_step_and_the_canary_ends_in_production(tmp_path: Path) -> None:
    port = free_port()
    work, out = tmp_path / "work", tmp_path / "e2e_tiny.json"
    before = {name: _entries(REPO / name) for name in ("data", "runs")}

    result = _e2e(
        "--config",
        "configs/tiny.yaml",
        "--workdir",
        str(work),
        "--port",
        str(port),
        "--out",
        str(out),
        "--stages",
        "[50, 100]",
        "--stage-seconds",
        "3",
        "--max-p95-latency-ms",
        "5000",  # validation's one-paper latency on two cores shared with other work
        "--",
        # configs/tiny.yaml alone trains a random tiny DistilBERT that answers one class for everything, which
        # deployment validation rightly rejects (class_diversity). Three separable classes and ten epochs give it
        # varied answers in under a minute.
        "--data.categories",
        "[cs.CV, cs.DB, cs.RO]",
        "--model.learning_rate",
        "0.005",
        "--trainer.max_epochs",
        "10",
        "--trainer.limit_train_batches",
        "null",
        "--trainer.limit_val_batches",
        "null",
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["failed_step"] is None
    assert [s["step"] for s in report["steps"]] == STEPS
    assert all(s["result"] == "ok" and s["seconds"] >= 0 for s in report["steps"]), report["steps"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["collect"]["per_category"] == {"cs.CV": 100, "cs.DB": 100, "cs.RO": 100}
    assert 0 <= steps["test"]["test/acc"] <= 1
    assert steps["traffic"]["answered"] == 50 and steps["traffic"]["by_version"] == {"v1.0.0": 50}
    assert steps["validate"]["passed"] is True
    canary = steps["canary"]
    assert canary["outcome"] == "promoted" and canary["decisions"][-1] == "promoted"
    assert canary["traffic"]["failed"] == 0 and set(canary["traffic"]["by_version"]) == {"v1.0.0", "v1.1.0"}
    assert steps["stop"]["graceful_shutdown"] is True
    assert "all 12 steps ok" in result.stderr and "canary" in result.stdout

    # What the deployment state on disk says, read with clf's own classes rather than through the script.
    registry = ModelRegistry(work / "registry")
    assert registry.production_version() == "v1.1.0"
    store = DeploymentStore(registry.base_dir)
    assert store.load().phase == Phase.IDLE and store.decisions()[-1]["action"] == "promoted"
    with socket.socket() as probe:  # the server is gone
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert {name: _entries(REPO / name) for name in ("data", "runs")} == before


def test_a_failed_step_stops_the_run_and_still_writes_the_json(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["data"]["snapshot_path"] = str(tmp_path / "missing.jsonl.gz")
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "e2e.json"

    result = _e2e(
        "--config", str(tmp_path / "broken.yaml"), "--workdir", str(tmp_path / "work"), "--out", str(out), timeout=120
    )

    assert result.returncode == 1
    assert "step 'collect' failed" in result.stderr and "missing.jsonl.gz" in result.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["failed_step"] == "collect"
    [step] = report["steps"]
    assert step["result"] == "failed" and "missing.jsonl.gz" in step["error"]
    assert Path(step["log"]).is_file()
    assert "[2/12] preprocess" not in result.stderr


def test_refuses_a_work_dir_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "old_run.txt").write_text("x")

    result = _e2e("--config", "configs/tiny.yaml", "--workdir", str(tmp_path))

    assert result.returncode == 2 and "is not empty" in result.stderr
    assert _entries(tmp_path) == {"old_run.txt"}


def test_refuses_an_override_of_the_folders_it_owns(tmp_path: Path) -> None:
    result = _e2e("--config", "configs/tiny.yaml", "--workdir", str(tmp_path / "work"), "--", "--data.data_dir", "x")

    assert result.returncode == 2 and "--data.data_dir cannot follow --" in result.stderr
    assert not (tmp_path / "work").exists()
