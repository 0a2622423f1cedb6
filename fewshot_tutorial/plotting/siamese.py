"""Figures of the Siamese chapter (book/02_siamese): loss branches, pairs, embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from ..losses import contrastive_grad_z1, contrastive_loss


def loss_branches(margin: float = 1.0, d_max: float | None = None, n: int = 201):
    """Both branches of the contrastive loss and their derivative along ``d``, from the package.

    Returns:
        ``(d [n], loss_same [n], loss_diff [n], dloss_same [n], dloss_diff [n])``: pairs
        ``z1 = (d, 0)``, ``z2 = (0, 0)`` at distance ``d``; the derivatives are
        ``d loss / d d``, read off the hand gradient {eq}`eq-siamese-grad` (its first
        coordinate, times ``B = n`` to undo the mean).
    """
    d_max = d_max if d_max is not None else 2.0 * margin
    d = torch.linspace(0.0, d_max, n, dtype=torch.float64)
    z1 = torch.stack([d, torch.zeros_like(d)], 1)
    z2 = torch.zeros_like(z1)
    ones, zeros = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    out = [d]
    for y in (ones, zeros):
        out.append(contrastive_loss(z1, z2, y, margin, reduction="none"))
    for y in (ones, zeros):
        out.append(n * contrastive_grad_z1(z1, z2, y, margin)[:, 0])
    return tuple(out)


def plot_loss_branches(margin: float = 1.0, d_max: float = 3.0, axes=None):
    """Loss (left) and its slope (right) against the distance ``d``, for same and different pairs."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    fig = axes[0].figure
    d, ls, ldf, gs, gdf = loss_branches(margin, d_max)
    for ax in axes:
        ax.clear()
        ax.axvline(margin, ls=":", color="gray")
        ax.set_xlabel("distance d")
    axes[0].plot(d, ls, label="same pair: $d^2$")
    axes[0].plot(d, ldf, label="different pair: $\\max(0, m - d)^2$")
    axes[0].set_ylim(-0.1, max(4.0, 1.1 * margin**2))
    axes[0].set_ylabel("loss")
    axes[0].text(margin, axes[0].get_ylim()[1] * 0.9, " m", color="gray")
    axes[0].legend(fontsize=8)
    axes[1].plot(d, gs, label="same: pull (> 0)")
    axes[1].plot(d[1:], gdf[1:], label="different: push (< 0)")  # d = 0: no direction, gradient 0
    axes[1].axhline(0, color="black", lw=0.5)
    axes[1].set_ylabel("d loss / d d")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"contrastive loss, margin m = {margin:g}", fontsize=10)
    fig.tight_layout()
    return fig


def show_pairs(x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor, n: int = 8):
    """The first ``n // 2`` same and first ``n // 2`` different pairs of a batch, one column a pair."""
    same = same.bool().cpu()
    idx = torch.cat([same.nonzero()[: n // 2, 0], (~same).nonzero()[: n // 2, 0]])
    fig, axes = plt.subplots(2, len(idx), figsize=(0.9 * len(idx), 2.1), squeeze=False)
    for col, i in enumerate(idx.tolist()):
        for row, x in enumerate((x1, x2)):
            ax = axes[row, col]
            ax.imshow(x[i, 0].detach().float().cpu(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_axis_off()
        axes[0, col].set_title("same" if same[i] else "different", fontsize=7)
    fig.tight_layout()
    return fig


def plot_embeddings_2d(points: dict[str, torch.Tensor], labels: torch.Tensor, names: Sequence[str] | None = None):
    """Scatter plots of 2-D projected embeddings side by side, coloured by class.

    Args:
        points: ``{panel title: [n, 2]}``.
        labels: ``[n]`` class indices.
        names: a legend entry per class.
    """
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.6), squeeze=False)
    labels = labels.cpu()
    for ax, (title, p) in zip(axes[0], points.items()):
        p = p.detach().float().cpu()
        for c in labels.unique().tolist():
            m = labels == c
            ax.scatter(p[m, 0], p[m, 1], s=14, label=names[c] if names else str(c))
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig
