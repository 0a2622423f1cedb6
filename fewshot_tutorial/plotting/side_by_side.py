"""Figures of the side-by-side chapter: every method on the same episodes, and Lake's runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from ..evaluation import EvalResult

_FAMILY_COLOURS = {"none": "gray", "metric": "tab:blue", "optimisation": "tab:orange", "transfer": "tab:green"}


def plot_settings(results: Mapping[tuple[str, int, int], EvalResult], methods: Sequence[str],
                  settings: Sequence[tuple[int, int]], families: Mapping[str, str],
                  published: Mapping[tuple[str, int, int], float] | None = None):
    """One panel per ``(way, shot)``: each method's accuracy with its 95% interval.

    Args:
        results: ``results[method, way, shot]``; a missing key is a setting the method
            cannot run (a 5-way head at 20-way), left empty.
        methods: the rows, top to bottom.
        families: ``families[method]`` colours the dots (``metric``, ``optimisation``,
            ``transfer``, ``none``).
        published: ``published[method, way, shot]`` in %, drawn as open diamonds.
    """
    cols = 2
    rows = -(-len(settings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8.5, rows * (0.26 * len(methods) + 0.9) + 0.5), sharey=True,
                             squeeze=False)
    for ax, (way, shot) in zip(axes.flat, settings):
        for i, m in enumerate(methods):
            r = results.get((m, way, shot))
            if r is not None:
                ax.errorbar(100 * r.accuracy, i, xerr=100 * r.ci95, fmt="o", ms=4, capsize=2,
                            color=_FAMILY_COLOURS[families[m]])
            p = (published or {}).get((m, way, shot))
            if p is not None:
                ax.plot(p, i, "D", mfc="none", color="black", ms=5)
        ax.set_title(f"{way}-way {shot}-shot", fontsize=10)
        ax.set_xlabel("accuracy (%)")
        ax.set_xlim(0, 101)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(methods)), methods)
    axes[0, 0].invert_yaxis()
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=f) for f, c in _FAMILY_COLOURS.items()
               if f in set(families.values())]
    if published:
        handles.append(plt.Line2D([], [], ls="", marker="D", mfc="none", color="black", label="published"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_lake(errors: Mapping[str, tuple[float, float, float]], published: Mapping[str, float],
              families: Mapping[str, str]):
    """Error (%) on Lake's 400 trials, each with its Wilson 95% interval ``(error, low, high)``
    as fractions, sorted, with the published errors (fractions) as open diamonds among them."""
    rows = sorted([*errors, *published], key=lambda k: errors[k][0] if k in errors else published[k])
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.0))
    for i, k in enumerate(rows):
        if k in errors:
            e, lo, hi = (100 * v for v in errors[k])
            ax.errorbar(e, i, xerr=[[e - lo], [hi - e]], fmt="o", ms=4, capsize=2, color=_FAMILY_COLOURS[families[k]])
        else:
            ax.plot(100 * published[k], i, "D", mfc="none", color="black", ms=5)
    ax.set_yticks(range(len(rows)), [k if k in errors else f"{k} (published)" for k in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ticks = [2, 3, 5, 10, 20, 30, 50, 100]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(2, 100)
    ax.set_xlabel("error on Lake's 20 runs (%, log scale)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_protocols(x: Mapping[str, float], y: Mapping[str, float], xlabel: str, ylabel: str,
                   families: Mapping[str, str], ax=None):
    """Each method's error under two protocols (fractions), one dot per method, with its name."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
    fig = ax.figure
    for k in x:
        ax.plot(100 * x[k], 100 * y[k], "o", color=_FAMILY_COLOURS[families[k]])
        ax.annotate(k, (100 * x[k], 100 * y[k]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def show_trials(test: Sequence[torch.Tensor], true: Sequence[torch.Tensor], chosen: Sequence[torch.Tensor],
                captions: Sequence[str]):
    """Rows of (test drawing, its class's training drawing, the training drawing most models chose).

    Each image is ``[1, H, W]`` or ``[H, W]`` with ink 1 on paper 0.
    """
    fig, axes = plt.subplots(len(test), 3, figsize=(4.2, 1.45 * len(test)), squeeze=False)
    for row, images in enumerate(zip(test, true, chosen)):
        for col, (img, title) in enumerate(zip(images, ("test drawing", "its class", "chosen instead"))):
            ax = axes[row, col]
            ax.imshow(img.squeeze().float().cpu(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(captions[row], fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig
