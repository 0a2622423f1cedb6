"""Embedding networks. Every backbone maps ``[B, C, H, W]`` images to ``[B, D]``."""

from __future__ import annotations

import torch
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
