"""Figures of the MAML chapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch


def plot_sinusoid_adaptation(x: torch.Tensor, truth: torch.Tensor, support: tuple[torch.Tensor, torch.Tensor],
                             curves: Mapping[str, Mapping[int, torch.Tensor]], steps: Sequence[int] = (0, 1, 10)):
    """One panel per model: its prediction after 0, 1, 10 inner steps on the ``K`` support points.

    ``curves[model_name][n_steps] = predictions [n_points]`` on the grid ``x [n_points]``.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.3), sharey=True, squeeze=False)
    styles = {0: ":", 1: "--", 10: "-"}
    for ax, (name, by_step) in zip(axes[0], curves.items()):
        ax.plot(x, truth, color="black", lw=2, alpha=0.35, label="true function")
        for s in steps:
            ax.plot(x, by_step[s], ls=styles.get(s, "-"), label=f"after {s} step{'s' if s != 1 else ''}")
        ax.scatter(support[0].flatten(), support[1].flatten(), marker="^", color="tab:red", zorder=3,
                   label="K support points")
        ax.set_title(name)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("y")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_cost(seconds: Mapping[str, float], memory_mb: Mapping[str, float]):
    """Two bar charts: time per meta-iteration and peak memory, one bar per variant."""
    names = list(seconds)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].barh(names, [seconds[n] for n in names], color="tab:blue")
    axes[0].set_xlabel("seconds per meta-iteration")
    axes[1].barh(names, [memory_mb[n] for n in names], color="tab:orange")
    axes[1].set_xlabel("peak extra memory (MB)")
    axes[1].set_yticklabels([])
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def plot_cost_by_steps(rows: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Peak memory and time per meta-iteration against the number of inner steps, one line per
    implementation. ``rows[n_steps] = {"memory_mb": {name: MB}, "seconds": {name: s}}`` as
    ``benchmarks/bench_maml_memory.py`` saves them (keys may be strings)."""
    steps = sorted(rows, key=int)
    names = list(rows[steps[0]]["seconds"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name in names:
        x = [int(k) for k in steps]
        axes[0].plot(x, [rows[k]["memory_mb"][name] for k in steps], marker="o", label=name)
        axes[1].plot(x, [rows[k]["seconds"][name] for k in steps], marker="o", label=name)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("peak extra memory (MB, log scale)")
    axes[1].set_ylabel("seconds per meta-iteration")
    for ax in axes:
        ax.set_xlabel("inner steps")
        ax.set_xticks([int(k) for k in steps])
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
