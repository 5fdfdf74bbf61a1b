"""Build errors, split by what the caller does next (see the package docstring for the policy)."""

from __future__ import annotations

from handlers.errors import PermanentError, ShiplineError, TransientError

LOG_TAIL_LINES = 40


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


class BuildFailed(PermanentError):
    """``buildah bud`` exited non-zero; ``tail`` is the last lines of the build log."""

    reason = "failed"

    def __init__(self, message: str, *, tail: str = "") -> None:
        super().__init__(message)
        self.tail = tail


class BuildTimeout(BuildFailed):
    """The build ran past its time limit and its whole process group was killed."""

    reason = "timeout"


class PushDenied(PermanentError):
    """The registry refused our credentials: retrying with the same ones cannot help."""


class CommitNotFound(PermanentError):
    """The pushed commit is not in the repository even after a fetch (force-pushed away?)."""


class GitUnavailable(TransientError):
    """Cloning or fetching the mirror failed; the remote may come back."""


class RegistryUnavailable(TransientError):
    """The registry is unreachable, slow or answered 5xx/429."""


class BuilderGlitch(TransientError):
    """buildah failed on the host, not on the Dockerfile (a known transient kernel refusal):
    the same build is retried."""


class Superseded(ShiplineError):
    """A newer push to the same ref arrived; the build was stopped on purpose."""
