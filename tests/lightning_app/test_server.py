"""`clf serve`'s options: typed groups with --config and --print_config, the shipped configs/serve.yaml, the
configuration its workers read, and the flat options of older command lines named with their new spelling."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import subprocess
import sys

import pytest
import requests
import yaml

from clf.cli import main, old_spelling
from clf.deploy.gates import CanaryGates
from clf.serving.config import Batching, ServiceConfig
from lightning_app.config import FeedbackConfig, FleetConfig
from lightning_app.server import RENAMED_OPTIONS, read_config, write_config
from tests.conftest import REPO
from tests.helpers.serve_process import ServeProcess

SHIPPED = REPO / "configs" / "serve.yaml"


def _clf(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code in (0, None)
    return out.getvalue()


def test_every_gate_setting_is_an_option_with_its_docstring_as_help():
    text = " ".join(_clf("serve", "--help").split())
    for field in dataclasses.fields(CanaryGates):
        assert f"--gates.{field.name} " in text
    assert "--gates.min_latency_samples MIN_LATENCY_SAMPLES papers each version needs in a batch-size bucket" in text
    assert "--fleet.rollouts {true,false,null}" in text and "--config CONFIG" in text


def test_a_group_option_reaches_its_object_and_a_bad_value_names_the_option(tmp_path):
    printed = yaml.safe_load(
        _clf("serve", "--gates.max_p95_ratio", "1.3", "--batching.max-queue", "9", "--print_config")
    )
    assert printed["gates"]["max_p95_ratio"] == 1.3 and printed["batching"]["max_queue"] == 9
    with pytest.raises(ValueError, match="--batching.max_queue must be at least 1, got 0"):
        Batching(max_queue=0)


def test_a_printed_config_serves_as_it_is(tiny_registry, tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text(_clf("serve", "--gates.max_p95_ratio", "1.3", "--logging.level", "DEBUG", "--print_config"))
    assert read_config(path).gates.max_p95_ratio == 1.3
    with ServeProcess(tiny_registry.base_dir, ["--config", str(path)]) as process:
        assert requests.get(f"{process.url}/health", timeout=30).status_code == 200
    assert " DEBUG " in process.stderr, "the file's settings were applied"


def test_the_shipped_config_holds_every_option_at_its_default():
    assert yaml.safe_load(SHIPPED.read_text()) == yaml.safe_load(_clf("serve", "--print_config"))
    text = SHIPPED.read_text()
    for group in re.findall(r"^(\w+):$", text, flags=re.M):
        assert re.search(rf"^# .*\n{group}:$", text, flags=re.M), f"configs/serve.yaml: say what {group} is"


def test_the_workers_read_back_the_configuration_they_were_given(tmp_path):
    config = read_config(SHIPPED)
    changed = dataclasses.replace(
        config,
        port=9123,
        workers=3,
        service=ServiceConfig(version="v1.1.0", dtype="float32"),
        gates=CanaryGates(max_error_ratio=2.0, min_latency_samples=4),
        fleet=FleetConfig(rollouts=False, state_db="postgresql+psycopg://clf@db/clf"),
        feedback=FeedbackConfig(rate_limit="5/second"),
    )
    assert read_config(write_config(changed, tmp_path / "serve.yaml")) == changed


def test_old_flat_options_are_named_with_their_new_spelling():
    # the command line as clf.cli.main hands it over: option names already spelt with underscores
    hint = old_spelling("serve", ["--canary_max_p95_ratio", "1.3", "--state_db=sqlite:///x", "--max_batch_size", "8"])
    assert hint == "use: clf serve --gates.max_p95_ratio 1.3 --fleet.state_db=sqlite:///x --batching.max_batch_size 8"
    assert old_spelling("serve", ["--gates.max_p95_ratio", "1.3", "--port", "8000", "--config", "s.yaml"]) is None
    run = subprocess.run(
        [sys.executable, "-m", "clf", "serve", "--canary-max-p95-ratio", "1.3"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "use: clf serve --gates.max_p95_ratio 1.3" in run.stderr


def test_every_new_name_in_the_table_is_an_option():
    options = set(re.findall(r"--([a-z0-9_.]+)", _clf("serve", "--help")))
    assert {new.removeprefix("--") for new in RENAMED_OPTIONS.values()} <= options
    assert not {old.removeprefix("--") for old in RENAMED_OPTIONS} & options, (
        "an old name that is still an option needs no hint"
    )
