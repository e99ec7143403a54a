"""One self-contained ``report.html`` of a run, readable from disk with no server (`clf report`, and the end of
``clf test``).

It gathers what a finished run left in its folders — the TensorBoard events (learning curves), the test report
(metrics, per-class table, confusion matrix, reliability bins, data statistics), the resolved config, the export's
lineage — into one HTML file: every figure is an inline PNG (``data:`` URL), every style inline, no script and no
request to anything. ``clf test`` writes it at the end; ``clf report RUN_DIR`` writes it again from the files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from clf.artifact import Lineage, ModelArtifact, is_artifact

log = logging.getLogger(__name__)

REPORT = "report.html"
"""The file written into the run's logger folder (``version_N``)."""
CURVES = ("train/loss_epoch", "val/loss", "val/acc", "val/f1_macro", "train/acc")
"""The learning curves drawn, when the run logged them."""


def find_log_dir(run_dir: Path) -> Path:
    """The logger folder of `run_dir` to report on: itself when it holds a test report, else its newest
    ``version_N`` (under any logger name) that does.

    Args:
        run_dir: a run folder or a logger folder.

    Returns:
        The folder with ``test_report.json``.

    Raises:
        FileNotFoundError: naming what is missing and what to run.
    """
    if (run_dir / "test_report.json").is_file():
        return run_dir
    found = sorted(run_dir.rglob("test_report.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"{run_dir}: no test_report.json in it or below it. Run `clf test --config CONFIG --ckpt_path best` "
            "first, then `clf report` on the run folder."
        )
    return found[-1].parent


def write_run_report(run_dir: Path, output: Path | None = None) -> Path:
    """Writes the report of the run in `run_dir` (see `report`).

    Args:
        run_dir: the run folder, or one of its logger folders.
        output: the file to write; ``<log dir>/report.html`` by default.

    Returns:
        The written file.
    """
    log_dir = find_log_dir(Path(run_dir))
    test = json.loads((log_dir / "test_report.json").read_text())
    scalars, wall = _scalars(log_dir)
    if not any(tag.startswith(("train/", "val/")) for tag in scalars):
        # A test logged apart from its fit (runs from before they shared one): the curves of the newest sibling.
        for sibling in sorted(log_dir.parent.glob("version_*"), key=lambda p: p.stat().st_mtime, reverse=True):
            curves, times = _scalars(sibling) if sibling != log_dir else ({}, [])
            if any(tag.startswith(("train/", "val/")) for tag in curves):
                scalars, wall = {**curves, **scalars}, sorted(times + wall)
                break
    root = _run_root(log_dir)
    sections = [
        _section("Test metrics", _metrics_table(test.get("metrics", {}))),
        _section("Learning curves", _img(_curves_png(scalars)) if scalars else "<p>No scalars logged.</p>"),
        _section("Per class", _classes_table(test)),
        _section("Confusion matrix", _file_img(log_dir / "confusion_matrix.png")),
        _section("Calibration", _calibration(test.get("calibration"))),
        _section("Data", _data_table(test.get("data"))),
        _section("Lineage", _lineage(root)),
        _section("Reference sample", _reference(root)),
        _section("Timings", _timings(wall, log_dir)),
        _section("Resolved config", _config(log_dir)),
    ]
    title = f"clf run report — {root.name}/{log_dir.name}"
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='muted'>{html.escape(str(log_dir))}, written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>{''.join(sections)}</body></html>"
    )
    target = output or log_dir / REPORT
    target.write_text(page, encoding="utf-8")
    return target


def _scalars(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    found, wall = {}, []
    for tag in events.Tags().get("scalars", []):
        points = events.Scalars(tag)
        found[tag] = [(point.step, point.value) for point in points]
        wall += [point.wall_time for point in points]
    return found, sorted(wall)


def _run_root(log_dir: Path) -> Path:
    """The run folder above a logger folder (the one holding ``export/`` or ``checkpoints/``)."""
    for parent in [log_dir, *log_dir.parents]:
        if (parent / "export").is_dir() or (parent / "checkpoints").is_dir():
            return parent
    return log_dir.parent


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: `clf --help` stays fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves_png(scalars: dict[str, list[tuple[int, float]]]) -> bytes:
    plt = _pyplot()
    other = [tag for tag in sorted(scalars) if "/" in tag and not tag.startswith("hp/")]
    drawn = [tag for tag in CURVES if tag in scalars] or other[:4]
    figure, axes = plt.subplots(1, len(drawn), figsize=(4.2 * len(drawn), 3.2), squeeze=False)
    for ax, tag in zip(axes[0], drawn, strict=True):
        steps, values = zip(*scalars[tag], strict=True)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _calibration(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "<p>No calibration recorded (multi-label models have none; older runs predate it).</p>"
    bins = [b for b in calibration["bins"] if b["count"]]
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(4.4, 4.0))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.bar([b["lower"] for b in bins], [b["accuracy"] for b in bins], width=1 / len(calibration["bins"]),
           align="edge", alpha=0.6, edgecolor="black", label="accuracy")  # fmt: skip
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="C1", label="per bin")
    ax.set_xlabel("top-1 probability")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ece = calibration.get("ece")
    ax.set_title(f"reliability (ECE {ece:.3f})" if ece is not None else "reliability")
    rows = "".join(
        f"<tr><td>{b['lower']:.2f}–{b['upper']:.2f}</td><td>{b['count']}</td><td>{b['confidence']:.3f}</td>"
        f"<td>{b['accuracy']:.3f}</td></tr>"
        for b in bins
    )
    table = f"<table><tr><th>bin</th><th>papers</th><th>mean confidence</th><th>accuracy</th></tr>{rows}</table>"
    return f"<div class='row'>{_img(_png(figure))}{table}</div>"


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
    return f"<table id='metrics'><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _classes_table(test: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{row['precision']:.4f}</td><td>{row['recall']:.4f}</td>"
        f"<td>{row['f1']:.4f}</td><td>{row['support']}</td></tr>"
        for label, row in test.get("classes", {}).items()
    )
    header = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    return f"<table id='classes'>{header}{rows}</table>"


