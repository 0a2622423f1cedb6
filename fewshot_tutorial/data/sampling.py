"""The seeded base every sampler shares: one generator, an optional length, iteration."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Generic, TypeVar

import numpy as np
import torch

B = TypeVar("B")


def as_int(name: str, value: object, minimum: int | None = 1, hint: str = "") -> int:
    """``value`` as a Python ``int`` (NumPy and torch integers accepted), checked.

    Raises:
        TypeError: ``value`` is a bool or not an integer (the message names ``name``).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got the bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}{hint}, got {v}")
    return v


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (``None``: a fresh random seed).

    Raises:
        TypeError: ``seed`` is not an integer (``True``, ``"0"`` and ``0.5`` are refused).
    """
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(as_int("seed", seed, minimum=None))
    return g


class SeededSampler(Generic[B]):
    """Base of every sampler (episodes, pairs, tasks): ``sample()`` draws one batch from
    ``self.generator``.

    Iterating yields ``n_batches`` batches (endless when ``None``); the same seed gives
    the same sequence. Subclasses implement :meth:`sample` only.
    """

    def __init__(self, seed: int | None = 0, n_batches: int | None = None, count_name: str = "n_batches") -> None:
        self.seed = None if seed is None else as_int("seed", seed, minimum=None)
        self.generator = seeded_generator(self.seed)
        self.n_batches = None if n_batches is None else as_int(
            count_name, n_batches, hint=" (or None for an endless sampler)")
        self._count_name = count_name

    def sample(self) -> B:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[B]:
        n = 0
        while self.n_batches is None or n < self.n_batches:
            yield self.sample()
            n += 1

    def __len__(self) -> int:
        if self.n_batches is None:
            raise TypeError(f"an endless sampler has no length; pass {self._count_name}")
        return self.n_batches
