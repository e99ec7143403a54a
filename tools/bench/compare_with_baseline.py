"""The transformer's test result beside the TF-IDF + logistic-regression baseline, on the very same split.

    clf fit --config configs/quickstart.yaml --data.num_papers 10000 --data.data_dir data/real \
        --trainer.default_root_dir runs/real --trainer.logger.init_args.name real
    clf test --config configs/quickstart.yaml --data.num_papers 10000 --data.data_dir data/real \
        --trainer.default_root_dir runs/real --trainer.logger.init_args.name real --ckpt_path best
    python tools/bench/compare_with_baseline.py --data-dir data/real --report runs/real/version_N/test_report.json

Runs the baseline on DATA_DIR's splits (see baseline_tfidf.py), checks that the transformer's test report counted
the same number of test papers per class, and writes both with their differences to
tools/bench/results/transformer_vs_baseline.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "transformer_vs_baseline.json"


def _baseline_module() -> Any:
    spec = importlib.util.spec_from_file_location("baseline_tfidf", Path(__file__).with_name("baseline_tfidf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(data_dir: Path, report_path: Path) -> dict[str, Any]:
    """Both results and the transformer's margin over the baseline.

    Raises:
        SystemExit: when the report's per-class test counts differ from the split's (not the same split).
    """
    report = json.loads(report_path.read_text())
    baseline = _baseline_module().run_baseline(data_dir)
    split_support = {
        label: int(row["support"]) for label, row in baseline["test"]["per_class"].items() if label in report["classes"]
    }
    report_support = {label: row["support"] for label, row in report["classes"].items()}
    if split_support != report_support:
        raise SystemExit(
            f"{report_path} was not made on {data_dir}'s test split: per-class counts "
            f"{report_support} vs {split_support}"
        )
    transformer = {
        "accuracy": report["metrics"]["test/acc"],
        "macro_f1": report["metrics"]["test/f1_macro"],
        "top3_accuracy": report["metrics"].get("test/top3_acc"),
    }
    base = {k: baseline["test"][k] for k in ("accuracy", "macro_f1", "top3_accuracy")}
    return {
        "benchmark": "transformer_vs_baseline",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "test_papers": sum(report_support.values()),
        "transformer_report": str(report_path),
        "transformer": transformer,
        "baseline": {**base, "chosen_C": baseline["chosen_C"]},
        "margin": {k: round(transformer[k] - base[k], 4) for k in base if transformer.get(k) is not None},
        "machine": baseline["machine"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True, help="test_report.json written by `clf test`")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = compare(args.data_dir, args.report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    t, b, m = result["transformer"], result["baseline"], result["margin"]
    print(f"transformer: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}")
    print(f"baseline:    accuracy {b['accuracy']:.4f}, macro-F1 {b['macro_f1']:.4f} (C={b['chosen_C']})")
    print(
        f"margin:      accuracy {m['accuracy']:+.4f}, macro-F1 {m['macro_f1']:+.4f}  ({result['test_papers']} papers)"
    )


if __name__ == "__main__":
    main()
