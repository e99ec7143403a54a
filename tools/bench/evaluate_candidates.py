"""Every candidate side by side on the honest protocols, in one process: models and the TF-IDF baseline.

    python tools/bench/evaluate_candidates.py \
        --candidate quickstart=runs/quickstart/export --candidate v1.2.0 --registry models/classification \
        --protocols standard temporal date_ordered

A candidate is ``NAME=EXPORT_FOLDER`` or a registered version (``v1.2.0``, ``production``). For each protocol
(`clf.evaluation.protocol`, built once under ``--cache-dir``) every model is scored through the predictor on the
same test papers — less any paper one of them was trained or validated on, from their lineage or
``--trained-on NAME=DATA_DIR`` — and the TF-IDF + logistic-regression baseline is trained on the protocol's train
papers (C chosen on its val papers) and scored beside them. Writes tools/bench/results/evaluate_candidates.json
(--output) and a Markdown table beside it (.md, for docs/RESULTS.md) with accuracy and macro-F1 with their 95 %
bootstrap intervals, top-3 and any-listed accuracy, ECE (15 bins), the unsure share at each model's threshold and
the time taken, and prints the table; ``--plots DIR`` also draws each protocol's reliability diagram and per-class
F1. A model
whose artifact has a TF-IDF companion or a temperature is also scored at each stage, from the same forward pass:
``NAME [encoder]`` (the encoder alone) and ``NAME [mixture]`` (before the temperature); --no-stages leaves them out.

``--max-papers N`` builds the protocols from samples of N papers per source file, to check the script in seconds;
real numbers use every paper (the default), which runs every test paper through each model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clf.evaluation.metrics import BOOTSTRAP_RESAMPLES
from clf.evaluation.protocol import (
    DEFAULT_CACHE_DIR,
    DEFAULT_NEW_SNAPSHOT,
    DEFAULT_SNAPSHOT,
    PROTOCOLS,
    build_protocol,
)
from clf.evaluation.suite import ProtocolResult, evaluate_on_protocol

RESULTS = Path(__file__).resolve().parent / "results" / "evaluate_candidates.json"
HEADER = (
    "| candidate | accuracy [95 % CI] | macro-F1 [95 % CI] | top-3 | any-listed | ECE | unsure: share (accuracy sure / "
    "unsure) | test papers | time (s) |"
)


def load_candidates(specs: Sequence[str], registry: str, backend: str, device: str) -> list[Any]:
    """Loads each candidate: ``NAME=FOLDER`` (an export folder answering as NAME) or a registered version.

    Args:
        specs: the --candidate values.
        registry: the registry folder, for versions.
        backend: torch or onnx.
        device: the torch device.

    Returns:
        One `ModelPredictor` per candidate, named by its version or NAME.

    Raises:
        SystemExit: when two candidates have the same name.
    """
    from clf.inference import ModelPredictor

    predictors = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if sep:
            predictors.append(ModelPredictor(folder, name, device=device, backend=backend))
        else:
            from clf.registry import ModelRegistry

            predictors.append(ModelPredictor.from_registry(ModelRegistry(registry), spec, device, backend))
    names = [p.version for p in predictors]
    if len(set(names)) != len(names):
        raise SystemExit(f"--candidate: two candidates are named alike ({names}); name export folders NAME=FOLDER")
    return predictors


def row(name: str, candidate: dict[str, Any], count: int) -> str:
    """One Markdown table row of a candidate's scores.

    Args:
        name: the candidate's name.
        candidate: its entry in the result (`ScoredCandidate.to_json`).
        count: test papers scored.

    Returns:
        The row.
    """
    report = candidate["report"]
    ci = report["intervals"]
    unsure = report.get("abstention") or {}

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    abstained = (
        f"{unsure['unsure_share']:.2f} ({share(unsure['accuracy_sure'])} / {share(unsure['accuracy_unsure'])})"
        if unsure
        else "–"
    )
    return (
        f"| {name} | {report['accuracy']:.4f} [{ci['accuracy']['low']:.4f}, {ci['accuracy']['high']:.4f}] "
        f"| {report['macro_f1']:.4f} [{ci['macro_f1']['low']:.4f}, {ci['macro_f1']['high']:.4f}] "
        f"| {report['top_k_accuracy']:.4f} | {report['any_listed_accuracy']:.4f} | {report['ece']:.4f} "
        f"| {abstained} | {count} | {candidate['seconds']:.1f} |"
    )


def markdown(document: dict[str, Any]) -> str:
    """The results as Markdown: one table per protocol.

    Args:
        document: the result document.

    Returns:
        The Markdown text.
    """
    settings = document["settings"]
    sampled = settings["max_papers"]
    lines = [
        "Candidates side by side (tools/bench/evaluate_candidates.py): accuracy and macro-F1 with their 95 % "
        f"bootstrap intervals ({settings['bootstrap_resamples']:,} resamples), top-3 and any-listed accuracy, ECE over "
        "15 confidence bins, and the time taken (models: predicting the test papers; baseline: fitting, choosing C on "
        f"val, predicting), on {document['machine']['cpu_count']} CPUs"
        + (f" and {document['machine']['cuda']}" if document["machine"]["cuda"] else "")
        + f" with the {settings['backend']} backend."
    ]
    if sampled:
        lines.append(f"\n**Sampled (--max-papers {sampled}): a check of the script, not a result.**")
    for name, result in document["protocols"].items():
        count = result["test_scored"]["count"]
        lines += [
            "",
            f"**{name}**: {result['protocol']['description']}. {count} test papers.",
            "",
            HEADER,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *(row(c["name"], c, count) for c in result["candidates"]),
        ]
        paired = result.get("paired_versus_baseline") or {}
        if paired:
            lines += [
                "",
                "Each model minus the baseline on the same papers, with paired bootstrap 95 % intervals:",
                "",
                "| candidate | accuracy difference [95 % CI] | macro-F1 difference [95 % CI] |",
                "| --- | --- | --- |",
                *(
                    f"| {candidate} | {_signed(d['accuracy'])} | {_signed(d['macro_f1'])} |"
                    for candidate, d in paired.items()
                ),
            ]
    return "\n".join(lines) + "\n"


def _signed(difference: dict[str, float]) -> str:
    points = {k: 100 * difference[k] for k in ("difference", "low", "high")}
    return f"{points['difference']:+.2f} points [{points['low']:+.2f}, {points['high']:+.2f}]"


def plot(result: ProtocolResult, folder: Path, name: str) -> None:
    """Writes ``reliability_<protocol>.png`` (answers, the uncalibrated mixtures and the baseline) and
    ``per_class_f1_<protocol>.png`` (answers and the baseline) into `folder`.

    Args:
        result: one protocol's scores.
        folder: where the figures go.
        name: the protocol's name.
    """
    from clf.evaluation.plots import per_class_f1_plot, reliability_diagram

    def stage(candidate: Any) -> str:
        return candidate.details.get("stage", "answers") if candidate.kind == "model" else "baseline"

    answers = {c.name: c.report for c in result.candidates if stage(c) in ("answers", "baseline")}
    calibration = {c.name: c.report for c in result.candidates if stage(c) in ("answers", "mixture", "baseline")}
    title = f"{name}: {len(result.samples)} test papers"
    folder.mkdir(parents=True, exist_ok=True)
    reliability_diagram(calibration, folder / f"reliability_{name}.png", title=title)
    per_class_f1_plot(answers, folder / f"per_class_f1_{name}.png", title=title)


def machine() -> dict[str, Any]:
    """The hardware and software the timings were taken on.

    Returns:
        Platform, processor, CPU count and the Python, torch and scikit-learn versions.
    """
    import sklearn
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scikit_learn": sklearn.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluates every candidate on every protocol asked for.

    Args:
        args: the parsed command line.

    Returns:
        The result document, as written to the JSON file.
    """
    started = time.perf_counter()
    predictors = load_candidates(args.candidate, args.registry, args.backend, args.device)
    labels = predictors[0].labels if predictors else list(args.categories)
    trained_on = dict(spec.split("=", 1) for spec in args.trained_on)
    protocols: dict[str, Any] = {}
    for name in args.protocols:
        t0 = time.perf_counter()
        protocol = build_protocol(
            name,
            categories=labels,
            snapshot=args.snapshot,
            new_snapshot=args.new_snapshot,
            cache_dir=args.cache_dir,
            max_papers=args.max_papers,
            seed=args.seed,
        )
        result: ProtocolResult = evaluate_on_protocol(
            protocol,
            predictors,
            baseline=not args.no_baseline,
            trained_on=trained_on,
            stages=not args.no_stages,
            batch_size=args.batch_size,
            resamples=args.bootstrap_resamples,
            seed=args.seed,
        )
        protocols[name] = {**result.to_json(), "seconds": round(time.perf_counter() - t0, 3)}
        if args.plots is not None:
            plot(result, args.plots, name)
    return {
        "benchmark": "evaluate_candidates",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "candidates": list(args.candidate),
            "backend": args.backend,
            "device": args.device,
            "max_papers": args.max_papers,
            "batch_size": args.batch_size,
            "stages": not args.no_stages,
            "bootstrap_resamples": args.bootstrap_resamples,
            "seed": args.seed,
        },
        "protocols": protocols,
        "seconds": round(time.perf_counter() - started, 3),
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses the command line, evaluates, writes the JSON and Markdown files and prints the table.

    Args:
        argv: the arguments; by default ``sys.argv[1:]``.

    Returns:
        The result document.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", default=[], help="NAME=EXPORT_FOLDER or a registered version")
    parser.add_argument("--registry", default="models/classification", help="the registry of versioned candidates")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--categories", nargs="+", default=None, help="classes, when only the baseline runs")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--snapshot", default=DEFAULT_SNAPSHOT)
    parser.add_argument("--new-snapshot", default=DEFAULT_NEW_SNAPSHOT)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--max-papers", type=int, default=None, help="sample the sources: a check, not a result")
    parser.add_argument("--trained-on", action="append", default=[], help="NAME=DATA_DIR a candidate trained on")
    parser.add_argument("--no-baseline", action="store_true", help="leave the TF-IDF baseline out")
    parser.add_argument(
        "--no-stages",
        action="store_true",
        help="score models only as they answer, not also as [encoder] and [mixture] (their scoring's stages)",
    )
    parser.add_argument("--plots", type=Path, default=None, help="write the reliability and per-class F1 figures here")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bootstrap-resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"the JSON report (default {RESULTS})")
    args = parser.parse_args(argv)
    if not args.candidate and (args.no_baseline or not args.categories):
        parser.error("give at least one --candidate (or --categories for the baseline alone)")
    if any("=" not in spec for spec in args.trained_on):
        parser.error("--trained-on takes NAME=DATA_DIR")
    document = run(args)
    document["command"] = " ".join(
        ["python", "tools/bench/evaluate_candidates.py", *(sys.argv[1:] if argv is None else argv)]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    table = markdown(document)
    args.output.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    print(f"report: {args.output} and {args.output.with_suffix('.md')}")
    return document


if __name__ == "__main__":
    main()
