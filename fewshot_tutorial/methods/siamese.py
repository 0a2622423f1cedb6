"""Siamese networks: a shared embedding trained on pairs, used as a one-shot classifier.

Two heads on pairs ``(x1, x2)`` labelled ``same = 1`` (same character) or ``0``:

* ``"contrastive"``: the contrastive loss of Hadsell, Chopra and LeCun (2006) on the
  Euclidean distance between the embeddings, {eq}`eq-siamese-contrastive`;
* ``"koch"``: Koch, Zemel and Salakhutdinov's (2015) learned similarity, a sigmoid over a
  weighted L1 distance, trained with binary cross-entropy, {eq}`eq-siamese-bce`.

A query's score for a class is its mean similarity to that class's support images
({eq}`eq-siamese-predict`): with one shot, the nearest neighbour rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from ..aggregation import class_mean_scores
from ..backbones import Conv4
from ..data import FewShotDataset
from ..data.pairs import PairBatch, PairSampler
from ..distances import euclidean_distance, pairwise_euclidean, safe_norm, weighted_l1_logit
from ..losses import check_margin, contrastive_grad_z1, contrastive_loss, contrastive_loss_hadsell, koch_loss
from .base import Config, Method

__all__ = ["Siamese", "SiameseConfig", "class_mean_scores", "contrastive_grad_z1", "contrastive_loss",
           "contrastive_loss_hadsell", "euclidean_distance", "koch_loss", "safe_norm", "weighted_l1_logit"]
HEADS = ("contrastive", "koch")


@dataclasses.dataclass
class SiameseConfig(Config):
    """A Siamese network: its head, the contrastive margin and the pairs per step."""

    head: str = "contrastive"
    margin: float = 2.0
    batch_size: int = 64
    steps: int = 200

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"head": HEADS}
    help: ClassVar[dict[str, str]] = {"head": "contrastive loss (Hadsell et al.) or weighted L1 + BCE (Koch et al.)",
                                      "margin": "contrastive margin m", "batch_size": "pairs per step"}
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {"margin": check_margin}


class Siamese(Method):
    """One embedding tower ``f_phi`` shared by both images of a pair, plus a pair head."""

    name = "siamese"
    Config = SiameseConfig

    def __init__(self, config: SiameseConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.encoder = Conv4(c.in_channels, c.hidden)
        if c.head == "koch":  # start with "any difference speaks against same": w_j < 0
            dim = self.encoder.out_features(c.image_size)
            self.weight = nn.Parameter(torch.full((dim,), -1.0 / dim))
            self.bias = nn.Parameter(torch.ones(()))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Accept checkpoints from before Koch's weights were renamed ``alpha`` -> ``weight``."""
        old, new = prefix + "alpha", prefix + "weight"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)  # a copy: load_state_dict copies its input
        super()._load_from_state_dict(state_dict, prefix, *args)

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[PairBatch]:
        return PairSampler(dataset, self.config.batch_size, seed=seed)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``z = f_phi(x)``: ``[B, C, H, W] -> [B, D]`` in float32."""
        return self.encoder(x).float()

    def pair_scores(self, query_z: torch.Tensor, support_z: torch.Tensor) -> torch.Tensor:
        """``[Q, D], [S, D] -> [Q, S]``: minus the distance, or Koch's logit of "same"."""
        if self.config.head == "koch":
            q, s = query_z.unsqueeze(1), support_z.unsqueeze(0)  # [Q, 1, D], [1, S, D]
            return weighted_l1_logit(q, s, self.weight, self.bias)
        return -pairwise_euclidean(query_z, support_z)

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        """{eq}`eq-siamese-predict`: each query's mean score over each class's support images."""
        return class_mean_scores(self.pair_scores(query_z, support_z), support_y, n_way)

    def loss(self, batch: PairBatch) -> torch.Tensor:
        """The loss of a batch of pairs; both images go through the tower in one call."""
        x1, x2, same = batch
        z1, z2 = self.embed(torch.cat([x1, x2])).chunk(2)
        if self.config.head == "koch":
            return koch_loss(weighted_l1_logit(z1, z2, self.weight, self.bias), same)
        return contrastive_loss(z1, z2, same, self.config.margin)
