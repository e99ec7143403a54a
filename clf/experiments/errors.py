"""The errors of the A/B testing layer; each message names the problem and what to do about it."""


class ExperimentError(RuntimeError):
    """Something about an A/B experiment went wrong; the base of every error in `clf.experiments`."""


class InvalidExperimentError(ExperimentError, ValueError):
    """An experiment definition that cannot run: a bad name, split or version."""


class ExperimentConflictError(ExperimentError):
    """Another experiment is already running on the same control version."""


class ExperimentNotFoundError(ExperimentError, LookupError):
    """No experiment has the id asked for."""


class ExperimentStateError(ExperimentError):
    """The experiment is not in a state that allows the action (e.g. stopping a completed one)."""


class UnknownPredictionError(ExperimentError, LookupError):
    """Feedback names a prediction id that was never logged."""


class DatabaseUnavailableError(ExperimentError):
    """The experiments database cannot be reached or refused the operation."""
