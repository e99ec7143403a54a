"""Tests for lightning_app: every endpoint over real HTTP on loopback, validation, batching, and `clf serve`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from clf.serving import ClassificationService
from clf.serving.config import Batching, RequestLimits
from lightning_app.app import create_app
from tests.conftest import REPO, load_shared_papers
from tests.helpers.exports import LABELS
from tests.helpers.faults import HeldPredictor, PoisonedPredictor
from tests.helpers.http_service import LoopbackServer
from tests.helpers.serve_process import ServeProcess

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=8)]


@pytest.fixture
def server(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=2))
    with LoopbackServer(create_app(service, limits=RequestLimits(max_body_bytes=50_000))) as running:
        running.service = service
        yield running


def test_predict_one_paper(server):
    response = requests.post(f"{server.url}/predict", json=PAPERS[0], timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == "v1.0.0" and len(body["predictions"]) == 1
    prediction = body["predictions"][0]
    assert prediction["label"] in LABELS.values() and len(prediction["top3"]) == 3


def test_predict_a_list_and_a_batch_with_user_id(server):
    listed = requests.post(f"{server.url}/predict", json=PAPERS[:3], timeout=30).json()
    assert len(listed["predictions"]) == 3 and listed["user_id"] is None
    batch = requests.post(f"{server.url}/predict", json={"papers": PAPERS[:2], "user_id": "u-7"}, timeout=30).json()
    assert len(batch["predictions"]) == 2 and batch["user_id"] == "u-7" and batch["arm"] == "live"
    assert [p["label"] for p in batch["predictions"]] == [p["label"] for p in listed["predictions"][:2]]


def test_an_arxiv_id_is_echoed_in_the_answer_and_reaches_the_listeners(server):
    events = []
    server.service.add_prediction_listener(events.append)
    plain = requests.post(f"{server.url}/predict", json=PAPERS[:2], timeout=30).json()
    papers = [{**PAPERS[0], "arxiv_id": "2401.01234v2"}, PAPERS[1]]
    answered = requests.post(f"{server.url}/predict", json={"papers": papers}, timeout=30).json()

    first, second = answered["predictions"]
    assert first["arxiv_id"] == "2401.01234v2" and "arxiv_id" not in second
    assert list(first)[:-1] == list(plain["predictions"][0])  # the same answer, the id appended
    assert "arxiv_id" not in plain["predictions"][0]
    assert [event.arxiv_ids for event in events] == [(), ("2401.01234v2", None)]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"title": "", "abstract": ""}, 422, "empty text"),
        ({"title": "x", "abstract": "y", "arxiv_id": "2401.1"}, 422, "'arxiv_id' is not an arXiv id; send a new-style"),
        ({"papers": [{"title": "x", "arxiv_id": 12}]}, 422, "'papers[0].arxiv_id' must be a string"),
        ({"title": ["x"], "abstract": "y"}, 422, "'title' must be a string"),
        ({"titel": "x", "abstract": "y"}, 422, "unknown field 'titel'"),
        ([], 422, "no papers"),
        ("just a string", 422, "expected a JSON object or list"),
        ({"papers": "nope"}, 422, "'papers' must be a list"),
        ({"title": "x", "abstract": "y" * 60_000}, 413, "over the 50000-byte limit"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_message(server, body, status, message):
    response = requests.post(f"{server.url}/predict", json=body, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_and_empty_bodies_are_4xx(server):
    for data in (b"{not json", b"", b"\xff\xfe"):
        response = requests.post(f"{server.url}/predict", data=data, timeout=30)
        assert response.status_code == 422, data
        assert "JSON" in response.json()["error"] or "empty body" in response.json()["error"]


def test_health_endpoints(server):
    assert requests.get(f"{server.url}/health", timeout=30).json() == {"status": "ok"}
    response = requests.get(f"{server.url}/health/ml", timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "healthy"
    assert response.json()["checks"]["inference"]["ok"] is True


def test_health_turns_503_when_the_model_files_break(server, tiny_registry):
    (tiny_registry.version_dir("v1.0.0") / "model.safetensors").write_bytes(b"not a safetensors file")
    response = requests.get(f"{server.url}/health/ml", timeout=30)
    assert response.status_code == 503 and response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["checkpoint_valid"]["ok"] is False


def test_metrics_as_json_and_prometheus_text(server):
    answers = [requests.post(f"{server.url}/predict", json=paper, timeout=30).json() for paper in PAPERS[:4]]
    requests.post(f"{server.url}/predict", json={"title": ""}, timeout=30)  # refused: not a prediction
    metrics = requests.get(f"{server.url}/metrics", params={"window_minutes": 5}, timeout=30).json()
    assert metrics["total"] == 4 and metrics["by_version"]["v1.0.0"]["total"] == 4
    assert metrics["latency_p95_ms"] > 0
    text = requests.get(f"{server.url}/metrics", params={"format": "prometheus"}, timeout=30)
    assert text.headers["content-type"].startswith("text/plain")
    assert 'clf_predictions_total{version="v1.0.0"} 4.0' in text.text
    unsure = sum(answer["predictions"][0]["unsure"] for answer in answers)
    assert f'clf_unsure_predictions_total{{version="v1.0.0"}} {float(unsure)}' in text.text
    assert 'clf_requests_total{arm="live",code="200",version="v1.0.0"} 4.0' in text.text
    assert 'clf_requests_total{arm="none",code="422",version="none"} 1.0' in text.text
    assert 'clf_rejections_total{kind="client_error",reason="empty_text"} 1.0' in text.text
    plain = requests.get(f"{server.url}/metrics", headers={"Accept": "text/plain"}, timeout=30).text
    assert plain.startswith("# HELP")
    assert requests.get(f"{server.url}/metrics", params={"window_minutes": 0}, timeout=30).status_code == 422


def test_versions_endpoint(server):
    body = requests.get(f"{server.url}/versions", timeout=30).json()
    assert body["live_version"] == "v1.0.0" and body["loaded_versions"] == ["v1.0.0"]


def test_concurrent_requests_are_batched_and_all_answered(server, tiny_registry):
    held = HeldPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0")
    held.release.set()
    server.service.load("v1.1.0", predictor=held)
    server.service.swap("v1.1.0")
    held.release.clear()  # from here the model is busy with whatever request comes first

    def queued() -> int:
        return requests.get(f"{server.url}/versions", timeout=30).json()["batching"]["v1.1.0"]["queued"]

    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(requests.post, f"{server.url}/predict", json=PAPERS[i % 8], timeout=60) for i in range(16)
        ]
        # The held batch took at most 8 (the CPU default); at least 7 of the others end up waiting behind it.
        deadline = time.monotonic() + 20
        while queued() < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        held.release.set()
        responses = [future.result() for future in futures]
    assert [r.status_code for r in responses] == [200] * 16
    stats = requests.get(f"{server.url}/versions", timeout=30).json()["batching"]["v1.1.0"]
    # Those that waited together share a pass: at least one batch of 7 or more, so at most 10 batches for 16.
    assert stats["texts_run"] == 16 and stats["batches_run"] <= 10 and stats["mean_batch_size"] >= 1.6


def test_clf_serve_runs_the_registry_model_with_json_logs_and_stops_on_sigterm(tiny_registry):
    with ServeProcess(tiny_registry.base_dir, ["--logging.json_logs", "true"]) as process:
        answer = requests.post(f"{process.url}/predict", json=PAPERS[0], timeout=30).json()
        assert answer["version"] == "v1.0.0"
        assert requests.get(f"{process.url}/health/ml", timeout=30).status_code == 200
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells how the process ended.
    assert process.returncode in (0, -signal.SIGTERM), process.stderr
    lines = [json.loads(line) for line in process.stderr.splitlines() if line.strip()]
    assert lines[-1]["message"].startswith("Finished server process")
    assert any(line["message"].startswith("serving v1.0.0") for line in lines)
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "uvicorn.access" and "/predict" in line["message"] for line in lines)


def test_clf_serve_on_an_empty_registry_says_what_to_do(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "clf", "serve", "--registry", str(tmp_path / "empty")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "holds no model versions" in result.stderr and "--service.base_model" in result.stderr


def test_the_running_server_posts_threshold_alerts_to_slack(tiny_registry):
    from clf.monitoring import AlertManager, AlertThresholds
    from tests.helpers.webhook import WebhookReceiver

    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    with WebhookReceiver() as hook:
        alerts = AlertManager(
            slack_webhook=hook.url, thresholds=AlertThresholds(max_p95_latency_ms=0.001, min_requests=3)
        )
        app = create_app(service, alert_manager=alerts, alert_interval_seconds=0.1)
        with LoopbackServer(app) as running:
            for paper in PAPERS[:3]:
                assert requests.post(f"{running.url}/predict", json=paper, timeout=30).status_code == 200
            hook.wait_for(1, timeout=10)
    assert "p95 latency" in hook.texts[0] and "over 3 requests" in hook.texts[0]


def test_periodic_jobs_run_and_shutdown_hooks_fire(tiny_registry):
    import threading

    ticks, stopped = threading.Event(), []
    service = ClassificationService(tiny_registry)
    app = create_app(service, periodic=[(0.05, ticks.set)], on_shutdown=[lambda: stopped.append(True)])
    with LoopbackServer(app):
        assert ticks.wait(5)
    assert stopped == [True]


def test_clf_serve_with_an_experiments_db_routes_users_and_takes_feedback(tiny_registry, tmp_path):
    from clf.experiments import ABTestingFramework

    db = f"sqlite:///{tmp_path / 'experiments.db'}"
    framework = ABTestingFramework(db, registry=tiny_registry)
    experiment = framework.create_experiment("new head", "v1.0.0", "v1.1.0", 0.5)
    framework.close()
    token = "labelling-team-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    with ServeProcess(
        tiny_registry.base_dir, ["--feedback.experiments_db", db], env={"CLF_FEEDBACK_TOKEN": token}
    ) as process:
        url = process.url
        arms = {}
        for n in range(30):
            body = requests.post(f"{url}/predict", json={**PAPERS[n % 8], "user_id": f"user-{n}"}, timeout=30).json()
            arms[f"user-{n}"] = (body["arm"], body["version"])
            assert body["predictions"][0]["experiment_id"] == str(experiment.id)
        assert {arm for arm, _ in arms.values()} == {"control", "treatment"}
        again = requests.post(f"{url}/predict", json={**PAPERS[0], "user_id": "user-3"}, timeout=30).json()
        assert (again["arm"], again["version"]) == arms["user-3"]
        prediction_id = again["predictions"][0]["prediction_id"]
        feedback = {"prediction_id": prediction_id, "true_label": "cs.CV"}
        assert requests.post(f"{url}/feedback", json=feedback, timeout=30).status_code == 401
        answer = requests.post(f"{url}/feedback", json=feedback, headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        random_part, issued, tag, _ = prediction_id.split(".")
        forged = {"prediction_id": f"{random_part}.{issued}.{'f' * 12}.{'f' * 12}", "true_label": "cs.CV"}
        assert requests.post(f"{url}/feedback", json=forged, headers=auth, timeout=30).status_code == 403
        moved = {"prediction_id": f"{random_part}.{issued}.{tag}.{'0' * 12}", "true_label": "cs.CV"}
        assert requests.post(f"{url}/feedback", json=moved, headers=auth, timeout=30).status_code == 404
        assert requests.post(f"{url}/feedback", json={"prediction_id": 3}, headers=auth, timeout=30).status_code == 422
    counts = ABTestingFramework(db, registry=tiny_registry).arm_counts(experiment.id)
    assert sum(arm["predictions"] for arm in counts.values()) == 31, "every routed prediction reached the database"


def test_every_error_has_the_json_shape_and_is_counted(server, monkeypatch):
    missing = requests.get(f"{server.url}/nowhere", timeout=30)
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")
    wrong_method = requests.get(f"{server.url}/predict", timeout=30)
    assert (wrong_method.status_code, wrong_method.json()["reason"]) == (405, "method_not_allowed")
    for window in ("nan", "inf", "-1", "61", "abc"):
        answer = requests.get(f"{server.url}/metrics", params={"window_minutes": window}, timeout=30)
        assert (answer.status_code, answer.json()["reason"]) == (422, "invalid_parameter"), window
    assert requests.get(f"{server.url}/metrics", params={"format": "xml"}, timeout=30).status_code == 422

    def broken() -> dict:
        raise RuntimeError("a bug in the service")

    monkeypatch.setattr(server.service, "batch_stats", broken)
    failed = requests.get(f"{server.url}/versions", timeout=30)
    assert failed.status_code == 500 and failed.json() == {
        "error": "internal error (RuntimeError); the service logged it",
        "reason": "server_error",
    }
    metrics = requests.get(f"{server.url}/metrics", timeout=30).json()
    assert metrics["client_errors"]["by_reason"] == {"invalid_parameter": 6, "method_not_allowed": 1, "not_found": 1}
    assert (metrics["server_errors"], metrics["errors"], metrics["total"]) == (1, 0, 0)


def test_a_paper_the_model_fails_on_is_answered_with_its_error_beside_the_others(server, tiny_registry):
    server.service.load("v1.1.0", predictor=PoisonedPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0"))
    server.service.swap("v1.1.0")
    mixed = requests.post(f"{server.url}/predict", json=[PAPERS[0], {"title": "poison", "abstract": "x"}], timeout=30)
    assert mixed.status_code == 200
    first, poisoned = mixed.json()["predictions"]
    assert first["label"] and poisoned["label"] is None and "TextEncodeInput" in poisoned["error"]
    alone = requests.post(f"{server.url}/predict", json={"title": "poison", "abstract": "x"}, timeout=30)
    assert (alone.status_code, alone.json()["reason"]) == (500, "model_error")


def test_answers_say_when_the_model_is_unsure_and_give_the_top_k_on_request(server):
    plain = requests.post(f"{server.url}/predict", json=PAPERS[0], timeout=30).json()["predictions"][0]
    assert "ranked" not in plain and "top_k" not in plain
    assert plain["unsure"] is (plain["probability"] < 0.5), "the default abstention threshold without a calibration"
    ranked = requests.post(f"{server.url}/predict", params={"top_k": 3}, json=PAPERS[0], timeout=30).json()
    (answer,) = ranked["predictions"]
    assert [entry["label"] for entry in answer["top_k"]] == [entry["label"] for entry in answer["top3"]]
    probabilities = [entry["probability"] for entry in answer["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 3
    assert requests.post(f"{server.url}/predict", params={"top_k": 0}, json=PAPERS[0], timeout=30).status_code == 422
