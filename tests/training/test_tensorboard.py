"""TensorBoard after a tiny fit and test (clf/model/tensorboard.py): one run holding the training curves, the test
scalars and the hparams — the compared ones, no internals — with the final validation and test metrics as hparam
metrics, and the model graph."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from clf import training

INTERNAL = {"_instantiator", "api_url", "cache_dir", "config_overrides", "id2label", "snapshot_path", "data_dir"}


def _hparams(events: EventAccumulator) -> dict[str, object]:
    """The hparams of the run's last session (the HPARAMS tab's row)."""
    found: dict[str, object] = {}
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for name, value in data.session_start_info.hparams.items():
                found[name] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
    return found


def test_fit_and_test_land_in_one_run_with_compared_hparams_and_final_metrics(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    fitted = training.fit(tiny_config, run_dir=run_dir)
    tested = training.test(tiny_config, run_dir=run_dir)

    assert tested.log_dir == fitted.log_dir, "clf test of the fit's checkpoint logs into the fit's run"
    versions = sorted(path.name for path in fitted.log_dir.parent.iterdir())
    assert versions == ["version_0"]

    events = EventAccumulator(str(fitted.log_dir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert any(tag.startswith("train/loss") for tag in scalars), "the training curves"
    assert {"val/acc", "test/acc", "test/f1_macro"} <= scalars, "validation and test results in the same run"
    assert {"hp/val_acc", "hp/val_best_score", "hp/test_acc", "hp/test_f1_macro"} <= scalars
    assert "hp_metric" not in scalars, "no placeholder -1"
    hparams = _hparams(events)
    assert {"backbone", "learning_rate", "batch_size", "max_epochs", "max_length", "train_papers", "seed"} <= set(
        hparams
    )
    assert not INTERNAL & set(hparams), f"internal keys logged: {INTERNAL & set(hparams)}"
    assert hparams["learning_rate"] == tiny_config["model"]["learning_rate"]
    assert (hparams["attention_dropout"], hparams["hidden_dropout"]) == (0.0, "checkpoint"), "the defaults"
    assert events.Graph() is not None, "the model graph"
