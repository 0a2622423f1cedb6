"""Matching networks (Vinyals et al. 2016): attention over the support set.

A matching network is a differentiable nearest-neighbour classifier. A query ``x`` is
embedded, compared with every support embedding, the similarities go through a
softmax *over support items* (the attention ``a(x, x_i)``), and the attention weights
sum the support labels:

    P(y = c | x, S) = sum_i a(x, x_i) [y_i = c]

The pure functions below implement the book's equations one by one; the
:class:`MatchingNetwork` module wires them to a :class:`~fewshot_tutorial.backbones.Conv4`
embedding and, optionally, to the full context embeddings (FCE) of the paper.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import embed_dataset as _embed_dataset
from .backbones import Conv4
from .data import Episode, FewShotDataset
from .device import autocast, autocast_dtype, no_autocast
from .training import History, train

SIMILARITIES = ("cosine", "euclidean")
#: Softmax temperature of the model. The paper's softmax is ``T = 1``; cosine similarities
#: lie in ``[-1, 1]``, so at ``T = 1`` no embedding can make the attention confident and
#: the loss has a floor (see the chapter). ``T = 0.1`` trains much faster.
DEFAULT_TEMPERATURE = 0.1


# --------------------------------------------------------------------------- the math
def cosine_similarity(query_z: torch.Tensor, support_z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of every query with every support embedding.

    Each row is divided by ``max(||z||, eps)``, so a zero vector has similarity 0 with
    everything (finite values and gradients) instead of ``0 / 0``.

    Implements {eq}`eq-matching-cosine`.

    Args:
        query_z: ``[Q, D]`` query embeddings.
        support_z: ``[S, D]`` support embeddings (``S = n_way * n_shot``).
        eps: smallest norm used in the division.

    Returns:
        ``[Q, S]`` similarities in ``[-1, 1]``.
    """
    _check_pair(query_z, support_z)
    return F.normalize(query_z, dim=-1, eps=eps) @ F.normalize(support_z, dim=-1, eps=eps).T


def negative_squared_euclidean(query_z: torch.Tensor, support_z: torch.Tensor) -> torch.Tensor:
    """``-||q - s||^2`` for every query / support pair (the alternative similarity).

    Implements {eq}`eq-matching-euclidean`.

    Args:
        query_z: ``[Q, D]``.
        support_z: ``[S, D]``.

    Returns:
        ``[Q, S]`` similarities (``<= 0``; 0 means identical).
    """
    _check_pair(query_z, support_z)
    diff = query_z[:, None, :] - support_z[None, :, :]  # [Q, S, D]
    return -diff.pow(2).sum(-1)


