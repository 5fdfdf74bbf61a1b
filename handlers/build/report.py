"""What a push's build did, per image: frozen, JSON-safe, ready for a log line or an API answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from handlers.errors import TransientError

Status = Literal["built", "retagged", "skipped", "failed", "superseded"]
PUSHED: tuple[Status, ...] = ("built", "retagged")


@dataclass(frozen=True, slots=True)
class ImageResult:
    name: str
    """The image as configured: ``host/repository``."""
    status: Status
    tags: tuple[str, ...] = ()
    digest: str = ""
    reason: str = ""
    log: str | None = None
    """The build log (built, failed, superseded); ``None`` when nothing ran."""
    log_tail: str = ""
    """Last lines of the log when the build failed."""
    duration_seconds: float = 0.0
    retryable: bool = False
    """Failed on a ``TransientError``: a retry of the whole push may succeed."""

    @property
    def pushed(self) -> bool:
        return self.status in PUSHED


@dataclass(frozen=True, slots=True)
class BuildReport:
    repo: str
    ref: str
    sha: str
    images: tuple[ImageResult, ...] = ()
    nothing_to_build_reason: str | None = None
    """Set when no image was even considered (branch not built, no image's paths changed...)."""
    change_reason: str = ""
    """Why these images were chosen: ``paths changed: ...``, ``new branch main: every image builds``."""

    @property
    def pushed(self) -> tuple[ImageResult, ...]:
        """Images now served under their tags: the caller emits one ``ImagePushed`` per tag."""
        return tuple(i for i in self.images if i.pushed)

    @property
    def failed(self) -> tuple[ImageResult, ...]:
        return tuple(i for i in self.images if i.status == "failed")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images"] = [{**asdict(i), "tags": list(i.tags)} for i in self.images]
        return data


class BuildIncomplete(TransientError):
    """Some image failed transiently; ``report`` has every image's outcome. Retry the push."""

    def __init__(self, report: BuildReport, *, delay: float | None = None) -> None:
        why = "; ".join(f"{i.name}: {i.reason}" for i in report.images if i.retryable)
        super().__init__(f"transient failure building {why}", delay=delay)
        self.report = report
