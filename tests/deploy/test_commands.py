"""Tests for clf deploy's commands and the persisted state: requests, refusals, withdrawal, status, the CLI."""

from __future__ import annotations

import json

import pytest

from clf.cli import main
from clf.deploy import (
    Action,
    DeploymentError,
    DeploymentState,
    DeploymentStore,
    LiveSince,
    Phase,
    RefusedRollback,
    check_stages,
    deployment_status,
    request_deployment,
    request_rollback,
)
from clf.registry import RegistryError


def test_a_request_is_persisted_and_a_second_one_refused(tiny_registry):
    decision = request_deployment(tiny_registry, "canary", "v1.1.0", stages=[5, 50, 100], stage_seconds=60)
    assert decision.action == Action.REQUESTED
    state = DeploymentStore(tiny_registry.base_dir).load()
    assert (state.phase, state.strategy, state.candidate, state.baseline) == (
        Phase.REQUESTED,
        "canary",
        "v1.1.0",
        "v1.0.0",
    )
    assert state.stages == [5, 50, 100] and state.stage_seconds == 60
    with pytest.raises(DeploymentError, match="in progress"):
        request_deployment(tiny_registry, "blue_green", "v1.1.0")


def test_requests_for_production_or_unknown_versions_are_refused(tiny_registry):
    with pytest.raises(DeploymentError, match="already in production"):
        request_deployment(tiny_registry, "blue_green", "v1.0.0")
    with pytest.raises(RegistryError, match="v9.0.0"):
        request_deployment(tiny_registry, "blue_green", "v9.0.0")


@pytest.mark.parametrize("stages", [[], [5, 50], [50, 10, 100], [0, 100], [5, 5, 100], [5, 150]])
def test_bad_stages_name_the_option(stages):
    with pytest.raises(DeploymentError, match="--stages"):
        check_stages(stages)


def test_rollback_withdraws_a_rollout_in_progress_without_touching_production(tiny_registry):
    request_deployment(tiny_registry, "canary", "v1.1.0")
    decision = request_rollback(tiny_registry, "changed my mind")
    assert decision.action == Action.ROLLED_BACK and "withdrawn" in decision.reason
    assert DeploymentStore(tiny_registry.base_dir).load().phase == Phase.IDLE
    assert tiny_registry.production_version() == "v1.0.0"


def test_rollback_when_idle_is_the_registry_rollback(tiny_registry):
    tiny_registry.promote_to_production("v1.1.0")
    request_rollback(tiny_registry, "regression")
    assert tiny_registry.production_version() == "v1.0.0"
    with pytest.raises(RegistryError):
        request_rollback(tiny_registry, "nothing left")


def test_state_survives_a_round_trip_and_ignores_unknown_keys(tmp_path):
    store = DeploymentStore(tmp_path)
    state = DeploymentState(Phase.CANARY, "canary", "v2.0.0", "v1.0.0", [10, 100], 1, 123.0, 60.0)
    store.save(state)
    record = json.loads(store.state_path.read_text())
    record["added_later"] = True
    store.state_path.write_text(json.dumps(record))
    loaded = store.load()
    assert (loaded.phase, loaded.stage, loaded.candidate) == (Phase.CANARY, 100, "v2.0.0")


def test_what_the_rollback_watch_remembers_survives_a_round_trip_and_every_command(tiny_registry):
    store = DeploymentStore(tiny_registry.base_dir)
    live, refused = LiveSince("v1.0.0", 100.0), RefusedRollback("v1.0.0", 200.0, "nothing to roll back to")
    store.save(DeploymentState(live=live, refused_rollback=refused))
    assert (store.load().live, store.load().refused_rollback) == (live, refused)
    request_deployment(tiny_registry, "canary", "v1.1.0")
    assert (store.load().live, store.load().refused_rollback) == (live, refused)
    request_rollback(tiny_registry, "withdrawn")
    state = store.load()
    assert state.phase == Phase.IDLE and (state.live, state.refused_rollback) == (live, refused)


def test_a_state_file_from_before_the_rollback_watch_kept_anything_still_loads(tmp_path):
    store = DeploymentStore(tmp_path)
    store.state_path.write_text(json.dumps({"phase": "canary", "candidate": "v2.0.0", "stages": [10, 100]}))
    state = store.load()
    assert (state.phase, state.stage, state.live, state.refused_rollback) == (Phase.CANARY, 10, None, None)


STAGES = ["--deployment.stages", "[10, 100]"]


def test_cli_status_canary_and_rollback(tiny_registry, trained_export, capsys, tmp_path):
    registry = str(tiny_registry.base_dir)
    main(["deploy", "canary", "v1.1.0", "--deployment.registry", registry, "--skip-validation", "true"] + STAGES)
    assert json.loads(capsys.readouterr().out)["requested"]["action"] == "requested"
    assert DeploymentStore(tiny_registry.base_dir).load().stages == [10, 100]
    main(["deploy", "status", "--deployment.registry", registry])
    status = json.loads(capsys.readouterr().out)
    assert status["production"] == "v1.0.0" and status["state"]["phase"] == "requested"
    assert [d["action"] for d in status["decisions"]] == ["requested"]
    main(["deploy", "rollback", "--deployment.registry", registry, "--reason", "abort"])
    assert deployment_status(tiny_registry)["state"]["phase"] == "idle"


def test_cli_refuses_a_version_that_fails_validation(tiny_registry, capsys, tmp_path):
    samples = tmp_path / "samples.jsonl"
    from tests.deploy.conftest import PAPERS

    samples.write_text(
        "".join(
            json.dumps({**paper, "label": ["cs.CV", "cs.DB", "cs.RO"][i % 3]}) + "\n" for i, paper in enumerate(PAPERS)
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "deploy",
                "canary",
                "v1.1.0",
                "--deployment.registry",
                str(tiny_registry.base_dir),
                "--sample-data",
                str(samples),
            ]
        )
    assert exit_info.value.code == 1
    assert "failed validation: class_diversity" in capsys.readouterr().err
    assert DeploymentStore(tiny_registry.base_dir).load().phase == Phase.IDLE


def test_the_deploy_settings_come_from_one_yaml_shared_by_every_action(tiny_registry, capsys, tmp_path):
    settings = tmp_path / "deploy.yaml"
    settings.write_text(f"registry: {tiny_registry.base_dir}\nstages: [20, 100]\nstage_seconds: 30\n")
    main(["deploy", "canary", "v1.1.0", "--deployment", str(settings), "--skip_validation", "true"])
    state = DeploymentStore(tiny_registry.base_dir).load()
    assert (state.candidate, state.stages, state.stage_seconds) == ("v1.1.0", [20, 100], 30)
    capsys.readouterr()
    main(["deploy", "status", "--deployment", str(settings)])
    assert json.loads(capsys.readouterr().out)["state"]["phase"] == "requested"


def test_an_action_without_its_version_is_refused_by_the_parser(tiny_registry, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "canary", "--deployment.registry", str(tiny_registry.base_dir)])
    assert exited.value.code == 2 and "version" in capsys.readouterr().err
    assert DeploymentStore(tiny_registry.base_dir).load().phase == Phase.IDLE