def similarity(query_z: torch.Tensor, support_z: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """``[Q, D] x [S, D] -> [Q, S]`` similarity of the named ``kind`` (see :data:`SIMILARITIES`)."""
    if kind == "cosine":
        return cosine_similarity(query_z, support_z)
    if kind == "euclidean":
        return negative_squared_euclidean(query_z, support_z)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def attention(query_z: torch.Tensor, support_z: torch.Tensor, kind: str = "cosine",
              temperature: float = 1.0) -> torch.Tensor:
    """Softmax attention of each query over the support items.

    ``a(x, x_i) = exp(sim(x, x_i) / T) / sum_j exp(sim(x, x_j) / T)``. The softmax runs
    over the *support items* (dimension ``S``), not over classes.

    Implements {eq}`eq-matching-attention`.

    Args:
        query_z: ``[Q, D]`` query embeddings.
        support_z: ``[S, D]`` support embeddings.
        kind: ``"cosine"`` (the paper's choice) or ``"euclidean"``.
        temperature: ``T > 0``; as ``T -> 0`` each row tends to a one-hot on the most
            similar support item (1-nearest neighbour).

    Returns:
        ``[Q, S]`` non-negative weights, each row summing to 1.

    Raises:
        ValueError: shapes do not match or ``temperature <= 0``.
    """
    _check_temperature(temperature)
    return torch.softmax(similarity(query_z, support_z, kind) / temperature, dim=-1)


def one_hot(support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """``[S]`` labels -> ``[S, n_way]`` float one-hot rows (works on any device, even ``meta``)."""
    classes = torch.arange(n_way, device=support_y.device)
    return (support_y[:, None] == classes[None, :]).float()


def label_probabilities(attn: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """``P(y = c | x, S) = sum_i a(x, x_i) [y_i = c]``: attention weights summing labels.

    Implements {eq}`eq-matching-prediction`.

    Args:
        attn: ``[Q, S]`` attention (rows sum to 1).
        support_y: ``[S]`` labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        ``[Q, n_way]`` probabilities (rows sum to 1).
    """
    if attn.shape[-1] != support_y.shape[0]:
        raise ValueError(f"attention has {attn.shape[-1]} columns but there are {support_y.shape[0]} support labels")
    return attn @ one_hot(support_y, n_way).to(attn.dtype)


def class_log_probabilities(sim: torch.Tensor, support_y: torch.Tensor, n_way: int,
                            temperature: float = 1.0) -> torch.Tensor:
    """``log P(y = c | x, S)`` computed stably from the similarities.

    ``log sum_{i: y_i = c} exp(s_i / T) - log sum_i exp(s_i / T)``: the log of
    {eq}`eq-matching-prediction` written as a difference of two log-sum-exps, so no
    probability is ever rounded to 0 before the log.

    Implements {eq}`eq-matching-log-prob`.

    Args:
        sim: ``[Q, S]`` similarities.
        support_y: ``[S]`` labels in ``0..n_way-1``; every class needs a support item.
        n_way: number of classes.
        temperature: ``T > 0``.

    Returns:
        ``[Q, n_way]`` log-probabilities (``exp`` rows sum to 1). Used as logits by ``predict``.
    """
    _check_temperature(temperature)
    _check_labels(support_y, n_way)
    if sim.shape[-1] != support_y.shape[0]:
        raise ValueError(f"similarities have {sim.shape[-1]} columns but there are {support_y.shape[0]} support labels")
    s = sim / temperature  # [Q, S]
    mask = one_hot(support_y, n_way).T.to(s.dtype)  # [n_way, S]
    log_mask = torch.where(mask > 0, torch.zeros_like(mask), torch.full_like(mask, float("-inf")))
    per_class = torch.logsumexp(s[:, None, :] + log_mask[None], dim=-1)  # [Q, n_way]
    return per_class - torch.logsumexp(s, dim=-1, keepdim=True)


def matching_loss(log_probs: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``-1/Q sum_q log P(y_q | x_q, S)``.

    The inputs are already log-probabilities: no softmax is applied on top.

    Implements {eq}`eq-matching-loss`.

    Args:
        log_probs: ``[Q, n_way]`` from :func:`class_log_probabilities`.
        query_y: ``[Q]`` labels.

    Returns:
        scalar loss.
    """
    return F.nll_loss(log_probs, query_y)


def nearest_neighbour_labels(query_z: torch.Tensor, support_z: torch.Tensor, support_y: torch.Tensor,
                             kind: str = "cosine") -> torch.Tensor:
    """Label of the most similar support item for each query (1-NN): ``[Q]``.

    The ``temperature -> 0`` limit of {eq}`eq-matching-attention`.
    """
    return support_y[similarity(query_z, support_z, kind).argmax(dim=-1)]


# ------------------------------------------------------------ full context embeddings
class SupportContext(nn.Module):
    """``g(x_i, S)``: a bidirectional LSTM reads the support embeddings in order.

    ``g(x_i, S) = g'(x_i) + h_i^fwd + h_i^bwd`` (a skip connection plus both directions).

    Implements {eq}`eq-matching-fce-g`.

    Shapes:
        ``support_z: [S, D] -> [S, D]``
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, support_z: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(support_z[None])  # [1, S, 2D]
        fwd, bwd = out[0, :, : self.dim], out[0, :, self.dim :]
        return support_z + fwd + bwd


class QueryAttentionLSTM(nn.Module):
    """``f(x, S)``: an LSTM that reads the (context-embedded) support ``K`` times.

    With ``f'(x)`` the query embedding and ``g(S)`` the support context embeddings,
    for ``k = 1..K``::

        h_hat_k, c_k = LSTM([f'(x), r_{k-1}], (h_{k-1}, c_{k-1}))
        h_k          = h_hat_k + f'(x)
        r_k          = sum_i softmax_i(h_k . g(x_i)) g(x_i)

    and ``f(x, S) = h_K``. Feeding ``r`` as input is the same affine function in the
    gates as the paper's hidden state ``[h, r]``, so it is the paper's model. Queries
    are processed independently (one batch row each).

    Implements {eq}`eq-matching-fce-f`.

    Shapes:
        ``query_z: [Q, D], support_g: [S, D] -> [Q, D]``
    """

    def __init__(self, dim: int, steps: int = 5) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"fce_steps must be >= 1, got {steps}")
        self.dim, self.steps = dim, steps
        self.cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query_z: torch.Tensor, support_g: torch.Tensor) -> torch.Tensor:
        h = query_z
        c = torch.zeros_like(query_z)
        r = torch.zeros_like(query_z)
        for _ in range(self.steps):
            h_hat, c = self.cell(torch.cat([query_z, r], dim=-1), (h, c))
            h = h_hat + query_z
            read = torch.softmax(h @ support_g.T, dim=-1)  # [Q, S]
            r = read @ support_g
        return h


# ------------------------------------------------------------------------ the network
class MatchingNetwork(nn.Module):
    """Embedding (``Conv4``) + optional full context embeddings + attention classifier.

    Args:
        backbone: maps ``[B, C, H, W]`` to ``[B, D]`` (default ``Conv4()``, ``D = 64``).
        fce: use full context embeddings (``g`` and ``f`` above); default plain.
        similarity: ``"cosine"`` (paper) or ``"euclidean"``.
        temperature: softmax temperature ``T`` (default :data:`DEFAULT_TEMPERATURE`; the paper: 1).
        fce_steps: ``K``, reads of the attention LSTM.
        dim: ``D``; needed only for ``fce=True`` with a custom backbone.
    """

    def __init__(self, backbone: nn.Module | None = None, fce: bool = False, similarity: str = "cosine",
                 temperature: float = DEFAULT_TEMPERATURE, fce_steps: int = 5, dim: int = 64) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        _check_temperature(temperature)
        self.backbone = backbone if backbone is not None else Conv4()
        self.fce, self.similarity, self.temperature = fce, similarity, temperature
        self.g = SupportContext(dim) if fce else None
        self.f = QueryAttentionLSTM(dim, fce_steps) if fce else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, D]`` (``f'`` and ``g'`` of the paper: one shared network)."""
        return self.backbone(x)

    def contextualise(self, support_z: torch.Tensor, query_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g(S), f(x, S))`` with FCE, else the embeddings unchanged; in float32 (autocast off).

        Shapes:
            ``support_z: [S, D], query_z: [Q, D] -> ([S, D], [Q, D])``
        """
        with no_autocast(support_z):
            support_z, query_z = support_z.float(), query_z.float()
            if self.fce:
                support_z = self.g(support_z)
                query_z = self.f(query_z, support_z)
        return support_z, query_z

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        """From embeddings to ``[Q, n_way]`` log-probabilities {eq}`eq-matching-log-prob`.

        Args:
            support_z: ``[n_way * n_shot, D]``; support_y: ``[n_way * n_shot]``;
            query_z: ``[Q, D]``; n_way: classes.
        """
        support_z, query_z = self.contextualise(support_z, query_z)
        sim = similarity(query_z, support_z, self.similarity)
        return class_log_probabilities(sim, support_y, n_way, self.temperature)

    def forward(self, episode: Episode) -> torch.Tensor:
        """``episode -> [n_way * n_query, n_way]`` log-probabilities."""
        n_s = episode.support_x.shape[0]
        z = self.embed(torch.cat([episode.support_x, episode.query_x]))  # one batch: one BN statistic
        return self.head(z[:n_s], episode.support_y, z[n_s:], episode.n_way)

    def attention(self, episode: Episode) -> torch.Tensor:
        """``[Q, S]`` attention {eq}`eq-matching-attention` of each query over the support; for plots."""
        n_s = episode.support_x.shape[0]
        z = self.embed(torch.cat([episode.support_x, episode.query_x]))
        s, q = self.contextualise(z[:n_s], z[n_s:])
        return attention(q, s, self.similarity, self.temperature)


def episode_loss(model: MatchingNetwork, episode: Episode) -> tuple[torch.Tensor, dict[str, float]]:
    """The training step's loss: {eq}`eq-matching-loss` on one episode, plus its accuracy."""
    log_probs = model(episode)
    loss = matching_loss(log_probs, episode.query_y)
    if log_probs.device.type == "meta":
        return loss, {}
    acc = (log_probs.argmax(-1) == episode.query_y).float().mean().item()
    return loss, {"accuracy": acc}


def fit(model: MatchingNetwork, dataset: FewShotDataset, n_way: int = 5, n_shot: int = 1, n_query: int = 15,
        n_steps: int | None = 500, max_seconds: float | None = None, lr: float = 1e-3, seed: int = 0,
        device: torch.device | str = "cpu", precision: str = "auto", progress: bool = True) -> History:
    """Episodic training ("train as you test"): one ``n_way``-way ``n_shot``-shot episode per step.

    The code path of both the notebook and ``python -m fewshot_tutorial train matching``.

    Args:
        model: trained in place (moved to ``device``).
        dataset: training classes (e.g. the background alphabets).
        n_way, n_shot, n_query: shape of every training episode.
        n_steps, max_seconds: budget (episodes and/or wall time).
        lr: Adam learning rate.
        seed: seed of the episode sampler.
        device, precision, progress: passed to :func:`~fewshot_tutorial.training.train`.

    Returns:
        the :class:`~fewshot_tutorial.training.History` of the run.
    """
    from .data import EpisodeSampler

    sampler = EpisodeSampler(dataset, n_way, n_shot, n_query, seed=seed)
    return train(model, lambda ep: episode_loss(model, ep), sampler, n_steps=n_steps, max_seconds=max_seconds,
                 lr=lr, device=device, precision=precision, progress=progress,
                 desc=f"matching {n_way}w{n_shot}s" + (" FCE" if model.fce else ""))


# ----------------------------------------------------------------------- prediction
def make_predict(model: MatchingNetwork, device: torch.device | str | None = None,
                 precision: str = "auto") -> Callable[[Episode], torch.Tensor]:
    """A ``predict`` for :func:`~fewshot_tutorial.evaluation.evaluate`: episode -> ``[Q, n_way]`` logits.

    The logits are the log-probabilities {eq}`eq-matching-log-prob`; the model runs in
    eval mode (batch norm uses its running statistics) without gradients.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = autocast_dtype(device, precision)

    def predict(episode: Episode) -> torch.Tensor:
        model.eval()
        with torch.no_grad(), autocast(device, dtype):
            return model(episode.to(device)).float()

    return predict


@torch.no_grad()
def embed_dataset(model: MatchingNetwork, dataset: FewShotDataset, device: torch.device | str = "cpu",
                  batch_size: int = 128, precision: str = "auto") -> FewShotDataset:
    """Embed every image once (see :func:`fewshot_tutorial.evaluation.embed_dataset`): a dataset whose "images" are ``[D, 1, 1]`` embeddings.

    In eval mode an image's embedding does not depend on the other images of its batch,
    so an :class:`~fewshot_tutorial.data.EpisodeSampler` with the same seed draws the
    *same* episodes from this dataset (sampling depends only on the class and image
    counts), and :func:`make_embedding_predict` scores them without re-running the
    backbone for every episode.

    Returns:
        :class:`FewShotDataset` with images ``[n_classes, n_per_class, D, 1, 1]``.
    """
    return _embed_dataset(model.embed, dataset, device, batch_size, precision, module=model)


def make_embedding_predict(model: MatchingNetwork) -> Callable[[Episode], torch.Tensor]:
    """``predict`` for episodes drawn from :func:`embed_dataset` (only the head runs)."""

    def predict(episode: Episode) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return model.head(episode.support_x.flatten(1), episode.support_y,
                              episode.query_x.flatten(1), episode.n_way)

    return predict


# ---------------------------------------------------------------------------- CLI
def build_model(config: dict[str, Any]) -> MatchingNetwork:
    """The untrained model a ``config`` (from :func:`model_config`) describes."""
    return MatchingNetwork(Conv4(in_channels=config.get("in_channels", 1), hidden=config.get("hidden", 64)),
                           fce=config.get("fce", False), similarity=config.get("similarity", "cosine"),
                           temperature=config.get("temperature", DEFAULT_TEMPERATURE), fce_steps=config.get("fce_steps", 5),
                           dim=config.get("hidden", 64))


def model_config(fce: bool = False, similarity: str = "cosine", temperature: float = DEFAULT_TEMPERATURE,
                 fce_steps: int = 5, hidden: int = 64, in_channels: int = 1) -> dict[str, Any]:
    """JSON-able description of a model, enough to rebuild it with :func:`build_model`."""
    return {"fce": fce, "similarity": similarity, "temperature": temperature, "fce_steps": fce_steps,
            "hidden": hidden, "in_channels": in_channels}


def default_steps(profile) -> int:
    """Training episodes per profile (quick: a CPU minute; standard/paper: GPU runs)."""
    return profile.pick(quick=250, standard=20000, paper=60000)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m fewshot_tutorial train matching``."""
    parser.add_argument("--fce", action="store_true", help="full context embeddings (bi-LSTM g, attention LSTM f)")
    parser.add_argument("--similarity", default="cosine", choices=SIMILARITIES)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"softmax temperature T (default {DEFAULT_TEMPERATURE}; the paper uses 1)")
    parser.add_argument("--fce-steps", type=int, default=5, help="K, reads of the attention LSTM")


