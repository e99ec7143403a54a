"""`clf serve --workers N`: N worker processes on one port, each a replica of the fleet, one Prometheus exposition."""

from __future__ import annotations

import time

import requests

from clf.deploy import DeploymentStore
from tests.deploy.conftest import PAPERS
from tests.helpers.serve_process import ServeProcess

TOKEN = "labelling-team-0123456789abcdef"


def test_workers_share_the_port_the_fleet_their_metrics_and_the_feedback_limit(tiny_registry, tmp_path):
    store = DeploymentStore(tiny_registry.base_dir)
    flags = ["--workers", "2", "--fleet.deploy_interval_seconds", "0.2", "--feedback.rate_limit", "3/minute"]
    flags += ["--feedback.experiments_db", f"sqlite:///{tmp_path / 'experiments.db'}"]
    with ServeProcess(tiny_registry.base_dir, flags, env={"CLF_FEEDBACK_TOKEN": TOKEN}) as server:
        deadline = time.monotonic() + 60
        while len(store.replicas()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        replicas = {record.id for record in store.replicas()}
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
        statuses = [
            requests.post(  # each on a new connection, to either worker
                f"{server.url}/feedback",
                json={"prediction_id": "never-issued", "true_label": "cs.CV"},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            ).status_code
            for _ in range(8)
        ]
        assert statuses.count(429) == 5, f"one limit of 3 for the client, whichever worker answers: {statuses}"
