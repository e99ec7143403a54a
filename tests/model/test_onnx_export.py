"""ONNX export: dynamic axes, int8 quantisation, parity refusal, `clf export` on a registry, the onnx backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from clf.artifact import ArtifactError, ModelArtifact
from clf.cli import main
from clf.data.cleaning import model_input_text
from clf.inference import ModelPredictor
from clf.inference.onnx_runtime import onnx_forward
from clf.model.onnx_export import ONNX_DIR, OnnxExportError, export_onnx
from clf.serving.errors import ModelLoadError
from clf.serving.service import ClassificationService
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS, build_export


@pytest.fixture(scope="module")
def papers() -> list[dict]:
    """60 real papers of the tiny exports' three categories, 20 of each."""
    by_label: dict[str, list[dict]] = {}
    for paper in load_shared_papers(categories=set(LABELS.values())):
        by_label.setdefault(paper["primary"], [])
        if len(by_label[paper["primary"]]) < 20:
            by_label[paper["primary"]].append(paper)
    return [paper for group in by_label.values() for paper in group]


@pytest.fixture(scope="module")
def texts(papers: list[dict]) -> list[str]:
    """The model inputs of `papers`."""
    return [model_input_text(p["title"], p["abstract"]) for p in papers]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    """A tiny export with its float32 and int8 ONNX models."""
    folder = build_export(tmp_path_factory.mktemp("onnx") / "export", seed=3, accuracy=0.5)
    export_onnx(folder, texts, quantize="int8")
    return folder


def test_export_writes_both_variants_with_a_report_of_their_parity(exported: Path, texts: list[str]) -> None:
    report = json.loads((exported / ONNX_DIR / "onnx_export.json").read_text())
    assert set(report["files"]) == {"fp32", "int8"}
    assert [p["variant"] for p in report["parity"]] == ["fp32", "int8"]
    fp32, int8 = report["parity"]
    assert fp32["samples"] == int8["samples"] == len(texts)
    assert fp32["passed"] and fp32["max_probability_difference"] < 1e-4
    assert int8["passed"] and int8["top1_agreement"] >= 0.97
    for variant, described in report["files"].items():
        assert (exported / ONNX_DIR / described["name"]).stat().st_size == described["bytes"], variant
    # int8 weights: the quantised file is much smaller than the float32 one.
    assert report["files"]["int8"]["bytes"] < 0.6 * report["files"]["fp32"]["bytes"]
    assert not (exported / (ONNX_DIR + ".tmp")).exists()


@pytest.mark.parametrize(("batch", "words"), [(1, 5), (3, 40), (7, 120)])
def test_the_graph_takes_any_batch_and_sequence_length(exported: Path, batch: int, words: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForSequenceClassification.from_pretrained(exported).eval()
    texts = [" ".join(["graph neural networks for robot grasping"] * (words // 5 + i)) for i in range(batch)]
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**inputs).logits
    actual = onnx_forward(ModelArtifact.open(exported).onnx_path("fp32"))(inputs)
    assert actual.shape == (batch, len(LABELS))
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_out_of_bounds_parity_is_refused_and_keeps_the_previous_export(exported: Path, texts: list[str]) -> None:
    before = (exported / ONNX_DIR / "onnx_export.json").read_text()
    with pytest.raises(OnnxExportError, match=r"does not match the PyTorch model: int8: top-1 agreement"):
        export_onnx(exported, texts, quantize="int8", min_int8_agreement=1.01)
    assert (exported / ONNX_DIR / "onnx_export.json").read_text() == before
    assert not (exported / (ONNX_DIR + ".tmp")).exists()


def test_a_folder_without_onnx_files_names_the_command_that_makes_them(tmp_path: Path) -> None:
    folder = build_export(tmp_path / "export", seed=4, accuracy=0.5)
    with pytest.raises(ArtifactError, match="clf export --version VERSION --format onnx --quantize int8"):
        ModelArtifact.open(folder).onnx_path("int8")
    with pytest.raises(ModelLoadError, match="has no onnx/model.onnx"):
        ModelPredictor(folder, "base", backend="onnx")
    with pytest.raises(OnnxExportError, match="no sample texts"):
        export_onnx(folder, [])


def test_the_onnx_predictor_answers_like_the_torch_one(exported: Path, texts: list[str]) -> None:
    eager = ModelPredictor(exported, "base")
    quantised = ModelPredictor(exported, "base", backend="onnx")
    exact = ModelPredictor(exported, "base", backend="onnx", onnx_variant="fp32")
    assert (eager.backend, quantised.backend, exact.backend) == ("torch", "onnx-int8", "onnx-fp32")
    assert quantised.model is None
    reference = eager.predict_probabilities(texts)
    torch.testing.assert_close(exact.predict_probabilities(texts), reference, atol=1e-5, rtol=1e-4)
    agreement = (quantised.predict_probabilities(texts).argmax(1) == reference.argmax(1)).float().mean()
    assert agreement >= 0.97


def test_clf_export_writes_beside_a_registered_version_and_the_service_serves_it(
    tiny_registry, papers: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(p) + "\n" for p in papers))
    registry = str(tiny_registry.base_dir)
    main(["export", "--version", "v1.1.0", "--format", "onnx", "--quantize", "int8"]
         + ["--registry", registry, "--sample-data", str(samples), "--max-samples", "30"])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"] == "v1.1.0"
    assert [p["samples"] for p in printed["parity"]] == [30, 30]
    metadata = tiny_registry.get_metadata("v1.1.0")
    assert metadata["onnx"]["files"]["int8"]["name"] == "model.int8.onnx"
    assert (tiny_registry.version_dir("v1.1.0") / ONNX_DIR / "model.int8.onnx").is_file()

    service = ClassificationService(tiny_registry, "v1.1.0", backend="onnx", device="cpu")
    try:
        assert service.predictor().backend == "onnx-int8"
        records = service.predict([{"title": p["title"], "abstract": p["abstract"]} for p in papers[:5]])
        assert [r.version for r in records] == ["v1.1.0"] * 5
        assert all(r.label in LABELS.values() for r in records)
        # v1.0.0 has no ONNX files: loading it beside v1.1.0 under the onnx backend is refused, with the fix.
        with pytest.raises(ModelLoadError, match="clf export"):
            service.load("v1.0.0")
    finally:
        service.close()


def test_clf_export_needs_exactly_one_model(tiny_registry, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--format", "onnx", "--registry", str(tiny_registry.base_dir)])
    assert exit_info.value.code == 1
    assert "needs exactly one of --version vX.Y.Z and --model-path" in capsys.readouterr().err


def test_clf_export_of_a_run_folder_finds_its_test_split_in_the_run_config(
    tmp_path: Path, papers: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = build_export(tmp_path / "run" / "export", seed=5, accuracy=0.5)
    data_dir = tmp_path / "data"
    (data_dir / "splits").mkdir(parents=True)
    (data_dir / "splits" / "test.json").write_text(json.dumps({"samples": papers}))
    (folder / "config.yaml").write_text(f"data:\n  data_dir: {data_dir}\n")
    main(["export", "--model-path", str(folder), "--format", "onnx"])
    printed = json.loads(capsys.readouterr().out)
    assert [p["variant"] for p in printed["parity"]] == ["fp32"]
    assert printed["parity"][0]["samples"] == len(papers)
    shutil.rmtree(folder / ONNX_DIR)
