"""Tests for clf/registry: versions, lineage, production pointer, audit log, rollback, faults, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

from clf.artifact import ModelArtifact
from clf.cli import main
from clf.registry import (
    ArchiveMark,
    ChangeKind,
    CorruptRegistryError,
    IncompleteExportError,
    InvalidVersionError,
    MissingVersionFolderError,
    ModelRegistry,
    RegistryError,
    RegistryState,
    UnknownVersionError,
    Version,
    VersionExistsError,
    next_version,
)
from tests.helpers.exports import PRETRAINED, build_export


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real exports of tiny random DistilBERTs (different weights)."""
    root = tmp_path_factory.mktemp("exports")
    return build_export(root / "a" / "export", seed=1, accuracy=0.5), build_export(root / "b" / "export", 2, 0.6)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.mark.parametrize("text", ["v1.0.0", "v0.1.0", "v10.20.30"])
def test_valid_versions_parse(text):
    assert str(Version.parse(text)) == text


@pytest.mark.parametrize("text", ["1.0.0", "v1.0", "v1.0.0-rc1", "v01.0.0", "va.b.c", "", "latest"])
def test_invalid_versions_are_rejected_with_the_expected_form(text):
    with pytest.raises(InvalidVersionError, match="vMAJOR.MINOR.PATCH"):
        Version.parse(text)


def test_next_version_bumps_the_highest_version(registry, exports):
    assert next_version([]) == "v1.0.0"
    assert next_version(["v1.2.3", "v1.10.0", "v1.9.9"], "minor") == "v1.11.0"
    assert next_version(["v1.2.3"], "major") == "v2.0.0"
    assert next_version(["v1.2.3"], "patch") == "v1.2.4"
    with pytest.raises(InvalidVersionError, match="--bump"):
        next_version(["v1.0.0"], "huge")
    assert registry.next_version() == "v1.0.0"
    registry.create_version(exports[0], "v1.2.0")
    assert registry.next_version("patch") == "v1.2.1"
    assert registry.create_version(exports[0], bump="major") == "v2.0.0"


def test_create_copies_the_export_and_records_its_lineage(registry, exports):
    assert registry.create_version(exports[0], "v1.0.0") == "v1.0.0"
    folder = registry.base_dir / "arxiv_v1.0.0"
    assert (folder / "model.safetensors").is_file() and (folder / "manifest.json").is_file()
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == "v1.0.0" and meta["model_name"] == PRETRAINED and meta["parent_version"] is None
    assert meta["metrics"]["best_score"] == 0.5 and meta["model_size_mb"] > 0
    assert meta["packages"]["torch"] == torch.__version__ and meta["packages"]["clf"] == "0.1.0"
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    assert "created_at" in meta and "dataset" in meta and "hyperparameters" in meta
    registry.create_version(exports[1], "v1.1.0")
    assert registry.get_metadata("v1.1.0")["parent_version"] == "v1.0.0"
    with pytest.raises(VersionExistsError, match="v1.0.0 already exists"):
        registry.create_version(exports[1], "v1.0.0")
    assert [v.version for v in registry.list_versions()] == ["v1.0.0", "v1.1.0"]
    assert not list(registry.base_dir.glob(".*.tmp"))


def test_create_rejects_an_export_missing_files(registry, exports, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "label_map.json"):
        (broken / name).write_bytes((exports[0] / name).read_bytes())
    with pytest.raises(IncompleteExportError, match="missing model.safetensors, tokenizer_config.json"):
        registry.create_version(broken, "v1.0.0")
    assert registry.list_versions() == []


