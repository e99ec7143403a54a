"""Does production's quality watch work on the main job's model? Out-of-scope AUROC, estimated against measured
accuracy, the drift detector's false alarms and power, and what the monitors cost beside a forward pass.

    OMP_NUM_THREADS=1 python tools/bench/quality.py --model runs/quickstart/export --data_dir data/quickstart

A copy of the export (under --work) gets a reference sample (`clf.training.reference.build_reference`): 1,000
validation papers (seeded stratified draw), the out-of-scope model fitted on the training split against the papers
of other categories the preprocessor keeps aside when run on the snapshot (`processed/out_of_scope.json`, written
under --work). Then, single-threaded:

(a) out of scope: AUROC of the score, 'other' papers against the in-scope test papers and against the new papers,
    2-fold cross-fitted over the others (the outlier-exposure model refitted on one half scores the other half), the
    shares flagged at the threshold; the entropy alone beside it;
(b) estimated (mean calibrated top-1 probability) against measured accuracy per window of 300 time-ordered papers;
(c) drift (`clf.monitoring.drift.DriftDetector`, alpha 0.01, 1,000 permutations): 20 no-drift windows of 300 test
    papers, windows with 0/5/10/20/30 % out-of-scope papers, windows of new papers by month: alarm rates (the power
    curve) and windows to the first alarm;
(d) the cost of one `check` and of the per-paper out-of-scope score against the forward pass.

Writes tools/bench/results/quality.json (--out).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import machine  # noqa: E402

from clf.artifact import ModelArtifact
from clf.data.cleaning import model_input_text
from clf.data.datamodule import ArxivDataModule
from clf.data.preprocess import DatasetPreprocessor
from clf.inference import ModelPredictor
from clf.inference.out_of_scope import OutOfScopeScorer
from clf.io import open_text, read_json
from clf.monitoring.drift import DriftDetector
from clf.monitoring.estimates import estimated_accuracy
from clf.training.finishing import select_validation
from clf.training.reference import build_reference, fit_out_of_scope

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "arxiv"
WINDOW = 300
SHARES = (0.0, 0.05, 0.10, 0.20, 0.30)
MONTHS = ("2026-06", "2026-07", "2026-08")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/quickstart/export"))
    parser.add_argument("--data_dir", type=Path, default=Path("data/quickstart"))
    parser.add_argument("--snapshot", type=Path, default=SHARED / "papers.jsonl.gz")
    parser.add_argument("--new_papers", type=Path, default=SHARED / "new_papers.jsonl.gz")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clf_quality_bench"))
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--limit", type=int, default=0, help="at most this many papers per set (a smoke run); 0: all")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "bench" / "results" / "quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    export = args.work / "export"
    shutil.rmtree(export, ignore_errors=True)
    shutil.copytree(args.model, export)
    for name in ("reference.json", "reference.safetensors"):  # the bench builds its own
        (export / name).unlink(missing_ok=True)
    other_data = args.work / "snapshot_data"
    if not (other_data / "processed" / "out_of_scope.json").is_file():
        DatasetPreprocessor(data_dir=other_data).preprocess_dataset(args.snapshot)
    others = read_json(other_data / "processed" / "out_of_scope.json")["samples"]
    timings["preprocess_s"] = time.perf_counter() - started

    artifact = ModelArtifact.open(export)
    data = ArxivDataModule(args.data_dir, categories=artifact.label_map.labels)
    train, test = data.split_samples("train"), data.split_samples("test")
    val = select_validation(data.split_samples("val"), 1000, "stratified", 42)
    new = [
        {"text": model_input_text(p["title"], p["abstract"]), "label": p["primary"], "published": p["published"]}
        for p in (json.loads(line) for line in open_text(args.new_papers))
        if p["primary"] in artifact.label_map.labels
    ]

    if args.limit:
        train, test, new, others = (
            random.Random(0).sample(s, min(args.limit, len(s))) for s in (train, test, new, others)
        )
    mark = time.perf_counter()
    predictor = ModelPredictor(export, "bench")
    reference = build_reference(export, val, train, others, predictor=predictor, fitted_on="bench: 1000 val papers")
    timings["reference_s"] = time.perf_counter() - mark
    predictor = ModelPredictor(export, "bench")  # now with the reference's out-of-scope model
    companion = predictor.scorer.companion
    assert predictor.out_of_scope is not None and companion is not None

    mark = time.perf_counter()
    sets = {name: answer(predictor, samples) for name, samples in (("test", test), ("new", new), ("other", others))}
    sets["reference"] = answer(predictor, val)
    timings["forward_s"] = time.perf_counter() - mark
    labels = predictor.labels
    for name, samples in (("test", test), ("new", new), ("reference", val)):
        sets[name]["true"] = np.array([labels.index(s["label"]) for s in samples])
        sets[name]["published"] = [str(s.get("published") or "") for s in samples]
    for part in sets.values():
        part["flags"] = predictor.out_of_scope.flags(
            predictor.out_of_scope.scores(part["texts"], part["probabilities"], part["features"])
        )

    mark = time.perf_counter()
    out_of_scope = out_of_scope_evaluation(sets, companion, train, others, reference)
    timings["out_of_scope_s"] = time.perf_counter() - mark
    accuracy = {name: accuracy_windows(sets[name]) for name in ("test", "new")}
    mark = time.perf_counter()
    drift = drift_evaluation(reference, sets, out_of_scope.pop("_fold_flags"), args.windows)
    timings["drift_s"] = time.perf_counter() - mark
    cost = cost_evaluation(predictor, reference, sets)

    result = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "tools/bench/quality.py", *sys.argv[1:]]),
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "model": str(args.model),
        "papers": {"reference": len(val), "test": len(test), "new": len(new), "other": len(others)},
        "reference": {
            **reference.summary(),
            "components": list(reference.out_of_scope.components) if reference.out_of_scope else [],
            "threshold": reference.out_of_scope.threshold if reference.out_of_scope else None,
            "evidence": reference.out_of_scope.evidence if reference.out_of_scope else {},
        },
        "out_of_scope": out_of_scope,
        "accuracy_windows": accuracy,
        "drift": drift,
        "cost": cost,
        "seconds": {**{k: round(v, 1) for k, v in timings.items()}, "total": round(time.perf_counter() - started, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("papers", "seconds")}, indent=2))


def answer(predictor: ModelPredictor, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's calibrated probabilities of `samples`, with their texts and companion features."""
    texts = [s["text"] for s in samples]
    features = predictor.scorer.companion.features(texts)  # type: ignore[union-attr]
    probabilities = predictor.scorer(predictor.encoder_probabilities(texts, 16), texts, features).double().numpy()
    return {"texts": texts, "features": features, "probabilities": probabilities}


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside]))


