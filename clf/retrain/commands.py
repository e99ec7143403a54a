"""`clf retrain run|schedule|history`: the retraining pipeline from the command line.

    clf retrain run --config configs/retraining.yaml              # one run; exit status 1 when it failed (cron)
    clf retrain run --config configs/retraining.yaml --growth_threshold 0.2 --dry_run true   # decide, record
    clf retrain run --config configs/retraining.yaml --triggers.mode all --dry_run true      # the decision's evidence
    clf retrain schedule --config configs/retraining.yaml          # every schedule_every_hours until SIGTERM/SIGINT
    clf retrain history --limit 20                                 # the recorded runs, newest first

One function per action. Every field of `RetrainingConfig` is an option of each (``--growth_threshold``,
``--data.source``, ``--email.port``, ...), declared once there; ``--config`` reads them, and the action's own options,
from YAML, and ``--print_config`` writes the merged settings.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from clf.io import print_json
from clf.retrain.config import RetrainingConfig
from clf.retrain.outcomes import RetrainingError, RunStatus
from clf.retrain.triggers import QualitySnapshot

log = logging.getLogger(__name__)


class RetrainingRunFailed(RetrainingError):
    """`clf retrain run` ended with a failed run (its record holds the error); the CLI exits with status 1."""


def run(dry_run: bool = False, **settings: Any) -> Any:
    """Retrain once: detect new papers, decide on the triggers' evidence, retrain, compare, promote or archive, notify.

    Prints JSON; exits with status 1 when the run failed (skipped and completed runs exit 0), so it suits cron.

    Args:
        dry_run: detect new papers and decide, but train and send nothing; the decision is printed and recorded
            (status dry_run) with every trigger's evidence.
        **settings: the fields of `RetrainingConfig` (see configs/retraining.yaml and docs/RETRAINING.md), each its
            own option: ``--growth_threshold 0.2``, ``--triggers.drift false``, ``--email.enabled true``.

    Returns:
        What was printed, as JSON-ready Python objects.

    Raises:
        RetrainingRunFailed: when the run failed (after printing its JSON).
    """
    # jsonargparse reads the call below to build the options: each RetrainingConfig field becomes one.
    result = print_json(_run_once(RetrainingConfig(**settings), "manual", dry_run))
    if result["status"] == RunStatus.FAILED:
        raise RetrainingRunFailed(f"retraining run {result['run_id']} failed: {result['error']}")
    return result


def scheduled(dry_run: bool = False, max_runs: int | None = None, **settings: Any) -> list[dict[str, Any]]:
    """Retrain every schedule_every_hours (start to start) until SIGTERM or SIGINT.

    Args:
        dry_run: detect new papers and decide (recorded as dry_run runs), but train and send nothing.
        max_runs: stop after this many passes.
        **settings: the fields of `RetrainingConfig`, each its own option (as for ``clf retrain run``).

    Returns:
        Each run's record (each printed as it ends).
    """
    return schedule(RetrainingConfig(**settings), dry_run=dry_run, max_runs=max_runs)


def history(
    limit: int = 20,
    status: Literal["completed", "skipped", "failed", "running", "dry_run"] | None = None,
    **settings: Any,
) -> Any:
    """List the recorded retraining runs, newest first.

    Args:
        limit: at most this many runs.
        status: only runs with this status.
        **settings: the fields of `RetrainingConfig` (its ``db`` is read), so the same ``--config`` file serves.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    from clf.experiments.database import make_engine
    from clf.experiments.runs import RetrainingRunStore

    config = RetrainingConfig(**settings)
    return print_json(RetrainingRunStore(make_engine(config.db)).list(limit=limit, status=status))


def schedule(
    config: RetrainingConfig,
    *,
    dry_run: bool = False,
    max_runs: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
    quality: Callable[[str], QualitySnapshot | None] | None = None,
) -> list[dict[str, Any]]:
    """Runs the pipeline every `schedule_every_hours` (start to start) until stopped.

    SIGTERM and SIGINT end the wait between runs at once, and a run in progress is finished (its record closed)
    before the loop ends. A failed run does not stop the schedule: the next one tries again.

    Args:
        config: the settings.
        dry_run: detect and decide only.
        max_runs: stop after this many runs (None: until a signal).
        clock: monotonic seconds (a seam for tests).
        sleep: waits the given seconds, returning True when a stop was requested (a seam for tests); the default
            wait is cut short by SIGTERM and SIGINT.
        quality: production version → its quality evidence, for the drift and accuracy-drop triggers (see
            `RetrainingPipeline`); None: the answers the service logged in `config.db` (`clf.retrain.quality`).

    Returns:
        Each run's result, in order (each is also printed as it ends).
    """
    stop = threading.Event()
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def request_stop(signum: int, _frame: Any) -> None:
            log.info("Received %s: stopping after the current run", signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            handlers[signum] = signal.signal(signum, request_stop)
    wait = sleep or stop.wait
    interval = config.schedule_every_hours * 3600
    results: list[dict[str, Any]] = []
    try:
        while not stop.is_set() and (max_runs is None or len(results) < max_runs):
            started = clock()
            try:
                result = _run_once(config, "schedule", dry_run, quality)
            except Exception as err:  # noqa: BLE001 - e.g. the database is down: log it, try again next time
                log.exception("Retraining run could not start")
                result = {"run_id": None, "status": RunStatus.FAILED.value, "error": f"{type(err).__name__}: {err}"}
            print_json(result)
            results.append(result)
            if stop.is_set() or (max_runs is not None and len(results) >= max_runs):
                break
            delay = max(0.0, interval - (clock() - started))
            log.info("Next retraining run in %.0f s", delay)
            if wait(delay) or stop.is_set():
                break
    finally:
        for number, previous in handlers.items():
            signal.signal(number, previous)
    log.info("Retraining schedule stopped after %d run(s)", len(results))
    return results


def _run_once(
    config: RetrainingConfig,
    trigger: str,
    dry_run: bool,
    quality: Callable[[str], QualitySnapshot | None] | None = None,
) -> dict[str, Any]:
    from clf.retrain.pipeline import RetrainingPipeline
    from clf.retrain.quality import production_quality

    # The service logs its answers into the same database as the runs (clf serve --quality.db, the same URL).
    quality = quality or production_quality(config)
    pipeline = RetrainingPipeline(config, trigger_type=trigger, quality=quality)
    return pipeline.run_pipeline(dry_run=dry_run).to_json()
