"""Networks. Every backbone maps ``[B, C, H, W]`` images to ``[B, D]``; :class:`MAMLNet` adds a head."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int, track_running_stats: bool = True) -> nn.Sequential:
    """3x3 conv (padding 1) -> batch norm -> ReLU -> 2x2 max-pool: halves H and W."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """The four-block convolutional embedding of Vinyals et al. (2016) and Snell et al. (2017).

    For 28x28 inputs the feature map after four poolings is 64 x 1 x 1, so ``D = 64``.

    Args:
        in_channels: image channels (1 for Omniglot).
        hidden: channels of every block (64 in the papers).
        track_running_stats: ``False`` makes batch norm always use the statistics of the
            current batch, as in the MAML paper: no running averages to leak across tasks.

    Shapes:
        ``x: [B, in_channels, H, W] -> [B, hidden * (H // 16) * (W // 16)]``
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, track_running_stats: bool = True) -> None:
        super().__init__()
        self.out_features_per_pixel = hidden
        self.encoder = nn.Sequential(
            conv_block(in_channels, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
            conv_block(hidden, hidden, track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def out_features(self, image_size: int = 28) -> int:
        """``D`` for square inputs of side ``image_size``."""
        side = image_size
        for _ in range(4):
            side //= 2
        return self.out_features_per_pixel * side * side


class TaskBatchNorm2d(nn.BatchNorm2d):
    """Batch norm with the current batch's statistics only (no running statistics).

    Same parameters (``weight``, ``bias``) and values as
    ``nn.BatchNorm2d(track_running_stats=False)``, in one of two forms:

    * fused (default): ``F.batch_norm`` in training mode, one kernel forward and one
      backward, and a correct double backward;
    * ``composite = True``: written with ``mean``, ``pow`` and ``rsqrt``. Under
      :func:`torch.func.vmap` the fused op's batching rule gives wrong second-order
      gradients (pytorch/functorch#534; ``test_vmap_over_tasks_equals_the_loop`` catches
      it), so :func:`meta_loss` switches to this form for ``vectorize="vmap"``
      (:func:`composite_batch_norm`). It is several element-wise passes instead of one:
      on the 2-core CPU this book is tested on, moving the loop to the fused form cut
      the time of a meta-iteration by about a third.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, track_running_stats=False)
        self.composite = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.composite:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = h.mean(dim=(0, 2, 3), keepdim=True)
        centred = h - mean
        var = centred.pow(2).mean(dim=(0, 2, 3), keepdim=True)
        out = centred * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(x.dtype)


def composite_batch_norm(model: nn.Module) -> nn.Module:
    """The same model with every :class:`TaskBatchNorm2d` in its composite (vmap-safe) form.

    A copy of the module objects only: parameters and buffers are shared, so
    ``functional_call`` on the copy with ``model``'s parameter dict is the same function.
    """
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    copy_ = copy.deepcopy(model, memo)
    for m in copy_.modules():
        if isinstance(m, TaskBatchNorm2d):
            m.composite = True
    return copy_


class MAMLNet(nn.Module):
    """Conv4 without running statistics plus a linear ``n_way`` head: Finn et al.'s classifier
    (which, on Omniglot, downsamples with strided convolutions instead of max-pooling).

    Batch norm always normalises with the statistics of the batch it sees
    (``track_running_stats=False``): running averages would be updated by every task's
    support set and so carry information from one task (and one inner step) to the next.

    Shapes:
        ``x: [B, C, H, W] -> logits [B, n_way]``
    """

    def __init__(self, n_way: int = 5, in_channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        if n_way < 2:
            raise ValueError(f"n_way={n_way}: a classifier needs at least 2 classes")
        self.backbone = Conv4(in_channels, hidden, track_running_stats=False)
        for block in self.backbone.encoder:  # conv -> BN -> ReLU -> pool: same names
            block[1] = TaskBatchNorm2d(hidden)
        self.head = nn.Linear(self.backbone.out_features(image_size), n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
