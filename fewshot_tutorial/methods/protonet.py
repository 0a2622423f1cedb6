"""Prototypical networks (Snell et al., 2017): classify a query by its nearest class mean.

The equations, each a few lines over the shared math:

* :func:`prototypes`: the class means of the support embeddings, {eq}`eq-protonet-prototype`;
* :func:`protonet_logits`: logits = minus the distance to each prototype, {eq}`eq-protonet-softmax`;
* :func:`linear_layer`: the same classifier as a linear layer, {eq}`eq-protonet-linear`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..aggregation import class_means
from ..backbones import Conv4
from ..data import Episode, EpisodeSampler, FewShotDataset
from ..distances import cosine_distance, squared_euclidean
from ..metrics import with_accuracy
from .base import EpisodicConfig, Method

DISTANCES = ("euclidean", "cosine")
prototypes = class_means  # c_k = mean of the support embeddings of class k


def protonet_logits(
    query_z: torch.Tensor, protos: torch.Tensor, distance: str = "euclidean"
) -> torch.Tensor:
    """``-d(f(x), c_k)``: ``query_z [Q, D], protos [n_way, D] -> [Q, n_way]``. {eq}`eq-protonet-softmax`."""
    if distance == "euclidean":
        return -squared_euclidean(query_z, protos)
    if distance == "cosine":
        return -cosine_distance(query_z, protos)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def linear_layer(protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prototype classifier as a linear layer: ``W_k = 2 c_k``, ``b_k = -||c_k||^2``.

    Implements {eq}`eq-protonet-linear`: ``-||z - c_k||^2 = 2 c_k.z - ||c_k||^2 - ||z||^2``
    and the last term is the same for every class. ``protos [n_way, D] -> (W [n_way, D], b [n_way])``.
    """
    if protos.dim() != 2:
        raise ValueError(f"protos must be [n_way, D], got {tuple(protos.shape)}")
    return 2.0 * protos, -protos.pow(2).sum(-1)


@dataclasses.dataclass
class ProtoNetConfig(EpisodicConfig):
    """A prototypical network and its training episodes.

    Snell et al. train with more classes per episode (60) than they test with (5 or
    20); the book's quick recipe uses 20-way episodes with a cosine-decayed rate.
    """

    distance: str = "euclidean"
    train_way: int = 60
    train_query: int = 5
    lr_decay_every: int = 0

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"distance": DISTANCES}
    help: ClassVar[dict[str, str]] = {"lr_decay_every": "halve the rate every this many steps (0: never)"}


class ProtoNet(Method):
    """A Conv4 embedding plus a distance to class means: the whole of a prototypical network."""

    name = "protonet"
    Config = ProtoNetConfig

    def __init__(self, config: ProtoNetConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.backbone = Conv4(self.config.in_channels, self.config.hidden)

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[Episode]:
        c = self.config
        return EpisodeSampler(dataset, c.train_way, c.train_shot, c.train_query, seed=seed)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        protos = prototypes(support_z, support_y, n_way)  # [n_way, D]
        return protonet_logits(query_z, protos, self.config.distance)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the queries under {eq}`eq-protonet-softmax`: {eq}`eq-protonet-loss`."""
        logits = self.predict(episode)
        loss = F.cross_entropy(logits, episode.query_y)
        return with_accuracy(loss, logits, episode.query_y)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        every = self.config.lr_decay_every  # the paper halves the rate every 2,000 episodes
        return torch.optim.lr_scheduler.StepLR(optimizer, every, gamma=0.5) if every else None
