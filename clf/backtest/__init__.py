"""`clf backtest`: replay a year of papers through the production loop and say what each retraining policy earned.

    from clf.backtest import BacktestConfig, run_backtest
    result = run_backtest(BacktestConfig(start="2025-09-01", end="2026-09-01"))
    result.summary["policies"]["schedule"]["minus_frozen"]     # mean macro-F1 over the periods, with its interval

See `clf.backtest.replay` for what happens in each period, and docs/RETRAINING.md for the policies compared.
"""

from typing import Any

from clf.backtest.config import BacktestConfig, PolicyConfig

__all__ = ["BacktestConfig", "BacktestResult", "PolicyConfig", "run_backtest"]


def __getattr__(name: str) -> Any:
    # The replay loads torch, the registry and the service's types: only when it is asked for, so `clf --help` and
    # the command's option parsing stay light.
    if name in ("BacktestResult", "run_backtest"):
        from clf.backtest import replay

        return getattr(replay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
