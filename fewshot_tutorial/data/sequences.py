"""Sequence episodes (Santoro et al. 2016, sec. 4): labelled images one at a time, the label one step late.

A memory-augmented network does not get a support set and a query set. It sees a
sequence ``(x_1, null), (x_2, y_1), ..., (x_T, y_{T-1})`` and must predict ``y_t`` at
every step: the true label of an image arrives only at the next step, so the network
must hold on to ``(image, label)`` bindings until a later image of the same class
shows up. The labels of the classes are reshuffled in every episode, so no weight can
store them: only a memory of the current episode can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .dataset import FewShotDataset
from .sampling import SeededSampler, as_int


@dataclass(frozen=True)
class SequenceEpisode:
    """One sequence episode, or a batch of them (an extra leading ``B`` on every field).

    Attributes:
        x: ``[T, C, H, W]`` the images in the order they are shown.
        y: ``[T]`` their labels in ``0..N-1`` (what the network must predict at each step).
        prev_label: ``[T, N]`` one-hot of ``y[t - 1]``; row 0 is all zeros (no label yet).
        instance: ``[T]`` how many times ``y[t]``'s class has been shown up to and including
            step ``t`` (1 = its first appearance), for accuracy by instance.

    Raises:
        TypeError: a field that is not a tensor.
        ValueError: fields whose leading dimensions disagree.
    """

    x: torch.Tensor
    y: torch.Tensor
    prev_label: torch.Tensor
    instance: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("x", "y", "prev_label", "instance"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        lead = tuple(self.y.shape)
        shapes = {"x": tuple(self.x.shape[: len(lead)]), "prev_label": tuple(self.prev_label.shape[:-1]),
                  "instance": tuple(self.instance.shape)}
        bad = {k: v for k, v in shapes.items() if v != lead}
        if bad or self.y.dim() not in (1, 2) or self.x.dim() != self.y.dim() + 3:
            raise ValueError(f"y has shape {lead}; x must be [*y.shape, C, H, W], prev_label [*y.shape, N] and "
                             f"instance [*y.shape], got x {tuple(self.x.shape)}, prev_label "
                             f"{tuple(self.prev_label.shape)}, instance {tuple(self.instance.shape)}")

    @property
    def n_classes(self) -> int:
        """``N``, the number of labels (the width of ``prev_label``)."""
        return self.prev_label.shape[-1]

    @property
    def length(self) -> int:
        """``T``, the number of steps."""
        return self.y.shape[-1]

    def to(self, device: torch.device | str) -> SequenceEpisode:
        """The same episode with every tensor on ``device``."""
        return SequenceEpisode(*(getattr(self, k).to(device, non_blocking=True)
                                 for k in ("x", "y", "prev_label", "instance")))

    @classmethod
    def collate(cls, episodes: Sequence[SequenceEpisode]) -> SequenceEpisode:
        """Stack episodes of the same ``T`` and ``N`` into one batch: ``x [B, T, C, H, W]``, ``y [B, T]``, ...

        Raises:
            ValueError: no episodes, an episode that is already a batch, or different ``T`` or ``N``.
        """
        if len(episodes) == 0:
            raise ValueError("collate needs at least one episode")
        if any(e.y.dim() != 1 for e in episodes):
            raise ValueError("collate stacks single episodes (y of shape [T]), not batches")
        shapes = {(e.length, e.n_classes) for e in episodes}
        if len(shapes) > 1:
            raise ValueError(f"episodes of different (length, n_classes) {sorted(shapes)} cannot be stacked")
        return cls(*(torch.stack([getattr(e, k) for e in episodes]) for k in ("x", "y", "prev_label", "instance")))


def previous_labels(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The label input of each step, the one-hot true label of the step before.

    ``y [T] -> [T, n_classes]`` float: row ``t`` is ``onehot(y[t - 1])``, row 0 is zeros.
    """
    onehot = torch.eye(n_classes, device=y.device)[y]  # [T, N]
    return torch.cat([torch.zeros_like(onehot[:1]), onehot[:-1]])


