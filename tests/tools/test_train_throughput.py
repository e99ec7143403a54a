"""tools/bench/train_throughput.py on a tiny random DistilBERT and the first real papers: a few seconds on a CPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.conftest import REPO
from tests.helpers.bench import loaded_bench_tool

TINY = {"dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 2}

pytestmark = pytest.mark.skipif(
    not (REPO / "data" / "real" / "splits" / "train.json").is_file(), reason="needs data/real/splits/train.json"
)


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    yield from loaded_bench_tool("train_throughput")


def test_trainer_pads_to_max_length_and_clf_pads_less_on_the_same_papers(tool: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "train_throughput.json"
    threads = torch.get_num_threads()  # run() sets it process-wide: keep the test session's value
    args = tool.parse_args(
        ["--samples", "8", "--batch-size", "4", "--threads", str(threads), "--skip-epoch-padding", "--out", str(out)]
        + ["--variants", "trainer_fp32_pad512", "clf_fp32"]
    )

    report = tool.run(args, model_config=TINY)

    assert json.loads(out.read_text(encoding="utf-8")) == report
    trainer, clf = report["variants"]["trainer_fp32_pad512"], report["variants"]["clf_fp32"]
    assert trainer["samples"] == clf["samples"] == 8
    assert trainer["steps"] == clf["steps"] == 2
    assert trainer["padded_tokens_per_sample"] == 512
    assert clf["real_tokens_per_sample"] <= clf["padded_tokens_per_sample"] < 512
    assert report["ratios"]["clf_fp32/trainer_fp32_pad512"] == pytest.approx(
        clf["samples_per_s"] / trainer["samples_per_s"], rel=0.01
    )
    assert report["machine"]["torch_threads"] == trainer["torch_threads"] == threads
    assert report["target"]["clf_auto_ratio"] is None


def test_epoch_padding_with_clf_batches_lies_between_real_tokens_and_max_length(
    tool: ModuleType, tmp_path: Path
) -> None:
    samples = tool.load_samples(tool.DEFAULT_SPLIT, 32)
    data_dir = tool.write_data_dir(samples, tmp_path / "data", eval_count=4)

    padding = tool.epoch_padding(data_dir / "splits" / "train.json", 8, 512, tmp_path / "cache")

    assert padding["samples"] == 32
    assert padding["real_tokens_per_sample"] <= padding["clf_padded_tokens_per_sample"] < 512


def test_samples_must_fill_whole_batches(tool: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tool.parse_args(["--samples", "20", "--batch-size", "16"])

    assert "--samples must be a positive multiple of --batch-size, got 20 and 16" in capsys.readouterr().err
