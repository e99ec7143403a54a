"""Errors of `clf tune`."""


class TuneError(RuntimeError):
    """The study cannot run as configured; the message names the option to change."""
