"""Episodes (one few-shot task) and the seeded sampler that draws them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from .dataset import FewShotDataset
from .sampling import SeededSampler, as_int


def _class_labels(name: str, y: torch.Tensor) -> list[int] | None:
    """The values of class labels ``y``, or ``None`` where they are not checked: float
    labels (regression targets) and labels that cannot be read cheaply (off the CPU, where
    reading would stall the device, or inside ``torch.func.vmap``)."""
    if y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got a bool tensor")
    if y.is_floating_point() or y.device.type != "cpu" or torch._C._functorch.is_functorch_wrapped_tensor(y):
        return None
    return y.reshape(-1).tolist()


def _check_range(name: str, labels: list[int], n_way: int) -> None:
    bad = sorted({v for v in labels if not 0 <= v < n_way})
    if bad:
        raise ValueError(f"{name} holds label(s) {bad[:5]} outside 0..{n_way - 1} (n_way={n_way}); "
                         "labels are class indices: renumber them 0..n_way-1 or raise n_way")


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: a labelled support set and a query set to classify.

    Support and query are class-major: an episode from :class:`EpisodeSampler` has
    ``support_y = arange(n_way).repeat_interleave(n_shot)`` and
    ``query_y = arange(n_way).repeat_interleave(n_query)``, so
    ``support_x.reshape(n_way, n_shot, C, H, W)[c]`` are the shots of class ``c``, which
    custom losses may rely on. An episode you build yourself is kept in your order.

    Attributes:
        support_x: ``[n_way * n_shot, C, H, W]``
        support_y: ``[n_way * n_shot]`` labels in ``0..n_way-1``, every class at least once.
        query_x: ``[n_queries, C, H, W]`` (``n_queries = n_way * n_query`` when sampled).
        query_y: ``[n_queries]`` labels in ``0..n_way-1``, or ``None`` for unlabelled
            queries, e.g. your own images to classify.
        n_way: number of classes; read off ``support_y`` when not given.

    Integer labels are checked when they live on the CPU (reading them on an accelerator
    would stall it; under ``torch.func.vmap`` they cannot be read). Floating-point labels
    are regression targets (e.g. sinusoid tasks) and are not checked.

    Raises:
        ValueError: images and labels of different lengths, an empty support set, labels
            outside ``0..n_way-1``, or a class without a support image.
        TypeError: a field that is not a tensor, bool labels, or an ``n_way`` that is not an int.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor | None = None
    n_way: int = 0

    def __post_init__(self) -> None:
        for name in ("support_x", "support_y", "query_x", "query_y"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) and not (name == "query_y" and value is None):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        n_q = None if self.query_y is None else len(self.query_y)
        if len(self.support_x) != len(self.support_y) or n_q not in (None, len(self.query_x)):
            raise ValueError(
                f"support has {len(self.support_x)} images and {len(self.support_y)} labels, "
                f"query has {len(self.query_x)} images and {n_q} labels; they must match"
            )
        if len(self.support_y) == 0:
            raise ValueError("the support set is empty; give at least one labelled image per class")
        support = _class_labels("support_y", self.support_y)
        if self.n_way == 0:
            n_way = max(support) + 1 if support is not None else int(self.support_y.max().item()) + 1
            object.__setattr__(self, "n_way", n_way)
        object.__setattr__(self, "n_way", as_int("n_way", self.n_way))
        query = None if self.query_y is None else _class_labels("query_y", self.query_y)
        for name, labels in (("support_y", support), ("query_y", query)):
            if labels is not None:
                _check_range(name, labels, self.n_way)
        missing = [] if support is None else sorted(set(range(self.n_way)) - set(support))
        if missing:
            raise ValueError(f"class(es) {missing[:5]} of n_way={self.n_way} have no support image; "
                             "give every class at least one, or lower n_way")

    @property
    def n_shot(self) -> int:
        """Support images per class (of a class-balanced support set, as sampled)."""
        return len(self.support_y) // self.n_way

    @property
    def n_query(self) -> int:
        """Query images per class when the labelled queries are class-balanced (as sampled);
        otherwise (no labels, or classes with different counts) the number of query images.

        So a single query image gives 1, never 0.
        """
        q = len(self.query_x)
        if self.query_y is None or q % self.n_way:
            return q
        labels = _class_labels("query_y", self.query_y)
        if labels is None:  # regression targets, or labels not read here: as sampled
            return q // self.n_way
        counts = Counter(labels)
        return q // self.n_way if len(counts) == self.n_way and len(set(counts.values())) == 1 else q

    def to(self, device: torch.device | str, channels_last: bool = False) -> "Episode":
        """The same episode with every tensor on ``device`` (images NHWC if ``channels_last``)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        sx, qx = (x.to(device, non_blocking=True).contiguous(memory_format=fmt)
                  for x in (self.support_x, self.query_x))
        sy = self.support_y.to(device, non_blocking=True)
        qy = None if self.query_y is None else self.query_y.to(device, non_blocking=True)
        return Episode(sx, sy, qx, qy, n_way=self.n_way)


