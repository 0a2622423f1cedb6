"""Figures of the prototypical networks chapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from ..methods.protonet import protonet_logits
from . import project_2d


def plot_projection(query_z: torch.Tensor, query_y: torch.Tensor, protos: torch.Tensor,
                    predicted: torch.Tensor | None = None, title: str = "", ax=None):
    """Queries (dots, coloured by true class) and prototypes (stars) in a 2-D PCA projection.

    Misclassified queries (when ``predicted`` is given) get a black ring.

    Args:
        query_z: ``[n_way * n_query, D]``; query_y: ``[n_way * n_query]``;
        protos: ``[n_way, D]``; predicted: ``[n_way * n_query]`` labels or None.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.2))
    else:
        fig = ax.figure
    q2, p2 = project_2d(query_z, protos)
    y = query_y.cpu()
    cmap = plt.get_cmap("tab10")
    for k in range(len(p2)):
        m = y == k
        ax.scatter(q2[m, 0], q2[m, 1], s=18, color=cmap(k % 10), alpha=0.75, label=f"class {k}")
        ax.scatter(p2[k, 0], p2[k, 1], s=260, marker="*", color=cmap(k % 10), edgecolor="black", linewidth=1.2)
    if predicted is not None:
        wrong = predicted.cpu() != y
        ax.scatter(q2[wrong, 0], q2[wrong, 1], s=70, facecolors="none", edgecolors="black", linewidth=1.2,
                   label="misclassified")
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.set_title(title or "queries (dots) and prototypes (stars)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_decision_regions(protos: torch.Tensor, distance: str = "euclidean", points: torch.Tensor | None = None,
                          labels: torch.Tensor | None = None, lim: float = 3.0, ax=None, title: str | None = None):
    """Which prototype wins at each point of a 2-D plane (a toy embedding space).

    With squared Euclidean distance the boundaries are straight lines (the classifier is
    linear); with cosine distance they are rays from the origin.

    Args:
        protos: ``[n_way, 2]``; points/labels: optional support points to draw.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    g = torch.linspace(-lim, lim, 300)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)
    win = protonet_logits(grid, protos.float(), distance).argmax(-1).reshape(xx.shape)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(k % 10) for k in range(len(protos))]
    from matplotlib.colors import ListedColormap

    ax.imshow(win.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap=ListedColormap(colors),
              alpha=0.25, vmin=0, vmax=len(protos) - 1, interpolation="nearest")
    if points is not None and labels is not None:
        ax.scatter(points[:, 0], points[:, 1], s=14, c=[colors[int(k)] for k in labels])
    ax.scatter(protos[:, 0], protos[:, 1], s=220, marker="*", c=colors, edgecolor="black")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title if title is not None else f"{distance} distance", fontsize=10)
    fig.tight_layout()
    return fig


def plot_comparison(results: Mapping[str, tuple[float, float]], title: str = "", ax=None,
                    reference: float | None = None, reference_label: str = ""):
    """Horizontal bars of accuracy with 95% CI, ``results[label] = (accuracy, ci95)`` as fractions."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(results) + 1.2))
    else:
        fig = ax.figure
    labels: Sequence[str] = list(results)
    acc = [100 * results[k][0] for k in labels]
    ci = [100 * results[k][1] for k in labels]
    ax.barh(range(len(labels)), acc, xerr=ci, capsize=3, color="tab:blue", alpha=0.7)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    lo = max(0.0, min(a - c for a, c in zip(acc, ci)) - 5)
    ax.set_xlim(lo, 100)
    if reference is not None:
        ax.axvline(100 * reference, ls=":", color="gray")
        ax.text(100 * reference, -0.6, f" {reference_label}", fontsize=8, color="gray")
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