def instance_numbers(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``y [T] -> [T]``: 1 + the number of earlier steps with the same label as step ``t``."""
    seen = torch.eye(n_classes, dtype=torch.long, device=y.device)[y].cumsum(0)  # [T, N] counts so far
    return seen.gather(1, y[:, None]).squeeze(1)


def class_counts(length: int, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``[n_classes]`` images per class summing to ``length``: ``length // n_classes`` each, and
    one more for ``length % n_classes`` classes drawn at random."""
    counts = torch.full((n_classes,), length // n_classes, dtype=torch.long)
    counts[torch.randperm(n_classes, generator=generator)[: length % n_classes]] += 1
    return counts


class SequenceSampler(SeededSampler[SequenceEpisode]):
    """Draws sequence episodes (Santoro et al. 2016, sec. 4) from a :class:`FewShotDataset`, reproducibly.

    Each episode picks ``n_classes`` distinct classes and gives them the labels of a fresh
    random permutation of ``0..n_classes-1``; it shows ``length`` images, as evenly spread
    over the classes as ``length`` allows (``length // n_classes`` each, one more for
    ``length % n_classes`` random classes; 10 each by default), all distinct drawings,
    in a random order. Indices are drawn on the CPU from the sampler's generator, so the
    same seed gives the same episodes whatever the dataset's device and however many
    episodes are drawn after them.

    Args:
        dataset: the classes to draw from.
        n_classes: ``N``, classes (and labels) per episode, at least 1.
        length: ``T``, images per episode, at least ``n_classes``.
        seed: same seed -> the same sequence of episodes (``None``: a random one).
        n_episodes: length of one pass when iterated (``None``: endless).

    Raises:
        TypeError: a count or the seed is not an int (or is a bool).
        ValueError: a count below 1, more classes than the dataset has, ``length < n_classes``,
            or more images per class than a class has.
    """

    def __init__(self, dataset: FewShotDataset, n_classes: int = 5, length: int = 50, seed: int | None = 0,
                 n_episodes: int | None = None) -> None:
        n_classes, length = as_int("n_classes", n_classes), as_int("length", length)
        if n_classes > dataset.n_classes:
            raise ValueError(f"n_classes={n_classes} but the dataset has only {dataset.n_classes} classes; "
                             "lower n_classes")
        if length < n_classes:
            raise ValueError(f"length={length} is shorter than n_classes={n_classes}; every class must "
                             "appear at least once: raise length")
        per_class = -(-length // n_classes)
        if per_class > dataset.n_per_class:
            raise ValueError(f"length={length} over n_classes={n_classes} needs up to {per_class} distinct images "
                             f"of a class, but each has only {dataset.n_per_class}; lower length")
        self.dataset, self.n_classes, self.length = dataset, n_classes, length
        super().__init__(seed, n_episodes, count_name="n_episodes")

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(classes [T], images [T], y [T])``: dataset class, drawing and label of each step."""
        g, d, n = self.generator, self.dataset, self.n_classes
        classes = torch.randperm(d.n_classes, generator=g)[:n]  # [N] dataset classes
        labels = torch.randperm(n, generator=g)  # [N] this episode's label of each class
        counts = class_counts(self.length, n, g)  # [N]
        drawings = torch.rand(n, d.n_per_class, generator=g).argsort(dim=1)  # [N, n_per_class] distinct
        k = torch.arange(n).repeat_interleave(counts)  # [T] which of the N classes, grouped
        first = (counts.cumsum(0) - counts).repeat_interleave(counts)
        j = drawings[k, torch.arange(self.length) - first]  # the 0th, 1st, ... drawing of each class
        order = torch.randperm(self.length, generator=g)
        k, j = k[order], j[order]
        return classes[k], j, labels[k]

    def sample(self) -> SequenceEpisode:
        """Draw the next episode (on the dataset's device)."""
        classes, images, y = self.sample_indices()
        data = self.dataset.images
        x = data[classes.to(data.device), images.to(data.device)]  # [T, C, H, W]
        prev = previous_labels(y, self.n_classes).to(x.dtype if x.is_floating_point() else torch.float32)
        return SequenceEpisode(x, y, prev, instance_numbers(y, self.n_classes)).to(data.device)
