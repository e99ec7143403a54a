"""The run report (clf/model/run_report.py, `clf report`): written at the end of `clf test`, self-contained, and
opened from disk in headless Chromium with no request beyond the file itself."""

from __future__ import annotations

import json
import re

import pytest

from clf import training
from clf.artifact import ModelArtifact
from clf.cli import main
from tests.helpers.browser import chromium, requested_urls, screenshot

SECTIONS = ("test-metrics", "learning-curves", "per-class", "confusion-matrix", "calibration", "data", "lineage",
            "reference-sample", "timings", "resolved-config")  # fmt: skip


@pytest.fixture(scope="module")
def tested(tmp_path_factory, tiny_data):
    import yaml

    from tests.training.conftest import TINY

    root = tmp_path_factory.mktemp("report")
    config = yaml.safe_load(TINY.read_text())
    config["data"]["data_dir"] = str(tiny_data)
    run_dir = root / "run"
    training.fit(config, run_dir=run_dir)
    return training.test(config, run_dir=run_dir)


def test_clf_test_writes_a_self_contained_report(tested):
    page = (tested.log_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f"id='{section}'" in page, section
    assert "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page), "nothing to fetch"
    assert page.count("data:image/png;base64,") >= 3, "curves, confusion matrix, reliability inline"
    report = json.loads((tested.log_dir / "test_report.json").read_text())
    assert report["calibration"]["ece"] is not None and len(report["calibration"]["bins"]) == 15
    assert sum(b["count"] for b in report["calibration"]["bins"]) == sum(
        row["support"] for row in report["classes"].values()
    )
    assert set(report["data"]) >= {"test"} and report["data"]["test"]["papers"] > 0
    assert 0.0 <= report["data"]["test"]["truncated_share"] <= 1.0
    assert f"{report['metrics']['test/acc']:.4f}" in page
    lineage = ModelArtifact.open(tested.run_dir / "export").lineage
    assert lineage.dataset_hash and lineage.dataset_hash in page, "the export's lineage, read through its artifact"


def test_clf_report_writes_it_again_from_the_run_folder(tested, tmp_path, capsys):
    out = tmp_path / "again.html"
    main(["report", str(tested.run_dir), "--output", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    assert "id='learning-curves'" in out.read_text()


def test_the_report_shows_what_production_will_compare_with(tested, tiny_data, tmp_path, capsys):
    from clf.io import read_json
    from clf.training.reference import build_reference

    export = tested.run_dir / "export"
    before = tmp_path / "before.html"
    main(["report", str(tested.run_dir), "--output", str(before)])
    assert "carries no reference sample" in before.read_text()
    sample = build_reference(export, read_json(tiny_data / "splits" / "val.json")["samples"][:40])

    after = tmp_path / "after.html"
    main(["report", str(tested.run_dir), "--output", str(after)])
    table = after.read_text().split("id='reference'")[1].split("</table>")[0]
    assert f"{sample.accuracy:.4f}" in table and "entropy, flags above" in table and "predicted classes" in table


def test_a_run_without_a_test_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run `clf test --config CONFIG --ckpt_path best` first"):
        from clf.model.run_report import write_run_report

        write_run_report(tmp_path)


def test_the_report_opens_from_disk_in_chromium_and_asks_for_nothing_else(tested):
    path = tested.log_dir / "report.html"
    with chromium(width=1200, height=2400) as driver:
        driver.get("about:blank")
        requested_urls(driver)
        driver.get(path.as_uri())
        headings = [h.text for h in driver.find_elements("css selector", "h2")]
        assert headings[:3] == ["Test metrics", "Learning curves", "Per class"]
        rows = driver.find_elements("css selector", "#classes tr")
        assert len(rows) == 1 + 10, "a row per class"
        images = driver.find_elements("css selector", "img")
        assert all(driver.execute_script("return arguments[0].naturalWidth", img) > 100 for img in images)
        assert screenshot(driver, "run-report").stat().st_size > 10_000
        urls = requested_urls(driver)
        assert all(url.startswith(("file://", "data:")) for url in urls), urls
