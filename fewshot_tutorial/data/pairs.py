"""Balanced, seeded batches of image pairs (for Siamese networks)."""

from __future__ import annotations

import torch

from .dataset import FewShotDataset
from .sampling import SeededSampler

PairBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class PairSampler(SeededSampler[PairBatch]):
    """Batches of ``batch_size // 2`` same-class pairs, then as many different-class pairs.

    A same pair is one class, two different drawings; a different pair is two distinct
    classes, one drawing each; all drawn uniformly. Each batch is
    ``(x1 [B, C, H, W], x2 [B, C, H, W], same [B])``.

    Args:
        dataset: the training classes.
        batch_size: pairs per batch ``B`` (even).
        seed: same seed -> the same batches.
        n_batches: length of one pass (``None``: endless).
    """

    def __init__(self, dataset: FewShotDataset, batch_size: int = 64, seed: int | None = 0,
                 n_batches: int | None = None) -> None:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch_size must be an even number >= 2 (half same, half different), got {batch_size}")
        if dataset.n_classes < 2 or dataset.n_per_class < 2:
            raise ValueError(f"need >= 2 classes of >= 2 images to make pairs, got {dataset!r}")
        super().__init__(seed, n_batches)
        self.dataset, self.batch_size = dataset, batch_size

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(first [B, 2], second [B, 2], same [B])``: (class, drawing) indices of each image."""
        g, h = self.generator, self.batch_size // 2
        n_cls, n_img = self.dataset.n_classes, self.dataset.n_per_class
        c = torch.randint(n_cls, (h,), generator=g)  # same: one class, two drawings
        i = torch.randint(n_img, (h,), generator=g)
        j = (i + torch.randint(1, n_img, (h,), generator=g)) % n_img
        c1 = torch.randint(n_cls, (h,), generator=g)  # different: two distinct classes
        c2 = (c1 + torch.randint(1, n_cls, (h,), generator=g)) % n_cls
        i1, i2 = torch.randint(n_img, (2, h), generator=g)
        first = torch.stack([torch.cat([c, c1]), torch.cat([i, i1])], 1)
        second = torch.stack([torch.cat([c, c2]), torch.cat([j, i2])], 1)
        return first, second, torch.cat([torch.ones(h), torch.zeros(h)])

    def sample(self) -> PairBatch:
        """The next batch ``(x1, x2, same)``."""
        first, second, same = self.sample_indices()
        data = self.dataset.images
        dev = data.device
        x1 = data[first[:, 0].to(dev), first[:, 1].to(dev)]
        x2 = data[second[:, 0].to(dev), second[:, 1].to(dev)]
        return x1, x2, same.to(dev)
