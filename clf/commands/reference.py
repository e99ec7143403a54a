"""`clf reference build`: give an existing export or registered version its reference sample and out-of-scope model.

    clf reference build --model_path runs/quickstart/export --data_dir data/quickstart
    clf reference build --version v1.2.0                  # the data folder its lineage records
    clf reference build --version v1.2.0 --out_of_scope data/snapshot/processed/out_of_scope.json

What ``reference: build: true`` does at the end of fit (`clf.training.reference`), for a model trained before it
existed: the reference papers are a seeded stratified draw of the validation split, the outlier-exposure model
learns from the training split against ``processed/out_of_scope.json`` (run ``clf preprocess`` again on a snapshot
that holds other categories to get one). Prints JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from clf.artifact import ArtifactError, ModelArtifact
from clf.io import read_json
from clf.registry import ModelRegistry, RegistryError
from clf.registry.lineage import training_data_dir


def build(
    model_path: str | None = None,
    version: str | None = None,
    registry: str = "models/classification",
    data_dir: str | None = None,
    papers: int = 1000,
    selection: Literal["stratified", "newest"] = "stratified",
    flag_rate: float = 0.05,
    seed: int = 42,
    out_of_scope: str | None = None,
) -> dict[str, Any]:
    """Build the reference sample of a model artifact on its data's validation papers, and store it in the artifact.

    Args:
        model_path: the artifact folder (a run's export/).
        version: a registered version instead (vX.Y.Z or production); its metadata records the reference's summary.
        registry: the registry folder.
        data_dir: the data folder the model was trained on (its splits/ and processed/out_of_scope.json); by default
            the one its lineage records.
        papers: validation papers in the reference.
        selection: which: stratified (a seeded draw keeping every class's share) or newest.
        flag_rate: the share of those papers the out-of-scope threshold flags.
        seed: seed of the stratified draw.
        out_of_scope: the papers of other categories to learn from, a samples file such as another data folder's
            processed/out_of_scope.json (the collector keeps only the classes' papers, so a data folder it built
            has none); by default the data folder's own.

    Returns:
        The reference's summary (papers, accuracy, estimated accuracy, out-of-scope share and components).

    Raises:
        RegistryError: when neither or both of --model_path and --version are given, or the version is unknown.
        ValueError: when no data folder is given or recorded, or the artifact is not intact.
    """
    from clf.data.datamodule import ArxivDataModule
    from clf.training.finishing import select_validation
    from clf.training.reference import build_reference

    if (version is None) == (model_path is None):
        raise RegistryError("clf reference build needs exactly one of --model_path EXPORT_DIR and --version vX.Y.Z")
    models = ModelRegistry(registry) if version is not None else None
    if models is not None and version is not None:
        version, folder = models.resolve(version)
    else:
        folder = Path(str(model_path))
    try:
        artifact = ModelArtifact.open(folder)
    except ArtifactError as err:
        raise ValueError(f"{folder}: {err}") from err
    data = data_dir or training_data_dir(folder)
    if data is None:
        raise ValueError(f"{folder} records no data folder; pass --data_dir")
    datamodule = ArxivDataModule(data, categories=artifact.label_map.labels, seed=seed)
    val = select_validation(datamodule.split_samples("val"), papers, selection, seed)
    sample = build_reference(
        folder,
        val,
        datamodule.split_samples("train"),
        read_json(Path(out_of_scope))["samples"] if out_of_scope else datamodule.out_of_scope_samples(),
        flag_rate=flag_rate,
        fitted_on=f"the val split of {data}, {len(val)} papers ({selection})",
    )
    oos = sample.out_of_scope
    summary = {
        **sample.summary(),
        "components": list(oos.components) if oos is not None else [],
        "evidence": oos.evidence if oos is not None else {},
        "folder": str(folder),
    }
    if models is not None and version is not None:
        models.update_metadata(version, {"reference": {k: v for k, v in summary.items() if k != "folder"}})
        summary["version"] = version
    print(json.dumps(summary, indent=2))
    return summary
