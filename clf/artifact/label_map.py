"""`LabelMap`: the classes of a model and how its outputs are read — the one reader and writer of label_map.json.

>>> labels = LabelMap({0: "cs.CL", 1: "cs.CV"}, max_length=256)
>>> LabelMap.from_json(labels.to_json()) == labels
True
>>> labels.labels, labels.label2id["cs.CV"]
(['cs.CL', 'cs.CV'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FILE = "label_map.json"
"""The file name inside an artifact."""


class LabelMapError(ValueError):
    """A label map that cannot be read: missing keys, indices that are not 0..n-1, duplicate labels."""


@dataclass(frozen=True)
class LabelMap:
    """The classes of a model, in index order, and how its outputs turn into predictions.

    Attributes:
        id2label: class index → category, indices 0..n-1.
        multi_label: sigmoid per class (every category above `threshold` is predicted) instead of softmax.
        threshold: the multi-label decision threshold.
        max_length: tokens the model was trained on; longer inputs are truncated to it.
        pretrained: the checkpoint the model was fine-tuned from.
    """

    id2label: Mapping[int, str]
    multi_label: bool = False
    threshold: float = 0.5
    max_length: int = 512
    pretrained: str = ""

    def __post_init__(self) -> None:
        id2label = {int(index): str(label) for index, label in self.id2label.items()}
        if sorted(id2label) != list(range(len(id2label))) or not id2label:
            raise LabelMapError(f"class indices must be 0..n-1 with at least one class, got {sorted(id2label)}")
        if len(set(id2label.values())) != len(id2label):
            raise LabelMapError(f"a label appears twice in {sorted(id2label.values())}")
        if not 0 < self.threshold < 1:
            raise LabelMapError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.max_length < 1:
            raise LabelMapError(f"max_length must be at least 1, got {self.max_length}")
        object.__setattr__(self, "id2label", id2label)

    @property
    def label2id(self) -> dict[str, int]:
        """Category → class index."""
        return {label: index for index, label in self.id2label.items()}

    @property
    def labels(self) -> list[str]:
        """The categories, in index order."""
        return [self.id2label[index] for index in range(len(self.id2label))]

    def to_json(self) -> dict[str, Any]:
        """The label_map.json document.

        Returns:
            ``id2label`` (string keys), ``label2id``, ``multi_label``, ``threshold``, ``max_length``, ``pretrained``.
        """
        return {
            "id2label": {str(index): label for index, label in self.id2label.items()},
            "label2id": dict(self.label2id),
            "multi_label": self.multi_label,
            "threshold": self.threshold,
            "max_length": self.max_length,
            "pretrained": self.pretrained,
        }

    @classmethod
    def from_json(cls, document: Any) -> LabelMap:
        """Reads a label_map.json document.

        Args:
            document: the parsed JSON.

        Returns:
            The label map.

        Raises:
            LabelMapError: naming what is missing or malformed.
        """
        if not isinstance(document, Mapping) or not isinstance(document.get("id2label"), Mapping):
            raise LabelMapError("label_map.json needs an 'id2label' object of class index → category")
        try:
            return cls(
                {int(index): label for index, label in document["id2label"].items()},
                multi_label=bool(document.get("multi_label", False)),
                threshold=float(document.get("threshold", 0.5)),
                max_length=int(document.get("max_length") or 512),
                pretrained=str(document.get("pretrained") or ""),
            )
        except (TypeError, ValueError) as err:
            raise LabelMapError(f"label_map.json: {err}") from None
