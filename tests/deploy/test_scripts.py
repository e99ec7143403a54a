"""tools/deploy.sh and tools/rollback.sh against a registry and a running service on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clf.deploy import CanaryGates, DeploymentController, DeploymentStore, Phase
from clf.serving import ClassificationService
from clf.serving.config import Batching
from lightning_app.app import create_app
from tests.conftest import REPO, load_shared_papers
from tests.deploy.conftest import Traffic
from tests.helpers.exports import LABELS, build_registry
from tests.helpers.http_service import LoopbackServer
from tests.helpers.loopback import free_port

ENV = {**os.environ, "PYTHON": sys.executable}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "tools" / script), *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def registry(tmp_path, tiny_exports, trained_export):
    """v1.0.0 (in production) and v1.1.0: models that pass validation; v1.2.0: a random one that does not."""
    exports = {"v1.0.0": trained_export, "v1.1.0": trained_export, "v1.2.0": tiny_exports["v1.0.0"]}
    return build_registry(tmp_path / "registry", exports, "v1.0.0")


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    papers = load_shared_papers(categories=set(LABELS.values()))[-300:]
    path = tmp_path_factory.mktemp("samples") / "samples.jsonl"
    path.write_text("".join(json.dumps({**p, "label": p["primary"]}) + "\n" for p in papers))
    return path


def test_staging_validates_serves_and_smoke_tests_without_touching_production(registry, sample_data):
    result = _run(
        "deploy.sh",
        "--version",
        "v1.1.0",
        "--environment",
        "staging",
        "--registry",
        str(registry.base_dir),
        "--sample-data",
        str(sample_data),
        "--staging-port",
        str(free_port()),
        "--max-p95-latency-ms",
        "60000",  # a test of the steps, not of speed: a busy 2-core runner can take 200 ms over one paper
    )
    assert result.returncode == 0, result.stderr
    assert "3/4 smoke tests" in result.stderr and "staging passed" in result.stderr
    assert registry.production_version() == "v1.0.0" and DeploymentStore(registry.base_dir).load().phase == Phase.IDLE


def test_a_version_that_fails_validation_stops_at_step_one(registry, sample_data):
    result = _run(
        "deploy.sh",
        "--version",
        "v1.2.0",
        "--environment",
        "staging",
        "--registry",
        str(registry.base_dir),
        "--sample-data",
        str(sample_data),
    )
    assert result.returncode == 1 and "failed validation" in result.stderr and "2/4" not in result.stderr


def test_production_rollout_then_rollback_script(registry, sample_data):
    service = ClassificationService(registry, batching=Batching(max_wait_ms=1))
    # Two copies of one model: only timer noise on a busy 2-core machine separates their latencies.
    controller = DeploymentController(service, gates=CanaryGates(min_requests=10, p95_slack_ms=250.0))
    with LoopbackServer(create_app(service, periodic=[(0.1, controller.tick)])) as server, Traffic(server.url):
        result = _run(
            "deploy.sh",
            "--version",
            "v1.1.0",
            "--registry",
            str(registry.base_dir),
            "--sample-data",
            str(sample_data),
            "--staging-port",
            str(free_port()),
            "--stages",
            "[50, 100]",
            "--stage-seconds",
            "1",
            "--wait-seconds",
            "120",
            "--max-p95-latency-ms",
            "60000",  # validated while the test's clients load the same two cores
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["outcome"]["finished"] is True
        assert registry.production_version() == "v1.1.0" and service.live_version == "v1.1.0"

        back = _run(
            "rollback.sh", "--version", "v1.0.0", "--registry", str(registry.base_dir), "--service-url", server.url
        )
        assert back.returncode == 0, back.stderr
        assert "serving v1.0.0, healthy" in back.stderr and service.live_version == "v1.0.0"
