"""The contract between the HTTP edge and one webhook sender.

The edge reads the raw body under a size cap, lower-cases the header names, then calls
``source.verify(headers, body, secrets)`` (raises ``SignatureError``) and only afterwards
``source.parse(headers, body)`` (raises ``MalformedPayload``). Neither touches the network,
a store or a clock other than the one a source is built with.

How to answer, by outcome of ``parse``:
- ``Parsed.events`` non-empty: record and enqueue them (dedupe on ``delivery_id``);
- ``Parsed.ping``: 200, nothing recorded;
- ``Parsed.ignored``: authentic but not acted on → 202 ``{"ignored": reason}`` (never a 4xx:
  GitLab disables hooks that answer 4xx).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from handlers.events import Event

Headers = Mapping[str, str]
"""Request headers with names lower-cased by the caller."""

PATH_TOKEN_HEADER = "x-shipline-path-token"  # noqa: S105 - a header name
"""Where the edge puts the secret path segment of senders that cannot sign (Docker Hub, Quay)."""


@dataclass(frozen=True)
class Secrets:
    """Resolved secret values for one receiver. ``repr`` shows only whether each is set."""

    current: str | None = field(repr=False)
    previous: str | None = field(default=None, repr=False)
    """Still accepted during a rotation."""
    header: str | None = None
    """Override of the header that carries a shared token (token-based senders only)."""

    def candidates(self) -> tuple[str, ...]:
        """Non-empty secrets in the order to try them; empty when none is configured."""
        if not self.current:
            return ()
        return (self.current, self.previous) if self.previous else (self.current,)

    def __repr__(self) -> str:
        def state(value: str | None) -> str:
            return "<set>" if value else "<unset>"

        current, previous = state(self.current), state(self.previous)
        return f"Secrets(current={current}, previous={previous}, header={self.header!r})"


@dataclass(frozen=True)
class Parsed:
    """What one delivery means. ``delivery_id`` is the sender's id for dedupe, ``""`` if none."""

    events: tuple[Event, ...] = ()
    delivery_id: str = ""
    ping: bool = False
    ignored: str | None = None
    """Why an authentic delivery is not acted on (the edge answers 202 with it)."""
    event_type: str = ""
    """The sender's event name, e.g. ``push``, ``Tag Push Hook``, ``registry_package``."""


class Source(Protocol):
    """One sender. Implementations are stateless and safe to share between requests."""

    name: str

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        """Raise ``SignatureError`` unless the delivery is authentic for ``secrets``.

        Fails closed: without a configured secret every delivery is refused. Comparisons are
        constant-time; ``secrets.current`` is tried first, then ``secrets.previous``.
        """
        ...

    def parse(self, headers: Headers, body: bytes) -> Parsed:
        """Turn a verified delivery into events; ``MalformedPayload`` for bad JSON or fields."""
        ...
