"""The model card: ``README.md`` of an artifact, with the Hugging Face model-card metadata header.

An export folder is meant to be usable and understandable on its own: the card says what the model classifies, on
what it was trained (data folder and hashes), how well it did (validation, and test once ``clf test`` ran), how to
run it, and where it is known to fail. The YAML header between ``---`` lines follows the Hugging Face model-card
metadata (``library_name``, ``pipeline_tag``, ``base_model``, ``tags``, ``model-index``), so hubs and tools read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from clf.artifact.label_map import LabelMap
from clf.artifact.lineage import Lineage
from clf.artifact.scoring import Scoring

FILE = "README.md"
"""The file name inside an artifact."""

KNOWN_LIMITS = (
    "Primary-category, single-label arXiv data: many papers are cross-listed, and cs.AI, cs.LG and cs.NE share much "
    "of their vocabulary, so most errors are confusions among those three.",
    "Trained on titles and abstracts in English; LaTeX markup and math are stripped before the model sees them, as "
    "in training.",
    "Papers of categories outside the label set get one of the known labels, usually with a low probability; the "
    "service's low-confidence alert watches for that.",
)


def render(
    label_map: LabelMap, metrics: Mapping[str, Any], lineage: Lineage, name: str = "clf", scoring: Scoring | None = None
) -> str:
    """The model card's text.

    Args:
        label_map: the model's classes and mode.
        metrics: the artifact's metrics.json (``best_score``, ``monitor``, ``last``, and ``test`` once tested).
        lineage: where it came from.
        name: the model's name in the card.
        scoring: how its outputs become answers (companion, temperature), when fitted.

    Returns:
        The README.md text: the YAML metadata header, then the card.
    """
    results = [
        {"type": key.split("/", 1)[1], "value": round(float(value), 4), "name": key}
        for key, value in sorted(_scores(metrics).items())
    ]
    header: dict[str, Any] = {
        "language": ["en"],
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["arxiv", "text-classification", "clf", "multi-label" if label_map.multi_label else "single-label"],
        "labels": label_map.labels,
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "arXiv category classification"},
                        "dataset": {
                            "type": "arxiv",
                            "name": "arXiv computer-science papers",
                            "revision": lineage.dataset_hash,
                        },
                        "metrics": results,
                    }
                ],
            }
        ],
    }
    if label_map.pretrained:
        header["base_model"] = label_map.pretrained
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "", f"# {name}", ""]
    mode = (
        f"every category above {label_map.threshold:.2f} (sigmoid per class)"
        if label_map.multi_label
        else "one category (softmax)"
    )
    lines += [
        f"Classifies an arXiv paper (title and abstract) into {len(label_map.labels)} computer-science categories: "
        f"{', '.join(label_map.labels)}. It predicts {mode}, from the first {label_map.max_length} tokens, "
        f"fine-tuned from `{label_map.pretrained or 'an unnamed checkpoint'}`.",
        "",
        "## Intended use",
        "",
        "Routing and tagging arXiv submissions in computer science, and research on that task. It is not meant for "
        "other fields, other languages, or full texts.",
        "",
        "```bash",
        "clf registry create --model-path THIS_FOLDER --version v1.0.0   # then clf registry promote, clf serve",
        "```",
        "",
        "```python",
        "from clf.inference import ModelPredictor",
        "",
        'ModelPredictor("THIS_FOLDER", "base").predict_texts(["Attention is all you need. We propose ..."])',
        "```",
        "",
        "## Training data",
        "",
    ]
    lines += _training_data(lineage)
    lines += ["", "## How it scores", ""] + _scoring(scoring or Scoring())
    lines += ["", "## Metrics", ""]
    lines += [f"- {key}: {value:.4f}" for key, value in sorted(_scores(metrics).items())] or ["- none recorded"]
    lines += ["", "## Known limits", ""] + [f"- {limit}" for limit in KNOWN_LIMITS]
    lines += ["", "## Lineage", ""]
    lines += [f"- code: git commit `{lineage.git_commit or 'unknown'}`"]
    lines += [f"- packages: {', '.join(f'{n} {v}' for n, v in lineage.packages.items() if v) or 'unknown'}"]
    lines += [f"- written {lineage.created_at or 'at an unknown time'}; `lineage.json` holds every hash", ""]
    return "\n".join(lines)


def read_header(text: str) -> dict[str, Any]:
    """The metadata header of a model card.

    Args:
        text: a README.md's text.

    Returns:
        The header's fields.

    Raises:
        ValueError: when the text does not start with a ``---`` delimited YAML mapping.
    """
    parts = text.split("---\n", 2)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("a model card starts with its metadata between two '---' lines")
    header = yaml.safe_load(parts[1])
    if not isinstance(header, dict):
        raise ValueError("the model card's metadata header is not a mapping")
    return header


def _scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The validation and test metrics worth a card: accuracy, F1, top-3, any test metric; losses left out."""
    found: dict[str, float] = {}
    for scope in ("last", "test"):
        for key, value in (metrics.get(scope) or {}).items():
            if key.startswith(("val/", "test/")) and "loss" not in key and isinstance(value, int | float):
                found[key] = float(value)
    return found


