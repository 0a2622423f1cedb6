"""Explorer of the matching-networks chapter: the attention's temperature."""

from __future__ import annotations

import torch


def temperature_explorer(sim: torch.Tensor, support_y: torch.Tensor, query_y: torch.Tensor, n_way: int):
    """Sliders for the query and ``log10 T``: watch the attention go from flat to 1-NN.

    Args:
        sim: ``[Q, S]`` similarities of a trained model on one episode.
        support_y: ``[S]`` support labels.
        query_y: ``[Q]`` query labels.
        n_way: classes in the episode.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from ..plotting.matching import plot_attention_at_temperature

    def draw(query: int = 0, log10_temperature: float = 0.0) -> None:
        plot_attention_at_temperature(sim[query], support_y, 10.0 ** log10_temperature, n_way,
                                      true_label=int(query_y[query]))
        plt.show()

    return widgets.interactive(
        draw,
        query=widgets.IntSlider(value=0, min=0, max=sim.shape[0] - 1, description="query"),
        log10_temperature=widgets.FloatSlider(value=0.0, min=-3.0, max=1.0, step=0.1, description="log10 T"),
    )