def test_a_version_is_the_export_byte_for_byte_with_its_lineage(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    version, folder = registry.resolve("v1.0.0")
    assert version == "v1.0.0" and folder == registry.version_dir("v1.0.0")
    for source in sorted(p for p in exports[0].iterdir() if p.is_file()):
        assert (folder / source.name).read_bytes() == source.read_bytes(), source.name
    artifact = ModelArtifact.open(folder)  # the manifest's hashes still hold in the registry
    meta = registry.get_metadata("v1.0.0")
    assert meta["version"] == "v1.0.0" and meta["labels"]["2"] == "cs.RO" == artifact.label_map.id2label[2]
    assert meta["packages"] == artifact.lineage.packages and meta["git_commit"] == artifact.lineage.git_commit


def test_unknown_version_lists_the_known_ones(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    with pytest.raises(UnknownVersionError, match="v9.0.0 is not in .*known versions: v1.0.0"):
        registry.resolve("v9.0.0")
    with pytest.raises(RegistryError, match="no version is in production yet"):
        registry.resolve("production")


def test_promote_updates_registry_pointer_and_audit_log(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    registry.create_version(exports[1], "v1.1.0")
    first = registry.promote_to_production("v1.0.0", reason="first release")
    assert first.from_version is None and first.to_version == "v1.0.0" and first.metrics["best_score"] == 0.5
    second = registry.promote_to_production("v1.1.0", reason="better")
    assert second.from_version == "v1.0.0"
    pointer = registry.base_dir / "production"
    assert pointer.is_symlink() and (pointer / "config.json").is_file()
    assert pointer.resolve() == (registry.base_dir / "arxiv_v1.1.0").resolve()
    assert json.loads(registry.registry_path.read_text())["production"] == "v1.1.0"
    audit = [json.loads(line) for line in registry.audit_path.read_text().splitlines()]
    assert [(a["from"], a["to"], a["reason"]) for a in audit] == [
        (None, "v1.0.0", "first release"),
        ("v1.0.0", "v1.1.0", "better"),
    ]
    assert all(a["who"] and a["when"] and a["action"] == "promote" for a in audit)
    assert audit[1]["metrics"]["best_score"] == 0.6
    assert registry.resolve("production") == ("v1.1.0", registry.version_dir("v1.1.0"))


def test_archive_marks_a_version_and_refuses_the_production_one(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    registry.create_version(exports[1], "v1.1.0")
    registry.promote_to_production("v1.0.0", reason="first release")
    with pytest.raises(RegistryError, match="v1.0.0 is in production"):
        registry.archive_version("v1.0.0", reason="no")
    with pytest.raises(UnknownVersionError, match="known versions: v1.0.0, v1.1.0"):
        registry.archive_version("v9.0.0")
    mark = registry.archive_version("v1.1.0", reason="not better than v1.0.0")
    assert mark.reason == "not better than v1.0.0" and mark.when and mark.who
    listed = {v.version: v for v in registry.list_versions()}
    assert listed["v1.1.0"].archived == mark and listed["v1.0.0"].archived is None
    assert registry.production_version() == "v1.0.0"
    assert (registry.version_dir("v1.1.0") / "metadata.json").is_file(), "an archived version stays on disk"


def test_rollback_restores_the_previous_version_in_one_step(registry, exports):
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        registry.create_version(exports[0], version)
        registry.promote_to_production(version, reason=f"ship {version}")
    change = registry.rollback(reason="regression")
    assert (change.action, change.from_version, change.to_version) == (ChangeKind.ROLLBACK, "v1.2.0", "v1.1.0")
    assert registry.production_version() == "v1.1.0"
    assert registry.rollback().to_version == "v1.0.0"
    assert [(c.action, c.to_version) for c in registry.history()] == [
        (ChangeKind.PROMOTE, "v1.0.0"),
        (ChangeKind.PROMOTE, "v1.1.0"),
        (ChangeKind.PROMOTE, "v1.2.0"),
        (ChangeKind.ROLLBACK, "v1.1.0"),
        (ChangeKind.ROLLBACK, "v1.0.0"),
    ]


def test_pointer_file_where_symlinks_fail(registry, exports, monkeypatch):
    registry.create_version(exports[0], "v1.0.0")

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    registry.promote_to_production("v1.0.0")
    assert (registry.base_dir / "production.txt").read_text().strip() == "arxiv_v1.0.0"
    assert registry.production_version() == "v1.0.0"


def test_corrupt_registry_json_is_a_clear_error_and_the_good_copy_is_kept(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    registry.create_version(exports[0], "v1.1.0")
    good = registry.backup_path.read_text()
    registry.registry_path.write_text('{"versions": {"v1.0')
    with pytest.raises(CorruptRegistryError, match=r"registry.json is corrupt .*registry.json.bak"):
        registry.list_versions()
    with pytest.raises(CorruptRegistryError):
        registry.create_version(exports[0], "v2.0.0")
    assert registry.backup_path.read_text() == good and "v1.0.0" in json.loads(good)["versions"]


def test_a_version_folder_deleted_by_hand_is_a_clear_error(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    import shutil

    shutil.rmtree(registry.base_dir / "arxiv_v1.0.0")
    with pytest.raises(MissingVersionFolderError, match="deleted by hand"):
        registry.resolve("v1.0.0")
    with pytest.raises(MissingVersionFolderError):
        registry.promote_to_production("v1.0.0")


def _promote_and_die(base_dir: str, version: str) -> None:
    def kill(_staged: Path) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    ModelRegistry(base_dir, on_pointer_staged=kill).promote_to_production(version, reason="killed")


def test_a_process_killed_mid_promotion_leaves_the_old_or_new_pointer(registry, exports):
    registry.create_version(exports[0], "v1.0.0")
    registry.create_version(exports[1], "v1.1.0")
    registry.promote_to_production("v1.0.0")
    process = multiprocessing.get_context("fork").Process(
        target=_promote_and_die, args=(str(registry.base_dir), "v1.1.0")
    )
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    assert list(registry.base_dir.glob(".production.*.tmp")), "the staged pointer should be left behind"
    assert registry.production_version() == "v1.0.0"
    assert ((registry.base_dir / "production") / "config.json").is_file()
    json.loads(registry.registry_path.read_text())
    registry.create_version(exports[0], "v1.2.0")  # the next writer finishes the interrupted promotion
    assert registry.production_version() == "v1.1.0"
    assert not list(registry.base_dir.glob(".production.*.tmp"))


def _create_and_promote(base_dir: str, export: str, index: int) -> None:
    registry = ModelRegistry(base_dir)
    version = f"v{index + 1}.0.0"
    registry.create_version(export, version)
    registry.promote_to_production(version, reason=f"worker {index}")
    registry.create_version(export, bump="patch")


def test_concurrent_processes_never_lose_an_update(registry, exports):
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_create_and_promote, args=(str(registry.base_dir), str(exports[0]), i)) for i in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * 6
    state = json.loads(registry.registry_path.read_text())
    assert len(state["versions"]) == 12 and len(registry.list_versions()) == 12
    assert {f"v{i}.0.0" for i in range(1, 7)} <= set(state["versions"])
    history = registry.history()
    assert sorted(c.reason for c in history) == [f"worker {i}" for i in range(6)]
    assert registry.production_version() == history[-1].to_version == state["production"]


def test_cli_create_list_promote_rollback_history(tmp_path, exports, capsys):
    base = str(tmp_path / "models")
    main(["registry", "create", "--model-path", str(exports[0]), "--version", "v1.0.0", "--registry", base])
    main(["registry", "create", "--model-path", str(exports[1]), "--registry", base])
    capsys.readouterr()
    main(["registry", "list", "--registry", base])
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == ["v1.0.0", "v1.1.0"]
    main(["registry", "promote", "v1.0.0", "--reason", "first release", "--registry", base])
    main(["registry", "promote", "v1.1.0", "--reason", "better", "--registry", base])
    main(["registry", "rollback", "--reason", "regression", "--registry", base])
    capsys.readouterr()
    main(["registry", "list", "--registry", base])
    assert [(v["version"], v["production"]) for v in json.loads(capsys.readouterr().out)] == [
        ("v1.0.0", True),
        ("v1.1.0", False),
    ]
    main(["registry", "history", "--registry", base])
    history = json.loads(capsys.readouterr().out)
    assert [(h["action"], h["to"]) for h in history] == [
        ("promote", "v1.0.0"),
        ("promote", "v1.1.0"),
        ("rollback", "v1.0.0"),
    ]
    main(["registry", "show", "v1.0.0", "--registry", base])
    assert json.loads(capsys.readouterr().out)["version"] == "v1.0.0"
    with pytest.raises(SystemExit) as exited:
        main(["registry", "promote", "1.0", "--registry", base])
    assert exited.value.code == 1
    assert "vMAJOR.MINOR.PATCH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["registry", "create", "--version", "v2.0.0", "--registry", base])
    assert exited.value.code == 2 and "model_path" in capsys.readouterr().err  # required by the parser


def test_a_registry_written_before_the_typed_records_loads_and_is_rewritten_unchanged(tmp_path):
    # registry.json and audit.jsonl as the dict-based registry wrote them: three versions, one archived, two promotions.
    fixtures = Path(__file__).parent / "fixtures"
    base = tmp_path / "models"
    base.mkdir()
    for name in ("registry.json", "audit.jsonl"):
        (base / name).write_bytes((fixtures / name).read_bytes())
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        (base / f"arxiv_{version}").mkdir()
        (base / f"arxiv_{version}" / "config.json").write_text("{}")
    original = json.loads((fixtures / "registry.json").read_text())
    assert RegistryState.from_json(original).to_json() == original
    assert json.dumps(RegistryState.from_json(original).to_json()) == json.dumps(original), "keys in the same order"

    registry = ModelRegistry(base)
    listed = registry.list_versions()
    assert [(v.version, v.parent, v.metrics["best_score"]) for v in listed] == [
        ("v1.0.0", None, 0.5),
        ("v1.1.0", "v1.0.0", 0.5),
        ("v1.2.0", "v1.1.0", 0.5),
    ]
    marked = original["versions"]["v1.2.0"]["archived"]
    assert listed[2].archived == ArchiveMark(marked["when"], "root", "not better than v1.1.0")
    assert [(c.action, c.from_version, c.to_version) for c in registry.history()] == [
        (ChangeKind.PROMOTE, None, "v1.0.0"),
        (ChangeKind.PROMOTE, "v1.0.0", "v1.1.0"),
    ]
    assert registry.rollback("regression").to_version == "v1.0.0"
    rewritten = registry.registry_path.read_text()
    assert rewritten == json.dumps({**original, "production": "v1.0.0", "stack": ["v1.0.0"]}, indent=2) + "\n"

    del original["stack"]  # written before rollback kept a stack: production alone
    assert RegistryState.from_json(original).stack == ["v1.1.0"]
