"""`clf serve --fleet.rollouts`: whether a serving process runs the deployment controller, said in --help and in its
start-up log; a pinned --service.version turns rollouts off by default and refuses --fleet.rollouts true."""

from __future__ import annotations

import time

import pytest

from clf.cli import main
from clf.deploy import DeploymentStore, Phase, request_deployment
from clf.serving.config import ServiceConfig
from lightning_app.config import FleetConfig
from lightning_app.server import serve
from tests.helpers.serve_process import ServeProcess


def test_help_says_what_rollouts_turn_on_and_when_they_are_off(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--fleet.rollouts {true,false,null}" in text
    assert "roll production back on its own (the rollback monitor)" in text
    assert "Default: on, off with --service.version" in text


def test_a_pinned_version_refuses_rollouts_before_loading_anything(tiny_registry):
    with pytest.raises(ValueError, match="--fleet.rollouts true cannot be combined with --service.version v1.1.0"):
        serve(registry=str(tiny_registry.base_dir), service=ServiceConfig("v1.1.0"), fleet=FleetConfig(rollouts=True))


@pytest.mark.parametrize(
    ("flags", "says", "carried_out"),
    [
        ([], "rollouts on: every 0.1 s this process carries out clf deploy blue-green/canary requests", True),
        (["--service.version", "v1.0.0"], "rollouts off (--service.version v1.0.0 pins the served version)", False),
        (["--fleet.rollouts", "false"], "rollouts off (--fleet.rollouts false)", False),
    ],
    ids=["default", "pinned", "off"],
)
def test_the_start_up_log_says_whether_this_process_runs_rollouts(tiny_registry, flags, says, carried_out):
    store = DeploymentStore(tiny_registry.base_dir)
    with ServeProcess(tiny_registry.base_dir, [*flags, "--fleet.deploy_interval_seconds", "0.1"]) as process:
        request_deployment(tiny_registry, "canary", "v1.1.0", stages=[10, 100], stage_seconds=3600)
        if carried_out:
            deadline = time.monotonic() + 60
            while store.load().phase == Phase.REQUESTED and time.monotonic() < deadline:
                time.sleep(0.1)
            assert store.load().phase == Phase.CANARY
        else:
            time.sleep(1.0)  # ten ticks, had there been a controller
            assert store.load().phase == Phase.REQUESTED
    assert says in process.stderr
