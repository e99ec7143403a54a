"""Checks that classification samples are fit to train on, with errors that say which samples and how to fix them.

A sample is the flat dict `Paper.to_sample()` gives (`arxiv_id`, `text`, `label`, ...). Every check reports the
positions of the offending samples so they can be found in the file they came from:

    from clf.data.validation import validate_samples
    validate_samples(samples, labels=("cs.CL", "cs.LG"), source="data/processed/dataset.json")
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

REQUIRED_FIELDS: tuple[str, ...] = ("text", "label", "arxiv_id")
"""Fields every sample must carry as a non-empty string."""

MIN_WORDS = 10
"""Fewest whitespace-separated words a sample's text may have."""

_SHOWN = 10
_FIX_HINT = (
    "To fix: re-run `clf preprocess` to rebuild the file from the raw data, or fix or remove the listed samples; "
    "for a label that is not allowed, add it to --categories or drop those samples."
)


class DataValidationError(ValueError):
    """Some samples are unusable.

    Args:
        message: which samples are unusable and why.
        indices: positions (0-based) of the offending samples.

    Attributes:
        indices: positions (0-based) of the offending samples in the sequence that was checked.
    """

    def __init__(self, message: str, indices: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.indices: list[int] = list(indices)


def validate_sample(sample: Any, labels: Collection[str] | None = None, min_words: int = MIN_WORDS) -> list[str]:
    """Lists what is wrong with one sample.

    Args:
        sample: the sample, a dict with at least the fields in `REQUIRED_FIELDS`.
        labels: the allowed labels; None allows any label.
        min_words: fewest words the text may have.

    Returns:
        One message per problem, empty when the sample is fine.
    """
    if not isinstance(sample, Mapping):
        return [f"not a JSON object but {type(sample).__name__}"]
    problems = []
    for name in REQUIRED_FIELDS:
        value = sample.get(name)
        if value is None:
            problems.append(f"missing field {name!r}")
        elif not isinstance(value, str):
            problems.append(f"field {name!r} must be a string, got {type(value).__name__}")
        elif not value.strip():
            problems.append(f"empty field {name!r}")
    text = sample.get("text")
    if isinstance(text, str) and text.strip():
        words = len(text.split())
        if words < min_words:
            problems.append(f"text has {words} words, fewer than the minimum {min_words}")
    label = sample.get("label")
    if labels is not None and isinstance(label, str) and label.strip() and label not in labels:
        problems.append(f"label {label!r} is not one of the allowed labels {_join(labels)}")
    return problems


def validate_samples(
    samples: Iterable[Any],
    labels: Collection[str] | None = None,
    min_words: int = MIN_WORDS,
    source: str = "dataset",
) -> None:
    """Checks every sample with `validate_sample` and reports all the bad ones at once.

    Args:
        samples: the samples to check.
        labels: the allowed labels; None allows any label.
        min_words: fewest words a text may have.
        source: where the samples came from (a file path), named in the error.

    Raises:
        DataValidationError: when any sample has a problem; the message names the source, how many samples are
            bad, the first few with their problems, and how to fix them.
    """
    bad: list[tuple[int, Any, list[str]]] = []
    total = 0
    for index, sample in enumerate(samples):
        total += 1
        problems = validate_sample(sample, labels=labels, min_words=min_words)
        if problems:
            bad.append((index, sample, problems))
    if not bad:
        return
    lines = [f"sample {index}{_id_note(sample)}: {'; '.join(problems)}" for index, sample, problems in bad[:_SHOWN]]
    if len(bad) > _SHOWN:
        lines.append(f"... and {len(bad) - _SHOWN} more")
    raise DataValidationError(
        f"{source}: {len(bad)} of {total} samples are invalid:\n  " + "\n  ".join(lines) + f"\n{_FIX_HINT}",
        indices=[index for index, _, _ in bad],
    )


def validate_labels(samples: Iterable[Mapping[str, Any]], expected: Collection[str], source: str = "dataset") -> None:
    """Checks that every sample's label is one of `expected`.

    Args:
        samples: the samples to check; only their `label` is read.
        expected: the allowed labels.
        source: where the samples came from (a file path), named in the error.

    Raises:
        DataValidationError: listing each unknown label with the positions of the samples that carry it, and the
            allowed labels.
    """
    unknown: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        label = sample.get("label")
        if label not in expected:
            unknown.setdefault(str(label), []).append(index)
    if not unknown:
        return
    lines = []
    for label, indices in sorted(unknown.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(str(index) for index in indices[:_SHOWN])
        more = f", ... ({len(indices)} in all)" if len(indices) > _SHOWN else ""
        lines.append(f"label {label!r} at samples {shown}{more}")
    raise DataValidationError(
        f"{source}: {len(unknown)} unknown label(s); allowed are {_join(expected)}:\n  "
        + "\n  ".join(lines)
        + f"\n{_FIX_HINT}",
        indices=sorted(index for indices in unknown.values() for index in indices),
    )


def _id_note(sample: Any) -> str:
    arxiv_id = sample.get("arxiv_id") if isinstance(sample, Mapping) else None
    return f" (arxiv_id {arxiv_id})" if isinstance(arxiv_id, str) and arxiv_id else ""


def _join(labels: Collection[str]) -> str:
    return ", ".join(sorted(labels))
