"""Lake et al.'s one-shot protocol as episodes: one alphabet, two drawers.

Lake et al. (2015) test one-shot classification *within* an alphabet: the 20 classes of
a trial are characters of one alphabet, so they look alike, and the test drawing is by
another person than the training drawing. Random episodes from mixed alphabets are far
easier (a Tifinagh character rarely looks like a Korean one) and cannot tell apart
models that Lake's 20 runs separate. :class:`WithinAlphabetSampler` draws such
episodes from any split, seeded, so that thousands of trials can be scored instead of
Lake's 400.

Omniglot's files are ``<character>_<drawer>.png`` with drawers ``01..20``, and the
loader sorts them, so image ``k`` of every character of an alphabet is by drawer ``k + 1``.
"""

from __future__ import annotations

import torch

from .dataset import FewShotDataset
from .episodes import Episode, gather_episode
from .sampling import SeededSampler, as_int


def alphabet_of(class_name: str) -> str:
    """``"Greek/character05"`` -> ``"Greek"``; ``"Greek/character05/rot090"`` -> ``"Greek/rot090"``.

    A rotated copy of an alphabet is an alphabet of its own (its characters look alike).
    """
    parts = class_name.split("/")
    if len(parts) < 2:
        raise ValueError(f"class name {class_name!r} is not 'Alphabet/character': within-alphabet episodes "
                         "need Omniglot's class names (load_omniglot)")
    return "/".join([parts[0], *parts[2:]])


class WithinAlphabetSampler(SeededSampler[Episode]):
    """N-way episodes of one alphabet, support by one drawer and queries by others.

    Each episode picks an alphabet (uniformly among those with at least ``n_way``
    characters), ``n_way`` of its characters, and ``n_shot + n_query`` distinct drawers:
    every support image is by the first ``n_shot`` drawers, every query by the other
    ``n_query``, the same drawers for all classes (Lake et al.'s runs: 20-way, one
    training and one test drawing per class, two different people).

    Args:
        dataset: Omniglot classes named ``Alphabet/character..`` (:func:`load_omniglot`),
            with images in drawer order.
        n_way, n_shot, n_query: as for :class:`EpisodeSampler` (default: Lake's 20-way 1-shot,
            one query per class).
        seed, n_episodes: as for :class:`EpisodeSampler`.

    Raises:
        ValueError: no alphabet has ``n_way`` characters, more drawers than images are
            asked for, or the class names carry no alphabet.
    """

    def __init__(self, dataset: FewShotDataset, n_way: int = 20, n_shot: int = 1, n_query: int = 1,
                 seed: int | None = None, n_episodes: int | None = None) -> None:
        n_way, n_shot, n_query = (as_int(k, v) for k, v in (("n_way", n_way), ("n_shot", n_shot),
                                                            ("n_query", n_query)))
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(dataset.class_names):
            groups.setdefault(alphabet_of(name), []).append(i)
        self.alphabets = {a: torch.tensor(ix) for a, ix in sorted(groups.items()) if len(ix) >= n_way}
        if not self.alphabets:
            largest = max(len(ix) for ix in groups.values())
            raise ValueError(f"n_way={n_way} but the largest alphabet of {dataset.name!r} has {largest} "
                             f"characters; lower n_way")
        if n_shot + n_query > dataset.n_per_class:
            raise ValueError(f"n_shot + n_query = {n_shot + n_query} drawers but each character has only "
                             f"{dataset.n_per_class} drawings; lower n_shot or n_query")
        self.dataset, self.n_way, self.n_shot, self.n_query = dataset, n_way, n_shot, n_query
        super().__init__(seed, n_episodes, count_name="n_episodes")

    @property
    def n_episodes(self) -> int | None:
        return self.n_batches

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classes [n_way], drawers [n_shot + n_query])``: support drawers first."""
        g = self.generator
        names = list(self.alphabets)
        members = self.alphabets[names[int(torch.randint(len(names), (1,), generator=g))]]
        classes = members[torch.randperm(len(members), generator=g)[: self.n_way]]
        drawers = torch.randperm(self.dataset.n_per_class, generator=g)[: self.n_shot + self.n_query]
        return classes, drawers

    def sample(self) -> Episode:
        """Draw the next episode (labels ``0..n_way-1`` in the order the classes were drawn)."""
        classes, drawers = self.sample_indices()
        return gather_episode(self.dataset, classes, drawers[None, :], self.n_shot)
