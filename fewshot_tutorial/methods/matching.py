"""Matching networks (Vinyals et al. 2016): attention over the support set.

A query is embedded, compared with every support embedding, the similarities go
through a softmax over the support items (the attention ``a(x, x_i)``), and the
attention weights sum the support labels, {eq}`eq-matching-prediction`. The math is in
:mod:`fewshot_tutorial.attention`; this file wires it to a Conv4 embedding and,
optionally, to the full context embeddings (FCE) of the paper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from ..attention import (SIMILARITIES, QueryAttentionLSTM, SupportContext, attention, check_temperature,
                         class_log_probabilities, label_probabilities, matching_loss,
                         nearest_neighbour_labels, similarity)
from ..backbones import Conv4
from ..data import Episode, EpisodeSampler, FewShotDataset
from ..device import no_autocast, upcast
from ..distances import cosine_similarity
from ..metrics import with_accuracy
from .base import EpisodicConfig, Method

__all__ = ["MatchingNetwork", "MatchingConfig", "attention", "class_log_probabilities", "cosine_similarity",
           "label_probabilities", "matching_loss", "nearest_neighbour_labels", "similarity"]

#: The paper's softmax is ``T = 1``; cosine similarities lie in ``[-1, 1]``, so at ``T = 1``
#: no embedding can make the attention confident and the loss has a floor (see the chapter).
DEFAULT_TEMPERATURE = 0.1


@dataclasses.dataclass
class MatchingConfig(EpisodicConfig):
    """A matching network (``fce``: full context embeddings) and its training episodes."""

    fce: bool = False
    similarity: str = "cosine"
    temperature: float = DEFAULT_TEMPERATURE
    fce_steps: int = 5
    steps: int = 500

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"similarity": SIMILARITIES}
    help: ClassVar[dict[str, str]] = {"fce": "full context embeddings (bi-LSTM g, attention LSTM f)",
                                      "temperature": "softmax temperature T (the paper: 1)",
                                      "fce_steps": "reads of the attention LSTM"}
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {"temperature": check_temperature}


class MatchingNetwork(Method):
    """Embedding (Conv4) + optional full context embeddings + attention classifier."""

    name = "matching"
    Config = MatchingConfig

    def __init__(self, config: MatchingConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.backbone = Conv4(c.in_channels, c.hidden)
        self.g = SupportContext(c.hidden) if c.fce else None
        self.f = QueryAttentionLSTM(c.hidden, c.fce_steps) if c.fce else None

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[Episode]:
        c = self.config
        return EpisodeSampler(dataset, c.train_way, c.train_shot, c.train_query, seed=seed)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, D]`` (``f'`` and ``g'`` of the paper: one shared network)."""
        return self.backbone(x)

    def contextualise(
        self, support_z: torch.Tensor, query_z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g(S) [S, D], f(x, S) [Q, D])`` with FCE, else the embeddings; in float32."""
        with no_autocast(support_z):
            support_z, query_z = upcast(support_z), upcast(query_z)
            if self.config.fce:
                support_z = self.g(support_z)
                query_z = self.f(query_z, support_z)
        return support_z, query_z

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        """``[Q, n_way]`` log-probabilities {eq}`eq-matching-log-prob` (used as logits)."""
        support_z, query_z = self.contextualise(support_z, query_z)
        sim = similarity(query_z, support_z, self.config.similarity)
        return class_log_probabilities(sim, support_y, n_way, self.config.temperature)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, dict[str, float]]:
        """{eq}`eq-matching-loss` on one episode, plus its accuracy."""
        log_probs = self.predict(episode)
        loss = matching_loss(log_probs, episode.query_y)
        return with_accuracy(loss, log_probs, episode.query_y)

    def attention(self, episode: Episode) -> torch.Tensor:
        """``[Q, S]`` attention {eq}`eq-matching-attention` of each query over the support; for plots."""
        n_s = len(episode.support_x)
        z = self.embed(torch.cat([episode.support_x, episode.query_x]))
        s, q = self.contextualise(z[:n_s], z[n_s:])
        return attention(q, s, self.config.similarity, self.config.temperature)
