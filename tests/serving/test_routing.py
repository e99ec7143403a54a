"""Tests for clf/serving/routing.py: sticky hash routing and weighted splits."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from clf.serving.routing import Route, SingleVersion, WeightedSplit, stable_bucket


def test_bucket_is_the_same_in_another_process():
    ids = [f"user-{i}" for i in range(5)]
    code = f"from clf.serving.routing import stable_bucket; print([stable_bucket(u, 'exp') for u in {ids!r}])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str([stable_bucket(u, "exp") for u in ids])


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_split_over_10000_users_is_within_two_points_and_sticky(share):
    split = WeightedSplit("v1.0.0", "v1.1.0", treatment_share=share, salt="exp-7")
    routes = {f"user-{i}": split.route(f"user-{i}") for i in range(10_000)}
    treated = sum(route.arm == "treatment" for route in routes.values()) / len(routes)
    assert abs(treated - share) <= 0.02
    assert all(split.route(user) == route for user, route in list(routes.items())[:500])
    again = WeightedSplit("v1.0.0", "v1.1.0", treatment_share=share, salt="exp-7")
    assert all(again.route(user) == route for user, route in list(routes.items())[:500])


def test_a_different_salt_reshuffles_users():
    a = WeightedSplit("v1", "v2", 0.5, salt="exp-1")
    b = WeightedSplit("v1", "v2", 0.5, salt="exp-2")
    same = sum(a.route(f"u{i}") == b.route(f"u{i}") for i in range(2000)) / 2000
    assert 0.4 < same < 0.6


def test_extreme_shares_and_anonymous_requests():
    assert {WeightedSplit("a", "b", 0.0).route(f"u{i}").version for i in range(200)} == {"a"}
    assert {WeightedSplit("a", "b", 1.0).route(f"u{i}").version for i in range(200)} == {"b"}
    seeded = WeightedSplit("a", "b", 0.25, rng=random.Random(3))
    anonymous = [seeded.route(None).version for _ in range(4000)]
    assert abs(anonymous.count("b") / 4000 - 0.25) < 0.03


def test_invalid_share_is_rejected_with_the_range():
    with pytest.raises(ValueError, match=r"\[0, 1\], got 1.5"):
        WeightedSplit("a", "b", 1.5)


def test_single_version_sends_everything_to_it():
    rule = SingleVersion("v2.0.0")
    assert rule.route("anyone") == Route("v2.0.0", "live") and rule.versions == {"v2.0.0"}