def out_of_scope_evaluation(sets, companion, train, others, reference) -> dict[str, Any]:
    """(a): each fold's model is fitted as build_reference fits it, on the other half of the others."""
    fold = np.random.default_rng(0).permutation(len(others)) % 2
    ref = sets["reference"]
    folds, fold_flags = [], np.zeros(len(others), dtype=bool)
    for with_others in (True, False):
        for f in (0, 1) if with_others else (0,):
            fitted = [s for s, k in zip(others, fold, strict=True) if k != f] if with_others else []
            model, _ = fit_out_of_scope(companion, ref["texts"], ref["probabilities"], ref["features"], train, fitted)
            scorer = OutOfScopeScorer(model, companion)
            score = {n: scorer.scores(sets[n]["texts"], sets[n]["probabilities"], sets[n]["features"]) for n in sets}
            held = fold == f if with_others else np.ones(len(others), dtype=bool)
            if with_others:
                fold_flags[held] = scorer.flags(score["other"][held])
            folds.append(
                {
                    "components": list(model.components),
                    "fold": f if with_others else None,
                    "other_papers_scored": int(held.sum()),
                    "auroc_test": auroc(score["test"], score["other"][held]),
                    "auroc_new": auroc(score["new"], score["other"][held]),
                    "flagged_test": float(scorer.flags(score["test"]).mean()),
                    "flagged_new": float(scorer.flags(score["new"]).mean()),
                    "flagged_other": float(scorer.flags(score["other"][held]).mean()),
                    "flagged_reference": float(scorer.flags(score["reference"]).mean()),
                }
            )
    cross = [f for f in folds if f["fold"] is not None]
    return {
        "cross_fitted": {k: float(np.mean([f[k] for f in cross])) for k in cross[0] if k.startswith(("auroc", "flag"))},
        "folds": folds,
        "entropy_alone": folds[-1],
        "production_model_flagged": {n: float(sets[n]["flags"].mean()) for n in ("test", "new", "reference")},
        "_fold_flags": fold_flags,
    }


def accuracy_windows(part: dict[str, Any]) -> dict[str, Any]:
    """(b): windows of WINDOW papers in publication order."""
    order = np.argsort(np.array(part["published"]), kind="stable")
    windows = []
    for start in range(0, len(order) - WINDOW + 1, WINDOW):
        rows = order[start : start + WINDOW]
        probabilities = part["probabilities"][rows]
        estimate = estimated_accuracy(probabilities.max(axis=1).clip(0, 1).tolist())
        assert estimate is not None
        measured = float(np.mean(probabilities.argmax(axis=1) == part["true"][rows]))
        windows.append(
            {
                "from": part["published"][rows[0]],
                "to": part["published"][rows[-1]],
                "estimated": estimate.to_json(),
                "measured": measured,
                "error_points": 100 * (estimate.value - measured),
            }
        )
    errors = [abs(w["error_points"]) for w in windows]
    return {
        "windows": windows,
        "max_abs_error_points": max(errors, default=None),
        "within_3_points": sum(e <= 3 for e in errors),
    }


