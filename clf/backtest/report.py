"""The backtest's report: per period and policy the served model's scores, and the summary over the periods.

    summary, files = write_report(config, state, Path("runs/backtest"), complete=True)
    # backtest.json (everything), backtest.md (the tables), backtest.png (macro-F1 per period, each policy and TF-IDF)

The summary's differences are period-stratified paired bootstraps (`clf.evaluation.paired`): papers resampled within
each period, both answerers scored on the same rows, the periods averaged with equal weight.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from clf.backtest.config import BacktestConfig
from clf.evaluation.paired import Difference, stratified_paired_bootstrap
from clf.io import write_json_atomic, write_text_atomic

TFIDF = ("tfidf_frozen", "tfidf_retrained")
"""The TF-IDF answerers: frozen on the first model's data, and retrained on the data at every period's start."""


def write_report(
    config: BacktestConfig, state: dict[str, Any], root: Path, *, complete: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Summarises the replayed periods and writes backtest.json, backtest.md and backtest.png in `root`.

    Args:
        config: the backtest's settings.
        state: the replay's state (periods, decisions, policies, models).
        root: the work folder.
        complete: whether every period was replayed.

    Returns:
        The summary and the written files by kind.
    """
    periods = [p["period"] for p in state.get("periods", [])]
    names = [p.name for p in config.policies] + (list(TFIDF) if config.tfidf else [])
    frozen = next((p.name for p in config.policies if p.triggers is None), None)
    summary: dict[str, Any] = {
        "periods": periods,
        "complete": complete,
        "wall_minutes": round(state.get("wall_seconds", 0.0) / 60, 1),
        "compared_with": {"frozen": frozen, "tfidf": "tfidf_retrained" if config.tfidf else None},
        "policies": {},
    }
    decisions = state.get("decisions", [])
    if periods:
        scores = {name: _load(root, name, periods) for name in names}
        for name in names:
            row: dict[str, Any] = {
                "mean_f1_macro": _mean(state, name, "f1_macro"),
                "mean_accuracy": _mean(state, name, "accuracy"),
            }
            for label, other in (("minus_frozen", frozen), ("minus_tfidf_retrained", "tfidf_retrained")):
                if other and other != name and other in scores:
                    row[label] = _difference(scores[name], scores[other], config)
            entry = (state.get("policies") or {}).get(name)
            if entry is not None:
                outcomes = Counter(d.get("outcome") for d in decisions if d["policy"] == name and d.get("fire"))
                row.update(
                    retrains=len(entry["retrains"]),
                    promoted=outcomes.get("promoted", 0),
                    archived=outcomes.get("archived", 0),
                    retrain_cpu_minutes=round(entry["cpu"] / 60, 1),
                    decisions=sum(1 for d in decisions if d["policy"] == name),
                )
            elif name == "tfidf_retrained":
                row["retrain_cpu_minutes"] = round(
                    sum(p["scores"][name].get("cpu_seconds", 0.0) for p in state["periods"]) / 60, 1
                )
            summary["policies"][name] = row
    files = {"json": str(root / "backtest.json"), "markdown": str(root / "backtest.md")}
    write_json_atomic(
        root / "backtest.json",
        {
            "summary": summary,
            "periods": state.get("periods", []),
            "decisions": decisions,
            "models": state.get("models", {}),
        },
    )
    write_text_atomic(root / "backtest.md", markdown(summary, state, names))
    if periods and _plot(root / "backtest.png", state, names):
        files["plot"] = str(root / "backtest.png")
    return summary, files


def markdown(summary: dict[str, Any], state: dict[str, Any], names: list[str]) -> str:
    """The report's tables.

    Args:
        summary: `write_report`'s summary.
        state: the replay's state.
        names: the answerers, in column order.

    Returns:
        Markdown: the summary per policy, then macro-F1 (accuracy) per period.
    """
    lines = [
        "| policy | mean macro-F1 | minus frozen [95 % CI] | minus TF-IDF retrained [95 % CI] | mean accuracy "
        "| retrains (promoted / archived) | retrain CPU min |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        row = summary["policies"].get(name)
        if row is None:
            continue
        retrains = (
            f"{row['retrains']} ({row['promoted']} / {row['archived']})"
            if "retrains" in row
            else "every period"
            if name == "tfidf_retrained"
            else "—"
        )
        lines.append(
            f"| {name} | {row['mean_f1_macro']:.4f} | {_diff(row.get('minus_frozen'))} | "
            f"{_diff(row.get('minus_tfidf_retrained'))} | {row['mean_accuracy']:.4f} | {retrains} | "
            f"{row.get('retrain_cpu_minutes', '—')} |"
        )
    lines += ["", "Macro-F1 (accuracy) of the answers served in each period:", ""]
    lines.append("| period | papers | " + " | ".join(names) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    for period in state.get("periods", []):
        cells = []
        for name in names:
            s = period["scores"].get(name)
            cells.append(f"{s['f1_macro']:.4f} ({s['accuracy']:.4f})" if s else "—")
        lines.append(f"| {period['period']} | {period['papers']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(state: dict[str, Any], name: str, metric: str) -> float:
    values = [p["scores"][name][metric] for p in state["periods"] if name in p["scores"]]
    return round(float(np.mean(values)), 4) if values else float("nan")


def _load(root: Path, name: str, periods: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for period in periods:
        with np.load(root / "scores" / name / f"{period}.npz") as data:
            out.append((data["probabilities"], data["truth"]))
    return out


def _difference(
    a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]], config: BacktestConfig
) -> dict[str, Any]:
    result = stratified_paired_bootstrap(
        [p for p, _ in a], [p for p, _ in b], [t for _, t in a], resamples=config.bootstrap_resamples, seed=config.seed
    )
    return {name: _json(d) for name, d in result.items()}


def _json(d: Difference) -> dict[str, float]:
    return {
        "difference": round(d.difference, 4),
        "low": round(d.low, 4),
        "high": round(d.high, 4),
        "share_positive": round(d.share_positive, 3),
    }


def _diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    f1 = d["macro_f1"]
    return f"{100 * f1['difference']:+.2f} [{100 * f1['low']:+.2f}, {100 * f1['high']:+.2f}]"


def _plot(path: Path, state: dict[str, Any], names: list[str]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is a convenience; the tables say the same
        return False
    periods = [p["period"] for p in state["periods"]]
    fig, ax = plt.subplots(figsize=(10, 5))
    for name in names:
        values = [p["scores"].get(name, {}).get("f1_macro", np.nan) for p in state["periods"]]
        style = "--" if name.startswith("tfidf") else "-"
        ax.plot(periods, values, style, marker="o", label=name)
    ax.set_xlabel("period")
    ax.set_ylabel("macro-F1 of the answers served")
    ax.set_title("Backtest: each retraining policy's served model, period by period")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)
    return True
