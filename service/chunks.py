"""Long lists of ids (events, messages) worked on a slice at a time: one Redis round trip or
transaction per slice instead of one per id, and never one command the size of a backlog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive slices of at most ``size`` (``itertools.batched`` from Python 3.12)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