def drift_evaluation(reference, sets, other_flags, windows: int) -> dict[str, Any]:
    """(c): seeded windows; the others carry the flags of the fold model that did not see them."""
    detector = DriftDetector(reference, alpha=0.01, permutations=1000, seed=0)
    test, new, other = sets["test"], sets["new"], sets["other"]

    def check(parts: list[tuple[dict[str, Any], np.ndarray, np.ndarray | None]]) -> dict[str, Any]:
        probabilities = np.vstack([p["probabilities"][rows] for p, rows, _ in parts])
        flags = np.concatenate([p["flags"][rows] if f is None else f[rows] for p, rows, f in parts])
        chars = np.concatenate([[len(p["texts"][i]) for i in rows] for p, rows, _ in parts])
        report = detector.check(probabilities, text_chars=chars, out_of_scope=flags).to_json()
        return {
            "alarm": report["alarm"],
            "reasons": report["reasons"],
            "mmd_p": report["mmd"]["p_value"],
            "oos_share": report["out_of_scope"]["share"],
            "oos_p": report["out_of_scope"]["p_value"],
            "chi2_p": report["class_mix"]["chi2_p_value"],
            "psi": report["class_mix"]["psi"],
            "estimated_accuracy": report["estimated_accuracy"]["value"],
        }

    def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
        if not reports:
            return {"windows": 0}
        first = next((i + 1 for i, r in enumerate(reports) if r["alarm"]), None)
        return {
            "windows": len(reports),
            "alarms": sum(r["alarm"] for r in reports),
            "alarm_rate": float(np.mean([r["alarm"] for r in reports])),
            "mmd_alarms": sum("mmd" in r["reasons"] for r in reports),
            "out_of_scope_alarms": sum("out_of_scope" in r["reasons"] for r in reports),
            "chi2_below_0.005": sum(r["chi2_p"] <= 0.005 for r in reports),
            "windows_to_first_alarm": first,
            "median_mmd_p": float(np.median([r["mmd_p"] for r in reports])),
            "reports": reports,
        }

    result: dict[str, Any] = {"window": WINDOW, "alpha": 0.01, "permutations": 1000}
    rng = np.random.default_rng(0)
    no_drift = [check([(test, rng.choice(len(test["texts"]), WINDOW, replace=False), None)]) for _ in range(windows)]
    result["no_drift_test_windows"] = summary(no_drift)
    curve = {}
    for share in SHARES:
        count = round(share * WINDOW)
        reports = []
        for _ in range(windows):
            inside = rng.choice(len(test["texts"]), WINDOW - count, replace=False)
            outside = rng.choice(len(other["texts"]), count, replace=False)
            reports.append(check([(test, inside, None), (other, outside, other_flags)]))
        curve[f"{share:.2f}"] = summary(reports)
    result["out_of_scope_share"] = curve
    months = {}
    for month in MONTHS:
        rows = np.array([i for i, day in enumerate(new["published"]) if day.startswith(month)])
        ordered = rows[np.argsort(np.array(new["published"])[rows], kind="stable")]
        in_order = [check([(new, ordered[s : s + WINDOW], None)]) for s in range(0, len(ordered) - WINDOW + 1, WINDOW)]
        draws = range(windows if len(rows) >= WINDOW else 0)
        drawn = [check([(new, rng.choice(rows, WINDOW, replace=False), None)]) for _ in draws]
        months[month] = {"papers": len(rows), "in_time_order": summary(in_order), "random_draws": summary(drawn)}
    result["new_papers_by_month"] = months
    result["power_curve"] = {
        **{f"out_of_scope_{k}": v["alarm_rate"] for k, v in curve.items()},
        **{f"new_{k}": v["random_draws"].get("alarm_rate") for k, v in months.items()},
    }
    return result


def cost_evaluation(predictor: ModelPredictor, reference, sets) -> dict[str, Any]:
    """(d): seconds per call, the best of several runs (the least disturbed by other work on the machine)."""
    test = sets["test"]
    texts = random.Random(0).sample(test["texts"], 64)
    detector = DriftDetector(reference, alpha=0.01, permutations=1000, seed=0)
    window = test["probabilities"][:WINDOW]

    def best(call, repeats: int = 5) -> float:
        times = []
        for _ in range(repeats):
            mark = time.perf_counter()
            call()
            times.append(time.perf_counter() - mark)
        return min(times)

    oos = predictor.out_of_scope
    assert oos is not None
    features = predictor.scorer.companion.features(texts)  # type: ignore[union-attr]
    probabilities = predictor.predict_probabilities(texts).double().numpy()
    forward = best(lambda: predictor.encoder_probabilities(texts, 8), 3)
    with_oos = best(lambda: predictor.predict_texts(texts), 3)
    predictor.out_of_scope = None
    without_oos = best(lambda: predictor.predict_texts(texts), 3)
    predictor.out_of_scope = oos
    score = best(lambda: oos.scores(texts, probabilities, features))
    return {
        "papers": len(texts),
        "check_300_papers_s": best(lambda: detector.check(window)),
        "forward_per_paper_ms": 1000 * forward / len(texts),
        "out_of_scope_score_per_paper_ms": 1000 * score / len(texts),
        "out_of_scope_score_share_of_forward": score / forward,
        "predict_texts_per_paper_ms": {"with_out_of_scope": 1000 * with_oos / 64, "without": 1000 * without_oos / 64},
    }


if __name__ == "__main__":
    main()
