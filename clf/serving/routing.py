"""Traffic rules: which loaded version answers a request.

A rule is any object with ``route(user_id) -> Route`` and ``versions``. The service asks it once per request; the
deployment and A/B layers install rules (a canary split, an experiment's arms) and the service checks that every
version a rule can pick is loaded before it takes effect.

>>> split = WeightedSplit(control="v1.0.0", treatment="v1.1.0", treatment_share=0.5, salt="exp-1")
>>> split.route("alice") == split.route("alice")
True
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Route:
    """Where one request goes.

    Attributes:
        version: the version that answers.
        arm: the experiment arm or rollout role (``live``, ``control``, ``treatment``, ``canary``...).
        experiment: the A/B experiment the request belongs to, if any.
    """

    version: str
    arm: str = "live"
    experiment: str | None = None


class TrafficRule(Protocol):
    """Picks the version for each request."""

    @property
    def versions(self) -> frozenset[str]:
        """Every version this rule can pick (each must be loaded in the service)."""
        ...

    def route(self, user_id: str | None) -> Route:
        """The version (and arm) for one request from `user_id` (None for anonymous requests).

        Args:
            user_id: the caller's stable id; None for anonymous requests.

        Returns:
            The version to answer with, its arm and experiment (if any).
        """
        ...


def stable_bucket(user_id: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by `user_id` and `salt`: the same in every process, on every machine, forever.

    SHA-256 rather than Python's ``hash()``, which is salted per process.

    Args:
        user_id: the caller's stable id.
        salt: separates experiments, so one user's buckets in two experiments are independent.

    Returns:
        The bucket; a user is in the treatment arm when it is below the treatment share.

    Examples:
        >>> stable_bucket("alice", "exp-1") == stable_bucket("alice", "exp-1")
        True
        >>> 0.0 <= stable_bucket("bob") < 1.0
        True
    """
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SingleVersion:
    """Every request goes to one version.

    Attributes:
        version: the version that answers.
        arm: the arm name reported with each prediction.
    """

    version: str
    arm: str = "live"

    @property
    def versions(self) -> frozenset[str]:
        """The one version."""
        return frozenset({self.version})

    def route(self, user_id: str | None) -> Route:
        """Always the same version.

        Args:
            user_id: ignored; every request gets the same version.

        Returns:
            This rule's version and arm.
        """
        return Route(self.version, self.arm)


@dataclass(frozen=True)
class WeightedSplit:
    """Sends `treatment_share` of traffic to `treatment`, the rest to `control`.

    A request with a user id is placed by `stable_bucket(user_id, salt)`, so a user stays in one arm across
    requests, processes and restarts; anonymous requests are placed at random.

    Attributes:
        control: the version most traffic keeps (production).
        treatment: the candidate version.
        treatment_share: the share of traffic for `treatment`, in [0, 1].
        salt: separates experiments, so a user's arm in one does not decide their arm in the next.
        control_arm: the arm name reported for `control`.
        treatment_arm: the arm name reported for `treatment`.
        rng: the random source for anonymous requests (seed it in tests).
        experiment: the experiment id reported in each `Route` (None outside an A/B experiment).

    Raises:
        ValueError: when `treatment_share` is outside [0, 1].
    """

    control: str
    treatment: str
    treatment_share: float
    salt: str = ""
    control_arm: str = "control"
    treatment_arm: str = "treatment"
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    experiment: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.treatment_share <= 1.0:
            raise ValueError(f"treatment_share must be in [0, 1], got {self.treatment_share}")

    @property
    def versions(self) -> frozenset[str]:
        """Control and treatment."""
        return frozenset({self.control, self.treatment})

    def route(self, user_id: str | None) -> Route:
        """Treatment when the user's bucket (or a random draw) falls below the share.

        Args:
            user_id: the caller's stable id, which keeps a user in one arm; None draws at random per request.

        Returns:
            The treatment or control version, with its arm and the experiment.
        """
        point = self.rng.random() if user_id is None else stable_bucket(user_id, self.salt)
        if point < self.treatment_share:
            return Route(self.treatment, self.treatment_arm, self.experiment)
        return Route(self.control, self.control_arm, self.experiment)


def traffic_shares(rule: TrafficRule) -> dict[str, float]:
    """The share of requests `rule` sends each version (an unknown kind of rule: equal shares).

    Args:
        rule: a traffic rule.

    Returns:
        version → share, summing to 1.
    """
    if isinstance(rule, WeightedSplit):
        if rule.control == rule.treatment:
            return {rule.control: 1.0}
        return {rule.control: 1.0 - rule.treatment_share, rule.treatment: rule.treatment_share}
    versions = sorted(rule.versions)
    return {version: 1.0 / len(versions) for version in versions}
