"""Figures for the book. The only place (with ``widgets``) that imports matplotlib.

Common figures live here; each method chapter's own figures live in
``fewshot_tutorial.plotting.<method>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from ..data import Episode, FewShotDataset


def project_2d(*blocks: torch.Tensor) -> list[torch.Tensor]:
    """Project several ``[n_i, D]`` blocks onto the top two principal axes of all of them.

    Returns one ``[n_i, 2]`` tensor per block (same order).
    """
    x = torch.cat([b.detach().float().cpu() for b in blocks])
    mean = x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    axes = v[:2].T  # [D, 2]
    return [(b.detach().float().cpu() - mean) @ axes for b in blocks]


def show_images(images: torch.Tensor, ncols: int = 10, titles: Sequence[str] | None = None,
                ax_size: float = 0.9, title: str | None = None, border: Sequence[str] | None = None):
    """Grid of ``[n, 1, H, W]`` images (ink = 1 drawn dark on white). Returns the figure."""
    images = images.detach().float().cpu()
    n = images.shape[0]
    nrows = max(1, -(-n // ncols))
    ncols = min(ncols, n)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * ax_size, nrows * ax_size * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
        if border is not None and border[i]:
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color(border[i])
                s.set_linewidth(2.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_episode(episode: Episode, predictions: torch.Tensor | None = None, max_query: int = 3):
    """Support set (one row per class) beside a few queries per class.

    With ``predictions`` (``[n_way * n_query]`` labels) each shown query gets a green
    (right) or red (wrong) frame and its predicted label.
    """
    e = episode.to("cpu")
    n_way, n_shot, n_query = e.n_way, e.n_shot, e.n_query
    q = min(n_query, max_query)
    cols = n_shot + 1 + q
    fig, axes = plt.subplots(n_way, cols, figsize=(cols * 0.9, n_way * 0.95), squeeze=False)
    for c in range(n_way):
        for j in range(cols):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < n_shot:
                ax.imshow(e.support_x[c * n_shot + j, 0], cmap="gray_r", vmin=0, vmax=1)
                if j == 0:
                    ax.set_ylabel(f"class {c}", fontsize=8)
            elif j == n_shot:
                ax.axis("off")
            else:
                k = c * n_query + (j - n_shot - 1)
                ax.imshow(e.query_x[k, 0], cmap="gray_r", vmin=0, vmax=1)
                if predictions is not None:
                    ok = int(predictions[k]) == int(e.query_y[k])
                    for s in ax.spines.values():
                        s.set_visible(True)
                        s.set_color("tab:green" if ok else "tab:red")
                        s.set_linewidth(2.5)
                    ax.set_title(f"→ {int(predictions[k])}", fontsize=7)
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    axes[0, n_shot + 1].set_title("query" if predictions is None else axes[0, n_shot + 1].get_title(),
                                  fontsize=9 if predictions is None else 7, loc="left")
    fig.tight_layout()
    return fig


def show_alphabets(dataset: FewShotDataset, n_alphabets: int = 10, n_chars: int = 8, drawing: int = 0):
    """One row per alphabet: its first characters, to tour a split."""
    alphabets: dict[str, list[int]] = {}
    for i, name in enumerate(dataset.class_names):
        alphabets.setdefault(name.split("/")[0], []).append(i)
    names = sorted(alphabets)[:n_alphabets]
    fig, axes = plt.subplots(len(names), n_chars, figsize=(1.6 + n_chars * 0.75, len(names) * 0.8), squeeze=False)
    for r, a in enumerate(names):
        for c in range(n_chars):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(alphabets[a]):
                ax.imshow(dataset.images[alphabets[a][c], drawing, 0].cpu(), cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.axis("off")
        label = a.replace("_", " ").replace(" (", "\n(")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_shots(results: dict[str, dict[int, tuple[float, float]]], title: str = "",
                           chance: dict[str, float] | None = None, ax=None):
    """Accuracy (with 95% CI bars) against shots, one line per label.

    ``results[label][n_shot] = (accuracy, ci95)``, both as fractions.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    else:
        fig = ax.figure
    for label, by_shot in results.items():
        shots = sorted(by_shot)
        acc = [100 * by_shot[s][0] for s in shots]
        ci = [100 * by_shot[s][1] for s in shots]
        ax.errorbar(shots, acc, yerr=ci, marker="o", capsize=3, label=label)
    for label, v in (chance or {}).items():
        ax.axhline(100 * v, ls=":", color="gray")
        ax.text(ax.get_xlim()[1], 100 * v, f" chance {label}", va="center", fontsize=8, color="gray")
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_losses(histories: dict[str, Sequence[float]], window: int = 50, ax=None, ylabel: str = "training loss"):
    """Running-mean training loss curves, one per label."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
    else:
        fig = ax.figure
    for label, losses in histories.items():
        t = torch.tensor(list(losses), dtype=torch.float64)
        if len(t) >= window:
            t = torch.nn.functional.avg_pool1d(t[None, None], window, stride=1)[0, 0]
        ax.plot(range(len(t)), t.numpy(), label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
