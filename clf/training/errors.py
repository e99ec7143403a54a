"""Errors of `clf.training`."""


class TrainingConfigError(ValueError):
    """A fit config or an override cannot be parsed; the message names the file or key and how to fix it."""
