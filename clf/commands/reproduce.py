"""`clf reproduce VERSION`: train a registered version again from its artifact alone, and compare the metrics.

    clf reproduce v1.2.0                          # data checked against the recorded hashes, then trained again
    clf reproduce v1.2.0 --data-dir data/copy     # the same data, moved elsewhere

The artifact holds everything needed (`clf.artifact`): the run's resolved config (``config.yaml``) and its lineage
(``lineage.json``: the data folder and the sha256 of every split file). Each split file is checked against its
recorded hash first, so a version is never "reproduced" on other data: a file that changed, even by one byte, is
named and nothing is trained. Then the config is trained again (`clf.training.fit`, outputs in ``--run-dir``) and
the new metrics are reported beside the recorded ones. Runs that set ``seed_everything`` and
``trainer.deterministic`` (as ``configs/tiny.yaml`` does) give the same metrics on the same CPU.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clf.artifact import ModelArtifact
from clf.io import sha256_of_file
from clf.registry import ModelRegistry

log = logging.getLogger(__name__)


class ReproductionError(RuntimeError):
    """A version that cannot be trained again as it was: no config, no recorded data, or data that changed."""


@dataclass(frozen=True)
class MetricPair:
    """One metric as recorded and as reproduced.

    Attributes:
        name: the metric (``best_score``, ``val/acc``, ...).
        recorded: its value in the version's artifact.
        reproduced: its value in the new run.
        difference: reproduced minus recorded.
    """

    name: str
    recorded: float
    reproduced: float | None
    difference: float | None


@dataclass(frozen=True)
class Reproduction:
    """What a reproduction did.

    Attributes:
        version: the version trained again.
        run_dir: the new run's folder.
        data_dir: the data it trained on (its split files matched the recorded hashes).
        metrics: each metric the artifact recorded, beside the new run's.
        identical: every metric the same to 1e-6.
    """

    version: str
    run_dir: str
    data_dir: str
    metrics: list[MetricPair] = field(default_factory=list)
    identical: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields, metrics as a list of dicts.
        """
        return asdict(self)


def check_data(artifact: ModelArtifact, data_dir: str | Path) -> Path:
    """Checks each split file the artifact's lineage records against its sha256.

    Args:
        artifact: the version's artifact.
        data_dir: where its data folder is now.

    Returns:
        The data folder.

    Raises:
        ReproductionError: naming the split file that is missing or whose content changed.
    """
    folder = Path(data_dir)
    splits = artifact.lineage.splits
    if not splits:
        raise ReproductionError(f"{artifact.path}: its lineage records no split files, so its data cannot be checked")
    for name, split in splits.items():
        path = folder / "splits" / f"{name}.json"
        if not path.is_file():
            raise ReproductionError(f"{path}: missing; the {name} split this version was trained with is gone")
        actual = sha256_of_file(path)
        if actual != split.sha256:
            raise ReproductionError(
                f"{path}: sha256 {actual[:12]}… differs from the {split.sha256[:12]}… recorded when the version was "
                "trained; its data changed, so training again would not reproduce it"
            )
    return folder


def reproduce(
    version: str,
    registry: str = "models/classification",
    run_dir: str | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Train a registered version again from its artifact (config and checked data) and compare its metrics.

    Args:
        version: the registered version, vX.Y.Z or production.
        registry: the registry folder.
        run_dir: where the new run goes; runs/reproduce/<version> by default.
        data_dir: the version's data folder, when it moved; by default the one its lineage records.

    Returns:
        The reproduction: metrics recorded and reproduced, and whether they are identical. Printed as JSON.

    Raises:
        ReproductionError: when the version has no config or no recorded data, or a split file changed.
        RegistryError: for an unknown version.
    """
    from clf import training  # torch and Lightning load only when something trains

    models = ModelRegistry(registry)
    version, folder = models.resolve(version)
    artifact = ModelArtifact.open(folder)
    if artifact.run_config is None:
        raise ReproductionError(f"{folder}: no config.yaml; {version} was not exported by clf fit")
    source = data_dir or artifact.lineage.data_dir
    if source is None:
        raise ReproductionError(f"{folder}: its lineage names no data folder; pass --data-dir")
    data = check_data(artifact, source)
    target = Path(run_dir) if run_dir else Path("runs") / "reproduce" / version
    log.info("training %s again on %s (its split files match the recorded hashes) into %s", version, data, target)
    result = training.fit(artifact.run_config, {"data.data_dir": str(data)}, run_dir=target)
    pairs = _pairs(artifact.metrics, result.best_score, result.metrics)
    reproduction = Reproduction(
        version,
        str(target),
        str(data),
        pairs,
        identical=all(p.difference is not None and abs(p.difference) <= 1e-6 for p in pairs),
    )
    print(json.dumps(reproduction.to_json(), indent=2))
    return reproduction.to_json()


def _pairs(recorded: dict[str, Any], best_score: float | None, metrics: dict[str, float]) -> list[MetricPair]:
    wanted: dict[str, float] = {}
    if isinstance(recorded.get("best_score"), int | float):
        wanted["best_score"] = float(recorded["best_score"])
    for key, value in (recorded.get("last") or {}).items():
        if key.startswith("val/") and isinstance(value, int | float):
            wanted[key] = float(value)
    new = {"best_score": best_score, **metrics}
    pairs = []
    for name, value in wanted.items():
        again = new.get(name)
        delta = again - value if again is not None and math.isfinite(again) else None
        pairs.append(MetricPair(name, value, again, delta))
    return pairs
