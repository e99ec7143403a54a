"""The model artifact: the exported model package that research hands to production, readable without torch.

    from clf.artifact import ModelArtifact
    artifact = ModelArtifact.open("runs/quickstart/export")   # checks the files and their manifest hashes
    artifact.label_map.labels, artifact.max_length, artifact.lineage.splits["test"].sha256

`ModelArtifact` opens and checks a folder (`clf.artifact.artifact`); `LabelMap` is the one reader and writer of
``label_map.json``; `Lineage` records data and split hashes, commit and packages; `complete` and
`record_test_metrics` write one (`clf.artifact.writer`); every artifact carries a model card
(`clf.artifact.model_card`); `ReferenceSample` (`clf.artifact.reference`) holds its answers on held-out papers for
production's drift and out-of-scope checks (`record_reference`).
"""

from clf.artifact.artifact import (
    ONNX_DIR,
    ONNX_FILES,
    ONNX_REPORT_FILE,
    REQUIRED_FILES,
    ArtifactError,
    ModelArtifact,
    OnnxVariant,
    is_artifact,
)
from clf.artifact.label_map import LabelMap, LabelMapError
from clf.artifact.lineage import Lineage, SplitRecord, collect_lineage
from clf.artifact.reference import OutOfScopeModel, ReferenceError, ReferenceSample, read_reference, write_reference
from clf.artifact.scoring import Calibration, Companion, Scoring, ScoringError
from clf.artifact.writer import complete, record_reference, record_scoring, record_test_metrics, seal

__all__ = [
    "ONNX_DIR",
    "ONNX_FILES",
    "ONNX_REPORT_FILE",
    "REQUIRED_FILES",
    "ArtifactError",
    "Calibration",
    "Companion",
    "LabelMap",
    "LabelMapError",
    "Lineage",
    "ModelArtifact",
    "OnnxVariant",
    "OutOfScopeModel",
    "ReferenceError",
    "ReferenceSample",
    "Scoring",
    "ScoringError",
    "SplitRecord",
    "collect_lineage",
    "complete",
    "is_artifact",
    "read_reference",
    "record_reference",
    "record_scoring",
    "record_test_metrics",
    "seal",
    "write_reference",
]
