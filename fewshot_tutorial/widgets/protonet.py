"""Explorer of the prototypical networks chapter: prototypes and decision regions in 2-D."""

from __future__ import annotations

import torch

from ..methods.protonet import prototypes


def toy_support(n_way: int = 3, n_shot: int = 5, spread: float = 0.6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D toy support set: ``n_way`` Gaussian blobs around random centres.

    Returns:
        ``(support_z [n_way * n_shot, 2], support_y [n_way * n_shot])``.
    """
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n_way, 2, generator=g) - 0.5) * 4.0
    z = centres.repeat_interleave(n_shot, 0) + spread * torch.randn(n_way * n_shot, 2, generator=g)
    return z, torch.arange(n_way).repeat_interleave(n_shot)


def prototype_explorer():
    """Sliders for way, shot, spread and seed, and a distance switch; redraws the regions."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from ..plotting.protonet import plot_decision_regions

    def draw(n_way: int = 3, n_shot: int = 5, spread: float = 0.6, seed: int = 0, distance: str = "euclidean"):
        z, y = toy_support(n_way, n_shot, spread, seed)
        plot_decision_regions(prototypes(z, y, n_way), distance, points=z, labels=y)
        plt.show()

    return widgets.interactive(
        draw,
        n_way=widgets.IntSlider(value=3, min=2, max=8, description="way (N)"),
        n_shot=widgets.IntSlider(value=5, min=1, max=20, description="shot (K)"),
        spread=widgets.FloatSlider(value=0.6, min=0.1, max=2.0, step=0.1, description="spread"),
        seed=widgets.IntSlider(value=0, min=0, max=30, description="seed"),
        distance=widgets.ToggleButtons(options=["euclidean", "cosine"], description="distance"),
    )
