"""The seeded base every sampler shares: one generator, an optional length, iteration."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Generic, TypeVar

import torch

B = TypeVar("B")


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (``None``: a fresh random seed).

    Raises:
        TypeError: ``seed`` is not an integer (``True``, ``"0"`` and ``0.5`` are refused).
    """
    g = torch.Generator()
    if seed is None:
        g.seed()
        return g
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {seed!r} ({type(seed).__name__})")
    g.manual_seed(int(seed))
    return g


def check_count(name: str, value: int | None, allow_none: bool = True) -> int | None:
    """``value`` as a positive int (``None`` allowed when ``allow_none``), else a clear error."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class SeededSampler(Generic[B]):
    """Base of every sampler: ``sample()`` draws one batch from ``self.generator``.

    Iterating yields ``n_batches`` batches (endless when ``None``); the same seed gives
    the same sequence. Subclasses implement :meth:`sample` only.
    """

    def __init__(self, seed: int | None = 0, n_batches: int | None = None) -> None:
        self.seed = seed
        self.generator = seeded_generator(seed)
        self.n_batches = check_count("n_batches", n_batches)

    def sample(self) -> B:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[B]:
        n = 0
        while self.n_batches is None or n < self.n_batches:
            yield self.sample()
            n += 1

    def __len__(self) -> int:
        if self.n_batches is None:
            raise TypeError("an endless sampler has no length; pass a number of batches")
        return self.n_batches
