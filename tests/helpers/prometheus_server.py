"""A real Prometheus server (Debian's ``prometheus``) on a loopback port, scraping `clf serve` replicas every second.

It scrapes plain ``/metrics`` of each target, as tools/deploy/prometheus.yml does (the service answers Prometheus's
own Accept header with the text exposition), into a throwaway TSDB folder; `query` runs an instant
PromQL query through the HTTP API, as `clf.deploy.prometheus_source.PrometheusMetrics` does.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.helpers.loopback import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
INSTALL_HINT = "apt-get install prometheus  (.ci/run does this on a fresh machine)"


def prometheus_available() -> bool:
    """Whether the prometheus binary is installed."""
    return Path(PROMETHEUS).is_file()


CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: clf
    metrics_path: /metrics
    static_configs:
      - targets: [{targets}]
"""


class PrometheusServer:
    """Prometheus on 127.0.0.1 scraping `targets` (``host:port`` each) every second while the context is open.

    Args:
        targets: the replicas' addresses.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self.folder = Path(tempfile.mkdtemp(prefix="clf-prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        config = self.folder / "prometheus.yml"
        config.write_text(CONFIG.format(targets=", ".join(f"'{t}'" for t in self.targets)))
        self._log = (self.folder / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not get ready:\n{self.log()[-3000:]}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far."""
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        body = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def targets_up(self) -> int:
        """How many targets answered their last scrape."""
        return int(sum(float(sample["value"][1]) for sample in self.query('up{job="clf"}')))
