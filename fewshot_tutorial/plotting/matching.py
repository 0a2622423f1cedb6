"""Figures of the matching-networks chapter: attention over the support set."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle

from ..data import Episode


def _support_mosaic(episode: Episode) -> torch.Tensor:
    """``[n_way * H, n_shot * W]`` image: one row of support images per class."""
    e = episode.to("cpu")
    n_way, n_shot = e.n_way, e.n_shot
    h, w = e.support_x.shape[-2:]
    imgs = e.support_x[:, 0].float().reshape(n_way, n_shot, h, w)
    return imgs.permute(0, 2, 1, 3).reshape(n_way * h, n_shot * w)


def plot_attention_grid(episode: Episode, attentions: dict[str, torch.Tensor], query_indices: Sequence[int]):
    """Attention of a few queries over the support grid, one heat map per model.

    Args:
        episode: support sorted by class (``n_way`` rows of ``n_shot`` images), as sampled.
        attentions: label -> ``[Q, n_way * n_shot]`` attention (e.g. before / after training).
        query_indices: which queries to show (one row each).

    The left panel is the support set; each heat map has the same layout, its cells
    hold ``a(x, x_i)``, and the frame marks the query's true class.
    """
    e = episode.to("cpu")
    n_way, n_shot = e.n_way, e.n_shot
    labels = list(attentions)
    nq = len(query_indices)
    fig = plt.figure(figsize=(1.6 + 1.1 * (1 + len(labels)) * max(1, n_shot / 2.5), 0.55 * n_way * nq / 2.2 + 1.2))
    grid = fig.add_gridspec(nq, 2 + len(labels), width_ratios=[n_shot, 1] + [n_shot] * len(labels))
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(_support_mosaic(e).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([(c + 0.5) * e.support_x.shape[-2] for c in range(n_way)])
    ax.set_yticklabels([f"class {c}" for c in range(n_way)], fontsize=7)
    ax.set_title("support set", fontsize=9)
    for r, qi in enumerate(query_indices):
        ax = fig.add_subplot(grid[r, 1])
        ax.imshow(e.query_x[qi, 0].float().numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"query\n(class {int(e.query_y[qi])})", fontsize=7)
        vmax = max(float(attentions[label][qi].max()) for label in labels)  # one colour scale per row
        for j, label in enumerate(labels):
            a = attentions[label][qi].detach().float().cpu().reshape(n_way, n_shot)
            ax = fig.add_subplot(grid[r, 2 + j])
            ax.imshow(a.numpy(), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
            for c in range(n_way):
                for k in range(n_shot):
                    v = float(a[c, k])
                    ax.text(k, c, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if v > 0.6 * vmax else "white")
            y = int(e.query_y[qi])
            ax.add_patch(Rectangle((-0.5, y - 0.5), n_shot, 1, fill=False, ec="tab:red", lw=2))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def plot_attention_at_temperature(sim_row: torch.Tensor, support_y: torch.Tensor, temperature: float,
                                  n_way: int, ax=None, true_label: int | None = None):
    """Bars of one query's attention ``a(x, x_i)`` at temperature ``T``, coloured by class.

    The title gives ``P(y | x)`` for the true class and the class the model picks.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 2.4))
    else:
        fig = ax.figure
    s = sim_row.detach().double().cpu()
    a = torch.softmax(s / temperature, dim=-1)
    y = support_y.cpu()
    colors = [plt.cm.tab10(int(c) % 10) for c in y]
    ax.bar(range(len(a)), a.numpy(), color=colors)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("support item i (coloured by class)", fontsize=8)
    ax.set_ylabel("a(x, x_i)", fontsize=8)
    p = torch.zeros(n_way, dtype=a.dtype).index_add_(0, y, a)
    title = f"T = {temperature:g}: picks class {int(p.argmax())}"
    if true_label is not None:
        title += f", P(true={true_label}) = {float(p[true_label]):.2f}"
    ax.set_title(title, fontsize=8)
    return fig


def plot_temperature_sweep(sim_row: torch.Tensor, support_y: torch.Tensor, n_way: int,
                           temperatures: Sequence[float] = (1.0, 0.3, 0.1, 0.01), true_label: int | None = None):
    """The same query's attention at several temperatures: from flat to 1-nearest-neighbour."""
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.2 * len(temperatures), 2.5), sharey=True)
    for ax, t in zip(axes, temperatures):
        plot_attention_at_temperature(sim_row, support_y, t, n_way, ax=ax, true_label=true_label)
    fig.tight_layout()
    return fig
