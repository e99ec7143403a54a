"""Errors of the serving layer; the HTTP application maps each to its status code."""

from __future__ import annotations


class ServingError(RuntimeError):
    """Base class of the serving layer's errors."""


class InvalidInputError(ValueError):
    """A request the service cannot classify (empty text, wrong type, too many papers); answered with HTTP 422."""


class ModelLoadError(ServingError):
    """A model folder that is missing, incomplete, or whose weights do not load."""


class NoModelError(ServingError):
    """No version to serve: the registry is empty and no base model is configured."""


class ServiceClosedError(ServingError):
    """A request reached a service (or a version's batcher) that has been shut down; answered with HTTP 503."""
