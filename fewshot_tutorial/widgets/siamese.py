"""Interactive explorers of the Siamese chapter (book/02_siamese)."""

from __future__ import annotations


def loss_branches_explorer(d_max: float = 3.0):
    """A margin slider that redraws both branches of the contrastive loss and their slopes."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from ..plotting.siamese import plot_loss_branches

    def draw(margin: float = 1.0) -> None:
        plot_loss_branches(margin, d_max)
        plt.show()

    return widgets.interactive(draw, margin=widgets.FloatSlider(1.0, min=0.1, max=2.5, step=0.1,
                                                                description="margin m"))
