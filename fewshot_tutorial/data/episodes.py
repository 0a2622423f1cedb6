"""Episodes (one few-shot task) and the seeded sampler that draws them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .dataset import FewShotDataset


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: a labelled support set and a query set to classify.

    Attributes:
        support_x: ``[n_way * n_shot, C, H, W]``
        support_y: ``[n_way * n_shot]`` labels in ``0..n_way-1``
        query_x: ``[n_way * n_query, C, H, W]``
        query_y: ``[n_way * n_query]`` labels in ``0..n_way-1``
        n_way: number of classes; read off ``support_y`` when not given.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_way: int = 0

    def __post_init__(self) -> None:
        if len(self.support_x) != len(self.support_y) or len(self.query_x) != len(self.query_y):
            raise ValueError(
                f"support has {len(self.support_x)} images and {len(self.support_y)} labels, "
                f"query has {len(self.query_x)} images and {len(self.query_y)} labels; they must match"
            )
        if self.n_way <= 0:
            object.__setattr__(self, "n_way", int(self.support_y.max().item()) + 1)

    @property
    def n_shot(self) -> int:
        return len(self.support_y) // self.n_way

    @property
    def n_query(self) -> int:
        return len(self.query_y) // self.n_way

    def to(self, device: torch.device | str, channels_last: bool = False) -> "Episode":
        """The same episode with every tensor on ``device`` (images NHWC if ``channels_last``)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        sx, qx = (x.to(device, non_blocking=True).contiguous(memory_format=fmt)
                  for x in (self.support_x, self.query_x))
        sy, qy = (y.to(device, non_blocking=True) for y in (self.support_y, self.query_y))
        return Episode(sx, sy, qx, qy, n_way=self.n_way)


def check_episode_shape(n_classes: int, n_per_class: int, n_way: int, n_shot: int, n_query: int) -> None:
    """Raise ``ValueError`` naming the numbers if the request cannot be met."""
    for name, v in (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if n_way > n_classes:
        raise ValueError(f"n_way={n_way} but the dataset has only {n_classes} classes; lower n_way")
    if n_shot + n_query > n_per_class:
        raise ValueError(
            f"n_shot + n_query = {n_shot} + {n_query} = {n_shot + n_query} but each class has only "
            f"{n_per_class} images; lower n_shot or n_query"
        )


class EpisodeSampler:
    """Draws N-way K-shot episodes from a :class:`FewShotDataset`, reproducibly.

    Each episode picks ``n_way`` distinct classes, then ``n_shot + n_query`` distinct
    images of each; the first ``n_shot`` go to the support set, the rest to the query
    set, so the two never share an image. Labels ``0..n_way-1`` follow the order in
    which the classes were drawn. Sampling is pure tensor indexing on the dataset's
    device (no image decoding), so it costs microseconds.

    Args:
        dataset: the classes to draw from.
        n_way, n_shot, n_query: classes per episode, support and query images per class.
        seed: same seed -> the same sequence of episodes.
        n_episodes: length of one pass when iterated (``None``: endless).
    """

    def __init__(self, dataset: FewShotDataset, n_way: int, n_shot: int, n_query: int,
                 seed: int | None = None, n_episodes: int | None = None) -> None:
        check_episode_shape(dataset.n_classes, dataset.n_per_class, n_way, n_shot, n_query)
        self.dataset, self.n_way, self.n_shot, self.n_query = dataset, n_way, n_shot, n_query
        self.n_episodes = n_episodes
        self.seed = seed
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classes [n_way], images [n_way, n_shot + n_query])`` indices of one episode."""
        g, d = self.generator, self.dataset
        classes = torch.randperm(d.n_classes, generator=g)[: self.n_way]
        k = self.n_shot + self.n_query
        images = torch.rand(self.n_way, d.n_per_class, generator=g).argsort(dim=1)[:, :k]
        return classes, images

    def sample(self) -> Episode:
        """Draw the next episode."""
        classes, images = self.sample_indices()
        data = self.dataset.images
        dev = data.device
        x = data[classes.to(dev)[:, None], images.to(dev)]  # [n_way, k, C, H, W]
        labels = torch.arange(self.n_way, device=dev)
        s, q = self.n_shot, self.n_query
        shape = data.shape[2:]
        return Episode(
            support_x=x[:, :s].reshape(self.n_way * s, *shape),
            support_y=labels.repeat_interleave(s),
            query_x=x[:, s:].reshape(self.n_way * q, *shape),
            query_y=labels.repeat_interleave(q),
            n_way=self.n_way,
        )

    def __iter__(self) -> Iterator[Episode]:
        n = 0
        while self.n_episodes is None or n < self.n_episodes:
            yield self.sample()
            n += 1

    def __len__(self) -> int:
        if self.n_episodes is None:
            raise TypeError("an endless sampler has no length; pass n_episodes")
        return self.n_episodes
