"""Semantic version names of registered models: ``vMAJOR.MINOR.PATCH``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_PATTERN = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why and what to do."""


class InvalidVersionError(RegistryError):
    """A version name that is not ``vX.Y.Z``."""


class Bump(StrEnum):
    """Which part of the version the next one increments."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


@dataclass(frozen=True, order=True)
class Version:
    """A parsed ``vMAJOR.MINOR.PATCH``; ordered by number, so ``v1.10.0`` sorts after ``v1.9.0``."""

    major: int
    """The first number; a major bump increments it and resets the other two to 0."""
    minor: int
    """The second number; a minor bump (the default) increments it and resets `patch` to 0."""
    patch: int
    """The third number; a patch bump increments it."""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parses ``vX.Y.Z``.

        Args:
            text: the version name, e.g. ``v1.2.0``.

        Returns:
            The parsed version.

        Raises:
            InvalidVersionError: naming the bad value and the expected form.
        """
        match = _PATTERN.match(str(text).strip())
        if match is None:
            raise InvalidVersionError(
                f"--version must look like vMAJOR.MINOR.PATCH (e.g. v1.0.0, no leading zeros), got {text!r}"
            )
        return cls(*(int(part) for part in match.groups()))

    def bump(self, kind: Bump | str) -> Version:
        """The next version after this one.

        Args:
            kind: ``major`` (resets minor and patch), ``minor`` (resets patch) or ``patch``.

        Returns:
            The bumped version.

        Raises:
            InvalidVersionError: when `kind` is not major, minor or patch.
        """
        try:
            kind = Bump(kind)
        except ValueError as err:
            raise InvalidVersionError(f"--bump must be major, minor or patch, got {kind!r}") from err
        if kind is Bump.MAJOR:
            return Version(self.major + 1, 0, 0)
        if kind is Bump.MINOR:
            return Version(self.major, self.minor + 1, 0)
        return Version(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


FIRST_VERSION = Version(1, 0, 0)
"""The version `next_version` gives an empty registry."""


def next_version(existing: list[str], bump: Bump | str = Bump.MINOR) -> str:
    """The version after the highest of `existing`, or ``v1.0.0`` when there is none.

    Args:
        existing: the registered version names.
        bump: which part to increment.

    Returns:
        The next version name.
    """
    if not existing:
        Version(0, 0, 0).bump(bump)  # validates `bump` even for an empty registry
        return str(FIRST_VERSION)
    return str(max(Version.parse(v) for v in existing).bump(bump))
