"""The in-memory few-shot dataset: every class has the same number of images."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FewShotDataset:
    """Images grouped by class, as one tensor.

    Attributes:
        images: ``[n_classes, n_per_class, C, H, W]`` float tensor (for Omniglot
            ``C = 1``, ink = 1, paper = 0).
        class_names: one name per class, e.g. ``"Greek/character05"`` or
            ``"Greek/character05/rot090"``.
        name: a short label for printing.
    """

    images: torch.Tensor
    class_names: list[str]
    name: str = "dataset"
    _check: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if self.images.dim() != 5:
            raise ValueError(
                f"images must be [n_classes, n_per_class, C, H, W], got shape {tuple(self.images.shape)}"
            )
        if len(self.class_names) != self.images.shape[0]:
            raise ValueError(
                f"{len(self.class_names)} class names for {self.images.shape[0]} classes"
            )

    @property
    def n_classes(self) -> int:
        return self.images.shape[0]

    @property
    def n_per_class(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[2:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.n_classes * self.n_per_class

    def __repr__(self) -> str:
        return (f"FewShotDataset({self.name!r}, n_classes={self.n_classes}, "
                f"n_per_class={self.n_per_class}, image_shape={self.image_shape})")

    def to(self, device: torch.device | str) -> "FewShotDataset":
        """A copy whose images live on ``device`` (episodes are then sampled there)."""
        return FewShotDataset(self.images.to(device), list(self.class_names), self.name)

    def subset(self, classes: list[int] | torch.Tensor) -> "FewShotDataset":
        """The dataset restricted to the given class indices (in that order)."""
        idx = torch.as_tensor(classes, dtype=torch.long)
        return FewShotDataset(self.images[idx.to(self.images.device)],
                              [self.class_names[i] for i in idx.tolist()], self.name)

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images and their class indices: ``([n, C, H, W], [n])``."""
        c, k = self.n_classes, self.n_per_class
        x = self.images.reshape(c * k, *self.image_shape)
        y = torch.arange(c, device=self.images.device).repeat_interleave(k)
        return x, y
