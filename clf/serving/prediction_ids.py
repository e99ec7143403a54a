"""Signed prediction ids: feedback can only name a prediction this service really issued, recently.

Each prediction gets an id ``<random>.<issued>.<tag>.<binding>`` (24 hex characters of randomness, the time issued
in hex epoch seconds, and two HMAC-SHA256 tags under a key shared by every replica, a file in the registry folder by
default): the tag signs the random part and the time, so `check` refuses a forged id, or one signed with another
fleet's key, before any database is asked; the binding signs them with the version and arm that answered, so
`verify` refuses an id presented for a prediction it was not issued for. Both refuse an id older than
``max_age_s``. The whole id stays under the 64 characters the prediction log keeps.

>>> ids = PredictionIds(b"k" * 32, clock=lambda: 1_700_000_000.0)
>>> issued = ids.issue("v1.2.0", "treatment")
>>> ids.check(issued); ids.verify(issued, "v1.2.0", "treatment")
>>> len(issued) <= 64
True
>>> ids.verify(issued, "v1.2.0", "control")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
clf.serving.errors.InvalidInputError: prediction id ... was not issued by this service for v1.2.0 (control); send \
the prediction_id of one of its /predict answers
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from clf.serving.errors import ClientErrorReason, InvalidInputError

_FORMAT = re.compile(r"^([0-9a-f]{24})\.([0-9a-f]{1,12})\.([0-9a-f]{12})\.([0-9a-f]{12})$")
_TAG_CHARS = 12  # 48 bits each: at a rate-limited endpoint, guessing one takes longer than any key lives

DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
"""Feedback is taken on predictions up to 30 days old: long enough for an A/B experiment's labels to come in."""


class PredictionIds:
    """Issues and verifies signed prediction ids.

    Args:
        key: the HMAC key, shared by every replica that serves the same experiments (at least 16 bytes).
        max_age_s: feedback on an id older than this is refused.
        clock: epoch seconds; a test seam.

    Raises:
        ValueError: for a key shorter than 16 bytes or a non-positive age.
    """

    def __init__(
        self, key: bytes, max_age_s: float = DEFAULT_MAX_AGE_S, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < 16:
            raise ValueError(f"the prediction id key must hold at least 16 bytes, got {len(key)}")
        if not max_age_s > 0:
            raise ValueError(f"--feedback.max_age_hours must be positive, got {max_age_s / 3600:g}")
        self._key = key
        self.max_age_s = max_age_s
        self.clock = clock

    @classmethod
    def from_key_file(cls, path: str | Path, max_age_s: float = DEFAULT_MAX_AGE_S) -> PredictionIds:
        """Reads the key from `path`, creating it (32 random bytes, readable by the owner only) when it is missing.

        Replicas started together race to create it; exactly one file wins and every replica reads that one.

        Args:
            path: the key file (hex text).
            max_age_s: feedback on an id older than this is refused.

        Returns:
            The id issuer over that key.

        Raises:
            ValueError: when the file does not hold a hex key of at least 16 bytes.
        """
        path = Path(path)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            # A hard link is atomic and fails if another replica linked its key first; that one is then used.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
            temporary.unlink()
        text = path.read_text().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{path} must hold the prediction id key as hex; delete it to make a new one") from None
        return cls(key, max_age_s)

    def issue(self, version: str, arm: str) -> str:
        """A new signed id for a prediction answered by `version` in `arm`.

        Args:
            version: the version that answered.
            arm: its arm (``live``, ``canary``, ``control``, ``treatment``...).

        Returns:
            The id (64 characters at most).
        """
        token, issued = secrets.token_hex(12), f"{int(self.clock()):x}"
        return f"{token}.{issued}.{self._tag('id', token, issued)}.{self._tag('route', token, issued, version, arm)}"

    def check(self, prediction_id: str) -> None:
        """Refuses an id this key did not sign, or one too old; needs no database, so it runs before any lookup.

        Args:
            prediction_id: the id a client sent.

        Raises:
            InvalidInputError: `FOREIGN_PREDICTION` (403) for an id of another format or signature,
                `EXPIRED_PREDICTION` (422) for one older than `max_age_s` (or issued in the future).
        """
        found = _FORMAT.match(prediction_id)
        if found is None or not hmac.compare_digest(found.group(3), self._tag("id", found.group(1), found.group(2))):
            raise _foreign(
                f"prediction id {_shown(prediction_id)} was not issued by this service; send the prediction_id of "
                "one of its /predict answers"
            )
        age = self.clock() - int(found.group(2), 16)
        if age > self.max_age_s or age < -300:
            raise InvalidInputError(
                f"prediction id {_shown(prediction_id)} was issued {age / 3600:.0f} h ago; feedback is taken for "
                f"{self.max_age_s / 3600:g} h after a prediction",
                ClientErrorReason.EXPIRED_PREDICTION,
            )

    def verify(self, prediction_id: str, version: str, arm: str) -> None:
        """Checks that `prediction_id` was issued by this key for `version` and `arm`, and is not too old.

        Args:
            prediction_id: the id a client sent.
            version: the version the prediction was logged with.
            arm: the arm it was logged with.

        Raises:
            InvalidInputError: `FOREIGN_PREDICTION` (403) when the signature does not match, `EXPIRED_PREDICTION`
                (422) when it is too old.
        """
        self.check(prediction_id)
        token, issued, _, binding = prediction_id.split(".")
        if not hmac.compare_digest(binding, self._tag("route", token, issued, version, arm)):
            raise _foreign(
                f"prediction id {_shown(prediction_id)} was not issued by this service for {version} ({arm}); send "
                "the prediction_id of one of its /predict answers"
            )

    def _tag(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:_TAG_CHARS]


def _foreign(message: str) -> InvalidInputError:
    return InvalidInputError(message, ClientErrorReason.FOREIGN_PREDICTION, status=403)


def _shown(prediction_id: str) -> str:
    """The id as an error message quotes it: short, and printable whatever a client sent."""
    return repr(prediction_id[:70])
