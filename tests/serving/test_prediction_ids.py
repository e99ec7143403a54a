"""Tests for clf/serving/prediction_ids.py: ids verify only under their key, version and arm, and only while young;
replicas starting together share one key file."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from clf.serving.errors import ClientErrorReason, InvalidInputError
from clf.serving.prediction_ids import PredictionIds


def test_an_id_verifies_for_its_version_and_arm_only():
    ids = PredictionIds(b"0123456789abcdef")
    issued = ids.issue("v1.2.0", "canary")
    ids.verify(issued, "v1.2.0", "canary")
    for version, arm in (("v1.2.0", "production"), ("v1.1.0", "canary")):
        with pytest.raises(InvalidInputError) as refused:
            ids.verify(issued, version, arm)
        assert (refused.value.reason, refused.value.status) == (ClientErrorReason.FOREIGN_PREDICTION, 403)
    assert len({ids.issue("v1.2.0", "canary") for _ in range(1000)}) == 1000


def test_another_key_or_a_tampered_id_fails_the_check_without_any_lookup():
    ours, theirs = PredictionIds(b"0123456789abcdef"), PredictionIds(b"fedcba9876543210")
    issued = theirs.issue("v1.0.0", "live")
    random_part, stamp, tag, binding = ours.issue("v1.0.0", "live").split(".")
    for foreign in (issued, f"{random_part}.{int(stamp, 16) + 1:x}.{tag}.{binding}", "", "a.b.c.d", "x" * 500):
        with pytest.raises(InvalidInputError, match="not issued by this service"):
            ours.check(foreign)


def test_an_old_id_is_expired():
    now = [1_700_000_000.0]
    ids = PredictionIds(b"0123456789abcdef", max_age_s=3600, clock=lambda: now[0])
    issued = ids.issue("v1.0.0", "live")
    now[0] += 3599
    ids.check(issued)
    now[0] += 2
    with pytest.raises(InvalidInputError, match="issued 1 h ago; feedback is taken for 1 h") as refused:
        ids.check(issued)
    assert refused.value.reason == ClientErrorReason.EXPIRED_PREDICTION


def test_replicas_starting_together_share_one_owner_only_key_file(tmp_path):
    path = tmp_path / "secrets" / "prediction_ids.key"
    with ThreadPoolExecutor(8) as pool:
        issuers = list(pool.map(lambda _: PredictionIds.from_key_file(path), range(8)))
    issued = issuers[0].issue("v1.0.0", "live")
    for other in issuers[1:]:
        other.verify(issued, "v1.0.0", "live")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["prediction_ids.key"], "no temporary file is left behind"


def test_a_damaged_key_file_says_how_to_recover(tmp_path):
    path = tmp_path / "prediction_ids.key"
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="delete it to make a new one"):
        PredictionIds.from_key_file(path)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PredictionIds(b"short")
