"""The service dashboard (lightning_app/dashboard.py and static/): its data during a canary, its one action behind a
token, and the page itself in headless Chromium — the numbers it shows against /metrics and the rollout state, and
no request to any host but the service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from clf.deploy import DeploymentController, Phase
from clf.monitoring import AlertManager
from clf.serving import ClassificationService
from clf.serving.config import Batching
from clf.serving.routing import traffic_shares
from lightning_app.app import create_app
from lightning_app.dashboard import STATIC, Dashboard, cached, running_experiment
from tests.deploy.conftest import GATES, PAPERS
from tests.helpers.browser import chromium, requested_urls, screenshot
from tests.helpers.http_service import LoopbackServer

TOKEN = "dashboard-operator-token-0123456789"
CANARY = "v1.1.0"


@dataclass
class Running:
    url: str
    service: ClassificationService
    controller: DeploymentController
    alerts: AlertManager


@pytest.fixture
def canary(tiny_registry) -> Iterator[Running]:
    """A service on v1.0.0 with v1.1.0 in a 50 % canary stage of an hour, and a dashboard that may roll back."""
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    alerts = AlertManager(cooldown_seconds=0)
    controller = DeploymentController(service, alerts=alerts, gates=GATES)
    controller.start_canary(CANARY, stages=[50, 100], stage_seconds=3600)
    alerts.send("Canary started", f"{CANARY} takes 50 % of traffic", "info")
    board = Dashboard(service, controller, alerts, tokens=[TOKEN])
    app = create_app(service, dashboard=board, periodic=[(0.5, controller.tick)])
    with LoopbackServer(app) as server:
        yield Running(server.url, service, controller, alerts)


def _traffic(url: str, count: int, start: int = 0) -> None:
    with requests.Session() as session:
        for n in range(start, start + count):
            body = {**PAPERS[n % 16], "user_id": f"user-{n}"}
            assert session.post(f"{url}/predict", json=body, timeout=30).status_code == 200


def test_the_data_show_the_canary_its_split_its_gates_and_per_version_numbers(canary):
    _traffic(canary.url, 40)
    data = requests.get(f"{canary.url}/dashboard/data", timeout=30).json()
    metrics = requests.get(f"{canary.url}/metrics", params={"window_minutes": 1}, timeout=30).json()
    rollout = data["rollout"]
    assert (rollout["phase"], rollout["candidate"], rollout["stage"]) == ("canary", CANARY, 50)
    assert 3500 < rollout["time_left_s"] <= 3600
    assert data["traffic_shares"] == {"v1.0.0": 0.5, CANARY: 0.5}
    for version, numbers in data["versions"].items():
        assert numbers["total"] == metrics["by_version"][version]["total"]
        assert numbers["latency_p95_ms"] == pytest.approx(metrics["by_version"][version]["latency_p95_ms"])
        assert sum(numbers["confidence"]) == numbers["total"], "every answer in the confidence histogram"
    gates = data["gates"]
    assert gates["canary_requests"] == data["versions"][CANARY]["total"]
    assert gates["limits"]["min_requests"] == GATES.min_requests and gates["limits"]["error_rate"] > 0
    assert [d["action"] for d in data["decisions"]][-1] == "stage_started"
    assert data["alerts"][-1]["title"] == "Canary started"
    assert {entry["version"] for entry in data["registry"]} == {"v1.0.0", CANARY}
    assert data["actions"] == {"rollback": True}


def test_the_root_redirects_to_the_page_and_the_page_ships_everything_it_loads(canary):
    root = requests.get(canary.url, timeout=30, allow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/dashboard"
    page = requests.get(f"{canary.url}/dashboard", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("dashboard.js", "dashboard.css", "uPlot.iife.min.js", "uPlot.min.css"):
        assert requests.get(f"{canary.url}/dashboard/static/{asset}", timeout=30).status_code == 200
    assert sum(path.stat().st_size for path in STATIC.iterdir()) < 300_000, "a few hundred KB at most"
    assert "http" not in page.text.replace("http-equiv", ""), "no absolute URL: nothing from another host"


def test_rolling_back_from_the_dashboard_needs_the_configured_token(canary):
    url = f"{canary.url}/dashboard/rollback"
    assert requests.post(url, timeout=30).status_code == 401
    wrong = requests.post(url, headers={"Authorization": "Bearer " + "x" * 35}, timeout=30)
    assert wrong.status_code == 403 and wrong.json()["reason"] == "forbidden"
    done = requests.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert done.status_code == 200 and done.json()["action"] == "rolled_back"
    assert canary.controller.store.load().phase == Phase.IDLE


def test_the_running_experiment_shows_with_its_interval_and_p_value(tiny_registry, tmp_path):
    from clf.experiments import ABTestingFramework, ExperimentSync

    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    framework = ABTestingFramework(f"sqlite:///{tmp_path / 'experiments.db'}", registry=tiny_registry)
    experiment = framework.create_experiment("new head", "v1.0.0", CANARY, 0.5)
    sync = ExperimentSync(framework, service)
    sync.sync()
    board = Dashboard(service, experiment=cached(lambda: running_experiment(framework, service)))
    with LoopbackServer(create_app(service, dashboard=board, on_shutdown=[sync.close])) as server:
        _traffic(server.url, 8)
        shown = requests.get(f"{server.url}/dashboard/data", timeout=30).json()["experiment"]
    assert shown["experiment_id"] == experiment.id
    assert {shown["control"]["version"], shown["treatment"]["version"]} == {"v1.0.0", CANARY}
    assert shown["recommendation"] and "test" in shown, "the z-test (None until both arms have feedback)"


def test_a_dashboard_without_a_token_is_read_only(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    with LoopbackServer(create_app(service)) as server:
        data = requests.get(f"{server.url}/dashboard/data", timeout=30).json()
        assert data["actions"] == {"rollback": False} and data["rollout"] is None
        refused = requests.post(f"{server.url}/dashboard/rollback", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]


def _polls(driver) -> int:
    return int(driver.find_element("tag name", "body").get_attribute("data-polls") or 0)


def _wait(driver, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the page did not get there")
        time.sleep(0.2)


def _value(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).get_attribute("data-value")


def test_the_page_in_chromium_shows_what_the_metrics_and_the_rollout_say(canary):
    with chromium() as driver:
        driver.get("about:blank")
        requested_urls(driver)  # the browser's own start-up pages, drained: what follows is the dashboard's
        driver.get(f"{canary.url}/dashboard")
        _traffic(canary.url, 24)
        _wait(driver, lambda: _polls(driver) >= 3)
        _traffic(canary.url, 24, start=24)
        seen = _polls(driver)
        _wait(driver, lambda: _polls(driver) >= seen + 2)  # two refreshes after the last request
        metrics = requests.get(f"{canary.url}/metrics", params={"window_minutes": 1}, timeout=30).json()
        state = canary.controller.store.load()

        assert _value(driver, "#stage") == str(state.stage) == "50"
        assert (
            json.loads(_value(driver, "#split"))
            == {"v1.0.0": 0.5, CANARY: 0.5}
            == traffic_shares(canary.service.traffic_rule)
        )
        assert _value(driver, "#candidate") == CANARY and _value(driver, "#live") == "v1.0.0"
        assert _value(driver, "#phase") == "canary"
        for version in ("v1.0.0", CANARY):
            row = f'[id="version-{version}"]'
            expected = metrics["by_version"][version]
            assert int(_value(driver, f"{row} .requests")) == expected["total"]
            assert float(_value(driver, f"{row} .p95")) == pytest.approx(expected["latency_p95_ms"])
        assert int(_value(driver, "#gate-requests td:nth-child(2)")) == metrics["by_version"][CANARY]["total"]
        assert int(driver.find_element("tag name", "body").get_attribute("data-charts")) >= 3
        assert len(driver.find_elements("css selector", "#chart-p95 canvas")) == 1, "the chart is drawn"
        assert "Canary started" in driver.find_element("id", "alerts").text
        assert not driver.find_element("id", "actions").get_attribute("hidden"), "a token is configured"
        shot = screenshot(driver, "dashboard-canary")
        assert shot.stat().st_size > 10_000

        urls = requested_urls(driver)
        assert urls and all(url.startswith(canary.url) or url.startswith("data:") for url in urls), [
            url for url in urls if not url.startswith(canary.url)
        ]