def train_from_args(args: argparse.Namespace, dataset: FewShotDataset, device: torch.device,
                    profile) -> tuple[MatchingNetwork, History, dict[str, Any]]:
    """Build and train a matching network as the CLI flags say (same code path as the book)."""
    config = model_config(fce=args.fce, similarity=args.similarity, temperature=args.temperature,
                          fce_steps=args.fce_steps)
    model = build_model(config)
    lr = args.lr if args.lr is not None else 1e-3
    n_steps = args.steps if args.steps is not None else (None if args.seconds else default_steps(profile))
    hist = fit(model, dataset, args.way, args.shot, args.query, n_steps=n_steps, max_seconds=args.seconds,
               lr=lr, seed=args.seed, device=device, precision=args.precision)
    config.update({"train_way": args.way, "train_shot": args.shot, "train_query": args.query, "lr": lr})
    return model, hist, config


def predictor_from_checkpoint(state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                              device: torch.device | str) -> Callable[[Episode], torch.Tensor]:
    """Rebuild the model from a checkpoint and return its ``predict``."""
    model = build_model(config)
    model.load_state_dict(state_dict)
    return make_predict(model.to(device), device)


# ------------------------------------------------------------------------- checks
def _check_pair(query_z: torch.Tensor, support_z: torch.Tensor) -> None:
    if query_z.dim() != 2 or support_z.dim() != 2:
        raise ValueError(f"expected query_z [Q, D] and support_z [S, D], got {tuple(query_z.shape)} and "
                         f"{tuple(support_z.shape)}; flatten the embeddings first")
    if query_z.shape[1] != support_z.shape[1]:
        raise ValueError(f"query and support embeddings differ in size: D={query_z.shape[1]} vs "
                         f"{support_z.shape[1]}; embed both with the same network")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use a small value such as 1e-3 for 1-NN")


def _check_labels(support_y: torch.Tensor, n_way: int) -> None:
    if support_y.dim() != 1:
        raise ValueError(f"support_y must be [S], got shape {tuple(support_y.shape)}")
    if support_y.is_meta:
        return  # no values to check
    counts = torch.bincount(support_y.clamp(0, n_way), minlength=n_way + 1)
    if support_y.min() < 0 or support_y.max() >= n_way or (counts[:n_way] == 0).any():
        raise ValueError(f"support labels must cover every class 0..{n_way - 1} (got {support_y.unique().tolist()}); "
                         "each class needs at least one support item")
