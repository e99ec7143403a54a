"""`clf serve --workers N`: N worker processes on one port, each a replica of the fleet, one Prometheus exposition."""

from __future__ import annotations

import time

import requests

from clf.deploy import DeploymentStore
from tests.deploy.conftest import PAPERS
from tests.helpers.serve_process import ServeProcess


def test_workers_share_the_port_join_the_fleet_and_merge_their_metrics(tiny_registry):
    store = DeploymentStore(tiny_registry.base_dir)
    with ServeProcess(tiny_registry.base_dir, ["--workers", "2", "--fleet.deploy_interval_seconds", "0.2"]) as server:
        deadline = time.monotonic() + 60
        while len(store.replicas()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        replicas = {record["id"] for record in store.replicas()}
        assert len(replicas) == 2, "each worker is a replica"
        assert store.lease() is not None and store.lease().holder in replicas, "one of them drives rollouts"
        answered_by = set()
        for index in range(20):
            answer = requests.post(f"{server.url}/predict", json=PAPERS[index % 16], timeout=30)  # a new connection
            assert answer.status_code == 200
            answered_by.add(answer.headers["x-clf-replica"])
        assert answered_by <= replicas
        text = requests.get(f"{server.url}/metrics", headers={"Accept": "text/plain"}, timeout=30).text
        assert 'clf_predictions_total{version="v1.0.0"} 20.0' in text, "whichever worker answered, all are counted"
        assert text.count('clf_live_version{pid="') == 2, "a live gauge per worker"
