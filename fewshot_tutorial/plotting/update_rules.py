"""Figures of the chapter on learned update rules (Meta-SGD, L2L, Meta-LSTM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch


def plot_loss_curves(panels: Mapping[str, Mapping[str, torch.Tensor]], ylabel: str = "mean loss"):
    """One panel per problem family: each optimiser's mean loss over the steps (log scale).

    ``panels[title][optimiser] = loss [n_steps + 1]``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, curve in curves.items():
            ax.plot(curve, lw=2.2 if name.startswith("LSTM") else 1.4, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("optimisation step")
        ax.set_title(title)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gates(gates: Mapping[str, Sequence[torch.Tensor]], layer_of: torch.Tensor,
               layer_names: Sequence[str]):
    """The learned input gate ``i_t`` and forget gate ``f_t`` at each inner step, per layer.

    Args:
        gates: ``{"input": [i_1, ..., i_T], "forget": [f_1, ..., f_T]}``, each ``[P]``
            (averaged over tasks), one entry per coordinate of the learner.
        layer_of: ``[P]``, the index in ``layer_names`` of each coordinate's layer.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.4))
    for ax, (name, per_step) in zip(axes, gates.items()):
        steps = range(1, len(per_step) + 1)
        for j, layer in enumerate(layer_names):
            mask = layer_of == j
            ax.plot(steps, [g[mask].mean().item() for g in per_step], marker="o", label=layer)
        ax.set_xticks(list(steps))
        ax.set_xlabel("inner step t")
        ax.set_title(f"{name} gate, mean over the layer's weights")
    axes[0].set_ylabel("i_t (the step size)")
    axes[1].set_ylabel("f_t (1 = no shrinkage)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_alphas(alphas: Mapping[str, torch.Tensor], start: float):
    """Meta-SGD's learned rates: the distribution of ``alpha`` in each parameter tensor."""
    names = list(alphas)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.boxplot([alphas[n].flatten().float().numpy() for n in names], showfliers=False)
    ax.axhline(start, color="gray", ls=":", label=f"initial alpha = {start}")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("learned alpha (quartiles)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
