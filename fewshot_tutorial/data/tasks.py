"""Meta-batches: groups of episodes (tasks) for one meta-update."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(batches: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group an iterable of episodes into lists of ``size`` (a meta-batch of tasks)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"meta-batch size must be an int >= 1, got {size!r}")
    group: list[T] = []
    for b in batches:
        group.append(b)
        if len(group) == size:
            yield group
            group = []
