"""Methods that learn nothing: the floor every learned method must beat."""

from __future__ import annotations

import torch

from .data import Episode


def pixel_nearest_neighbour(episode: Episode) -> torch.Tensor:
    """1-nearest neighbour on raw pixels (Euclidean), as a ``predict`` for ``evaluate``.

    Each query is scored against each class by minus the smallest squared distance
    from the query to that class's support images.

    Returns:
        ``[n_way * n_query, n_way]`` logits.
    """
    q = episode.query_x.flatten(1).float()  # [Q, P]
    s = episode.support_x.flatten(1).float()  # [S, P]
    d = torch.cdist(q, s).pow(2)  # [Q, S]
    n_way = episode.n_way
    # smallest distance per class: scatter_reduce over the support labels
    idx = episode.support_y.unsqueeze(0).expand_as(d)
    best = torch.full((q.shape[0], n_way), float("inf"), device=d.device, dtype=d.dtype)
    best = best.scatter_reduce(1, idx, d, reduce="amin")
    return -best
