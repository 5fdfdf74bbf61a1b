"""One error tree that decides what happens next.

- ``Rejected``: the delivery is not authentic or not well-formed → 4xx, nothing recorded.
- ``PermanentError``: retrying cannot help (bad config, a Dockerfile that fails) → fail, visible.
- ``TransientError``: the world may heal (a remote is down, a push was rejected) → retry, backoff.
"""

from __future__ import annotations


class ShiplineError(Exception):
    """Base of every error Shipline raises on purpose."""


class ConfigError(ShiplineError):
    """The configuration is invalid; the message names the key path and a hint."""


class Rejected(ShiplineError):
    """A delivery is refused; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class SignatureError(Rejected):
    status = 401


class PayloadTooLarge(Rejected):
    status = 413


class MalformedPayload(Rejected):
    status = 400


class PermanentError(ShiplineError):
    """Retrying will not help; the job ends failed with this message."""


class TransientError(ShiplineError):
    """Worth retrying; ``delay`` (seconds) is a hint for the next attempt."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class UnsafeInput(PermanentError):
    """A ref, tag, path or image name from a payload failed validation."""
