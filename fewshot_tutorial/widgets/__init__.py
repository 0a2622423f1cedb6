"""Interactive explorers for the notebooks (ipywidgets). The HTML book shows a static
figure of the same function instead; open the chapter in Colab to play with them.

Each method chapter's widgets live in ``fewshot_tutorial.widgets.<method>``.
"""

from __future__ import annotations

from ..data import EpisodeSampler, FewShotDataset


def episode_explorer(dataset: FewShotDataset, max_way: int = 10, max_shot: int = 5):
    """Sliders for way, shot and seed that redraw an episode (support | query)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from ..plotting import show_episode

    def draw(n_way: int = 5, n_shot: int = 1, seed: int = 0) -> None:
        episode = EpisodeSampler(dataset, n_way, n_shot, n_query=3, seed=seed).sample()
        show_episode(episode)
        plt.show()

    return widgets.interactive(
        draw,
        n_way=widgets.IntSlider(5, 2, max_way, description="way (N)"),
        n_shot=widgets.IntSlider(1, 1, max_shot, description="shot (K)"),
        seed=widgets.IntSlider(0, 0, 50, description="seed"),
    )
