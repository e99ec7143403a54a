"""`clf backtest`: replay papers through the production loop, one column per retraining policy.

    clf backtest --config configs/backtest.yaml                       # a year of months on the shared data
    clf backtest --config configs/backtest.yaml --max_periods 3       # stop after three; run again to continue
    clf backtest --config configs/backtest.yaml --label_delay_days 30 --shadow_days 0 --work_dir runs/bt-delay30

Every field of `BacktestConfig` is an option (``--start``, ``--policies``, ``--shadow.min_agreement``, ...), declared
once there; ``--config`` reads them from YAML.
"""

from __future__ import annotations

from typing import Any

from clf.backtest.config import BacktestConfig
from clf.io import print_json


def backtest(**settings: Any) -> Any:
    """Replay a papers file period by period: each policy's served model, its decisions, retrains and their cost.

    Resumable: the state is saved after every period in ``--work_dir``, and a run started again continues from the
    first unfinished one. Prints the summary as JSON; the tables are in ``<work_dir>/backtest.md``, the plot in
    ``backtest.png``, everything in ``backtest.json``.

    Args:
        **settings: the fields of `BacktestConfig` (see configs/backtest.yaml and docs/RETRAINING.md), each its own
            option: ``--start 2025-09-01``, ``--label_delay_days 14``, ``--shadow.min_agreement 0.8``.

    Returns:
        The summary and the report files, as JSON-ready objects (also printed).
    """
    from clf.backtest.replay import run_backtest  # torch loads when a replay runs, not for --help

    # jsonargparse reads the call below to build the options: each BacktestConfig field becomes one.
    config = BacktestConfig(**settings)
    result = run_backtest(config)
    return print_json({"complete": result.complete, "summary": result.summary, "files": result.files})