def _data_table(data: dict[str, Any] | None) -> str:
    if not data:
        return "<p>No data statistics recorded.</p>"
    labels = sorted({label for split in data.values() for label in split.get("classes", {})})
    header = "<tr><th>split</th><th>papers</th><th>tokens p50</th><th>tokens p95</th><th>truncated</th>" + "".join(
        f"<th>{html.escape(label)}</th>" for label in labels
    )
    rows = ""
    for name, split in data.items():
        share = split.get("truncated_share")
        rows += (
            f"<tr><td>{html.escape(name)}</td><td>{split['papers']}</td><td>{_num(split.get('tokens_p50'))}</td>"
            f"<td>{_num(split.get('tokens_p95'))}</td><td>{'' if share is None else f'{100 * share:.1f} %'}</td>"
            + "".join(f"<td>{split.get('classes', {}).get(label, 0)}</td>" for label in labels)
            + "</tr>"
        )
    return f"<table id='data'>{header}</tr>{rows}</table>"


def _lineage(root: Path) -> str:
    export = root / "export"
    lineage = ModelArtifact(export, verify=False).lineage if is_artifact(export) else Lineage()
    if lineage == Lineage():
        return "<p>No export (lineage.json) in this run.</p>"
    return f"<pre>{html.escape(json.dumps(lineage.to_json(), indent=2))}</pre>"


def _reference(root: Path) -> str:
    """What production compares its answers with (`clf.artifact.reference`): size, accuracy, class mix, lengths and
    the out-of-scope score's settings."""
    export = root / "export"
    reference = ModelArtifact(export, verify=False).reference if is_artifact(export) else None
    if reference is None:
        return "<p>The export carries no reference sample: production tests no drift and flags no paper.</p>"
    chars = reference.text_chars
    rows = [
        ("fitted on", reference.fitted_on),
        ("papers", str(len(chars))),
        ("accuracy on them", f"{reference.accuracy:.4f}"),
        ("estimated accuracy (mean top-1 probability)", f"{reference.estimated_accuracy:.4f}"),
        ("flagged out of scope", f"{reference.out_of_scope_share:.1%}"),
        ("characters: median (10th–90th percentile)",
         f"{np.median(chars):.0f} ({np.percentile(chars, 10):.0f}–{np.percentile(chars, 90):.0f})"),
        ("MMD bandwidth", f"{reference.bandwidth:.4g}"),
    ]  # fmt: skip
    scope = reference.out_of_scope
    if scope is not None:
        rows.append(("out-of-scope score", f"{' + '.join(scope.components)}, flags above {scope.threshold:.3f} "
                     f"({scope.flag_rate:.0%} of in-scope papers); {scope.fitted_on}"))  # fmt: skip
    mix = ", ".join(f"{label} {share:.1%}" for label, share in sorted(reference.class_mix.items()))
    rows.append(("predicted classes", mix))
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table id='reference'>{body}</table>"


def _timings(wall: list[float], log_dir: Path) -> str:
    if not wall:
        return "<p>No timed events.</p>"
    spent = wall[-1] - wall[0]
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall[0]))
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall[-1]))
    return (
        f"<table><tr><td>first logged</td><td>{start}</td></tr><tr><td>last logged</td><td>{end}</td></tr>"
        f"<tr><td>span</td><td>{spent / 60:.1f} min</td></tr></table>"
    )


def _config(log_dir: Path) -> str:
    path = log_dir / "config.yaml"
    if not path.is_file():
        return "<p>No config.yaml in the logger folder.</p>"
    return f"<pre>{html.escape(path.read_text())}</pre>"


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{body}</section>"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f"<img alt='' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _file_img(path: Path) -> str:
    return _img(path.read_bytes()) if path.is_file() else "<p>No image.</p>"


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.0f}"


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d232a; margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.8rem; border-bottom: 1px solid #d9dee3; }
.muted { color: #5f6b76; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #d9dee3; padding: .25rem .55rem; }
th { background: #f0f3f6; text-align: left; } td { font-variant-numeric: tabular-nums; }
img { max-width: 100%; } #confusion-matrix img { max-width: 640px; }
pre { background: #f6f8fa; padding: .7rem; overflow: auto; font-size: 12px; }
.row { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; }
"""