def _scoring(scoring: Scoring) -> list[str]:
    lines = []
    if scoring.companion is not None:
        terms = len(scoring.companion.vocabulary)
        w = scoring.encoder_weight
        formula = (
            f"p ∝ encoder^{w:.2f} × companion^{1 - w:.2f}"
            if scoring.mixture == "log_linear"
            else f"p = {w:.2f} × encoder + {1 - w:.2f} × companion"
        )
        lines.append(f"- mixed with a TF-IDF + logistic-regression companion ({terms:,} terms): {formula}")
    calibration = scoring.calibration
    if calibration.temperature != 1.0:
        where = calibration.fitted_on or "held-out papers"
        lines.append(
            f"- calibrated: temperature {calibration.temperature:.3f}, fitted on {where}"
            + (
                f" (negative log-likelihood {calibration.nll_before:.4f} → {calibration.nll_after:.4f})"
                if calibration.nll_before is not None and calibration.nll_after is not None
                else ""
            )
        )
    lines.append(_abstention(scoring))
    if scoring.is_plain:
        lines.insert(0, "- the encoder's own softmax (sigmoid per class when multi-label), not calibrated")
    return lines


def _abstention(scoring: Scoring) -> str:
    line = f"- an answer whose top probability is below {scoring.abstain_below:.4g} is flagged as unsure"
    target = scoring.abstain_target_accuracy
    if target is None:
        return line
    # The evidence is what the fit measured (clf.inference.selective.ThresholdChoice.to_json); read defensively, as
    # the card must render whatever an older or hand-edited scoring.json holds.
    found = scoring.fitted.get("abstain") or {}
    papers, coverage, accuracy = found.get("papers"), found.get("coverage"), found.get("accuracy")
    where = f"{papers:,} validation papers" if isinstance(papers, int) else "the validation papers"
    if not isinstance(coverage, int | float) or not isinstance(accuracy, int | float):
        return f"{line}: the threshold chosen for {target:.0%} accuracy of the answered papers on {where}"
    measured = f"{coverage:.1%} of them were answered, {accuracy:.1%} of those right"
    if found.get("outcome") == "reached":
        return f"{line}: the lowest threshold whose answers reached {target:.0%} accuracy on {where} ({measured})"
    return (
        f"{line}: {target:.0%} accuracy was asked for but not reached on {where}; this is the most accurate "
        f"threshold answering at least {found.get('min_answered', '?')} of them ({measured})"
    )


def _training_data(lineage: Lineage) -> list[str]:
    if lineage.data_dir is None:
        return ["Not recorded."]
    lines = [
        f"- data folder: `{lineage.data_dir}`, {lineage.num_samples or 'an unknown number of'} papers, "
        f"dataset hash `{lineage.dataset_hash or 'unknown'}`"
    ]
    for name, split in lineage.splits.items():
        lines.append(f"- {name}: {split.count if split.count is not None else '?'} papers, sha256 `{split.sha256}`")
    return lines