def check_episode_shape(n_classes: int, n_per_class: int, n_way: int, n_shot: int,
                        n_query: int) -> tuple[int, int, int]:
    """``(n_way, n_shot, n_query)`` as ints, or an error naming the argument.

    Raises:
        TypeError: a count is a bool or not an integer (NumPy integers are accepted).
        ValueError: a count below 1, or more than the dataset holds.
    """
    n_way, n_shot, n_query = (as_int(k, v) for k, v in
                              (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query)))
    if n_way > n_classes:
        raise ValueError(f"n_way={n_way} but the dataset has only {n_classes} classes; lower n_way")
    if n_shot + n_query > n_per_class:
        raise ValueError(
            f"n_shot + n_query = {n_shot} + {n_query} = {n_shot + n_query} but each class has only "
            f"{n_per_class} images; lower n_shot or n_query"
        )
    return n_way, n_shot, n_query


def gather_episode(dataset: FewShotDataset, classes: torch.Tensor, images: torch.Tensor, n_shot: int) -> Episode:
    """The episode of ``classes [n_way]`` and, per class, ``images [n_way, k]`` (or one row
    ``[1, k]`` shared by all classes): the first ``n_shot`` images of each class are its
    support, the rest its queries; labels ``0..n_way-1`` follow the order of ``classes``."""
    data = dataset.images
    dev = data.device
    x = data[classes.to(dev)[:, None], images.to(dev)]  # [n_way, k, C, H, W]
    n_way, k = x.shape[:2]
    labels = torch.arange(n_way, device=dev)
    shape = data.shape[2:]
    return Episode(
        support_x=x[:, :n_shot].reshape(n_way * n_shot, *shape),
        support_y=labels.repeat_interleave(n_shot),
        query_x=x[:, n_shot:].reshape(n_way * (k - n_shot), *shape),
        query_y=labels.repeat_interleave(k - n_shot),
        n_way=n_way,
    )


class EpisodeSampler(SeededSampler[Episode]):
    """Draws N-way K-shot episodes from a :class:`FewShotDataset`, reproducibly.

    Each episode picks ``n_way`` distinct classes, then ``n_shot + n_query`` distinct
    images of each; the first ``n_shot`` go to the support set, the rest to the query
    set, so the two never share an image. Labels ``0..n_way-1`` follow the order in
    which the classes were drawn. Sampling is pure tensor indexing on the dataset's
    device (no image decoding), so it costs microseconds.

    Args:
        dataset: the classes to draw from.
        n_way, n_shot, n_query: classes per episode, support and query images per class
            (ints; NumPy integers are accepted, bools are not).
        seed: same seed -> the same sequence of episodes (an int, or ``None`` for a random one).
        n_episodes: length of one pass when iterated, >= 1 (``None``: endless).

    Raises:
        TypeError: a count or the seed is not an int (or is a bool).
        ValueError: a count below 1, or more classes or images than the dataset has.
    """

    def __init__(self, dataset: FewShotDataset, n_way: int, n_shot: int, n_query: int,
                 seed: int | None = None, n_episodes: int | None = None) -> None:
        n_way, n_shot, n_query = check_episode_shape(dataset.n_classes, dataset.n_per_class,
                                                     n_way, n_shot, n_query)
        self.dataset, self.n_way, self.n_shot, self.n_query = dataset, n_way, n_shot, n_query
        super().__init__(seed, n_episodes, count_name="n_episodes")

    @property
    def n_episodes(self) -> int | None:
        """Episodes in one pass (``None``: endless)."""
        return self.n_batches

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
        return gather_episode(self.dataset, classes, images, self.n_shot)
