"""Seeded mini-batches of labelled images from *all* classes of a dataset (pre-training)."""

from __future__ import annotations

import torch

from .dataset import FewShotDataset
from .sampling import SeededSampler, as_int

ClassBatch = tuple[torch.Tensor, torch.Tensor]


class ClassBatchSampler(SeededSampler[ClassBatch]):
    """Ordinary classification batches ``(x [B, C, H, W], y [B])`` for pre-training.

    Unlike an episode, a batch is labelled with the dataset's own class indices
    ``0..n_classes-1`` (a pre-trained classifier has one output per training class).
    Each batch holds ``batch_size`` distinct images drawn uniformly from all
    ``n_classes * n_per_class`` images; batches are independent draws (not epochs).

    Args:
        dataset: the training classes.
        batch_size: images per batch ``B`` (at most the number of images).
        seed: same seed -> the same batches.
        n_batches: length of one pass (``None``: endless).

    Raises:
        TypeError: ``batch_size`` or ``seed`` is not an int.
        ValueError: ``batch_size < 1`` or larger than the dataset.
    """

    def __init__(self, dataset: FewShotDataset, batch_size: int = 64, seed: int | None = 0,
                 n_batches: int | None = None) -> None:
        batch_size = as_int("batch_size", batch_size)
        if batch_size > len(dataset):
            raise ValueError(f"batch_size={batch_size} but the dataset has only {len(dataset)} images; "
                             "lower batch_size")
        super().__init__(seed, n_batches)
        self.dataset, self.batch_size = dataset, batch_size

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classes [B], images [B])``: the (class, drawing) index of each image of one batch."""
        flat = torch.randperm(len(self.dataset), generator=self.generator)[: self.batch_size]
        return flat // self.dataset.n_per_class, flat % self.dataset.n_per_class

    def sample(self) -> ClassBatch:
        """The next batch ``(x, y)``, on the dataset's device."""
        classes, images = self.sample_indices()
        data = self.dataset.images
        classes = classes.to(data.device)
        return data[classes, images.to(data.device)], classes
