"""`Prediction`: one paper's answer, from the predictor through the service to the HTTP schema and the logs.

    prediction = predictor.predict_texts(["Attention is all you need. ..."])[0]
    prediction.label, prediction.probability, prediction.unsure       # "cs.CL", 0.91, False
    prediction.to_json()                                              # what /predict and predictions.jsonl hold

The predictor fills the model's fields; the service stamps the version, arm and ids with `dataclasses.replace`; the
HTTP contract (`lightning_app.schemas`) is this class, so the fields are declared once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

_ALWAYS = ("label", "probability", "top3")


@dataclass(frozen=True)
class LabelProbability:
    """One ranked category."""

    label: str
    """The category, e.g. ``cs.CL``."""
    probability: float
    """Its probability (calibrated when the artifact is), rounded to six decimals."""


@dataclass(frozen=True)
class Prediction:
    """The answer for one paper. A paper that failed on its own has ``error`` set and no label.

    In JSON (`to_json`) a field that is None is left out, except ``label``, ``probability`` and ``top3``, and
    ``prediction_id`` once the service has answered (``arm`` set).
    """

    label: str | None
    """The most probable category; None when the paper failed."""
    probability: float | None
    """Its probability; None when the paper failed."""
    top3: tuple[LabelProbability, ...]
    """The three most probable categories, most probable first (empty when the paper failed)."""
    labels: tuple[str, ...] | None = None
    """Every category above the threshold (multi-label models)."""
    unsure: bool | None = None
    """The top probability is below the model's abstention threshold: show the ranking, not one label."""
    out_of_scope: bool | None = None
    """The paper looks like none of the model's classes (its out-of-scope score is above the threshold fitted with the
    artifact's reference sample); None when the artifact has no out-of-scope model."""
    error: str | None = None
    """Why this paper failed while others of its request were answered."""
    version: str | None = None
    """The model version that answered (set by the service)."""
    arm: str | None = None
    """The arm of the traffic rule that routed the request (set by the service)."""
    experiment_id: str | None = None
    """The experiment that routed the request, if one did."""
    prediction_id: str | None = None
    """Signed id to send feedback on this prediction (POST /feedback)."""
    top_k: tuple[LabelProbability, ...] | None = None
    """The most probable categories, most probable first: every category from the predictor (``clf predict``
    writes them all), the first k over HTTP when ``?top_k=k`` asks, left out otherwise."""
    arxiv_id: str | None = None
    """The paper's arXiv id, echoed when the client sent one (its true category is joined by it later)."""

    def to_json(self) -> dict[str, Any]:
        """The prediction as JSON (see the class for the fields left out).

        Returns:
            A JSON-ready dict, fields in declaration order.
        """
        record: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None and field.name not in _ALWAYS and not (field.name == "prediction_id" and self.arm):
                continue
            if field.name in ("top3", "top_k") and value is not None:
                value = [{"label": entry.label, "probability": entry.probability} for entry in value]
            record[field.name] = list(value) if isinstance(value, tuple) else value
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Prediction:
        """Reads what `to_json` wrote (other keys, such as a paper's id in ``predictions.jsonl``, are ignored).

        Args:
            record: a JSON prediction.

        Returns:
            The prediction.
        """
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        for key in ("top3", "top_k"):
            if values.get(key) is not None:
                values[key] = tuple(LabelProbability(entry["label"], entry["probability"]) for entry in values[key])
        if values.get("labels") is not None:
            values["labels"] = tuple(values["labels"])
        return cls(**values)
