"""Prototypical networks (Snell et al., 2017): classify a query by its nearest class mean.

The math, one function an equation:

* :func:`prototypes`: the class means of the support embeddings, {eq}`eq-protonet-prototype`;
* :func:`squared_euclidean`, :func:`cosine_distance`: query-to-prototype distances;
* :func:`protonet_logits`: logits = minus distance, {eq}`eq-protonet-softmax`;
* :func:`linear_layer`: the same classifier as a linear layer, ``W_c = 2 c_c``,
  ``b_c = -||c_c||^2``, {eq}`eq-protonet-linear` (what a ProtoMAML-style initialisation of an
  output layer uses).

Then the thin wrappers: :class:`ProtoNet` (backbone + distance), :func:`protonet_loss`
for :func:`fewshot_tutorial.training.train`, :func:`make_predict` for
:func:`fewshot_tutorial.evaluation.evaluate` (and :func:`embed_dataset` +
:func:`make_embedding_predict` to embed a split once), :func:`fit` (episodic training, with an
optional higher way at training time than at test time), and the three CLI functions.
"""

from __future__ import annotations

import argparse
from functools import partial
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Conv4
from .data import Episode, EpisodeSampler, FewShotDataset
from .device import autocast, autocast_dtype, for_inference, no_autocast, use_channels_last
from .evaluation import Predict
from .evaluation import embed_dataset as _embed_dataset
from .training import History, train

DISTANCES = ("euclidean", "cosine")


# ----------------------------------------------------------------------------- the math
def _upcast(z: torch.Tensor) -> torch.Tensor:
    """Half-precision embeddings (from autocast) go to float32 before means and distances."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def prototypes(support_z: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of the support embeddings, for labels in any order.

    Implements {eq}`eq-protonet-prototype`: ``c_k = (1 / |S_k|) sum_{i: y_i = k} z_i``.

    Args:
        support_z: ``[n_way * n_shot, D]`` support embeddings (any order; classes may
            even have different numbers of examples).
        support_y: ``[n_way * n_shot]`` integer labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        ``[n_way, D]``: row ``k`` is the mean of the embeddings labelled ``k`` (in
        float32 at least: bfloat16 embeddings from autocast are upcast first).

    Raises:
        ValueError: shapes disagree, a label is outside ``0..n_way-1``, or a class has
            no support example (its mean would be undefined).
    """
    if support_z.dim() != 2 or support_y.dim() != 1 or len(support_z) != len(support_y):
        raise ValueError(f"support_z must be [S, D] and support_y [S]; got {tuple(support_z.shape)} "
                         f"and {tuple(support_y.shape)}")
    if support_y.device.type != "meta" and len(support_y):
        lo, hi = int(support_y.min()), int(support_y.max())
        if lo < 0 or hi >= n_way:
            raise ValueError(f"support labels must lie in 0..{n_way - 1} (n_way={n_way}); got {lo}..{hi}")
    y = support_y.long()
    support_z = _upcast(support_z)
    sums = support_z.new_zeros(n_way, support_z.shape[1]).index_add(0, y, support_z)  # [n_way, D]
    counts = support_z.new_zeros(n_way).index_add(0, y, support_z.new_ones(len(y)))  # [n_way]
    if support_y.device.type != "meta" and bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"class(es) {missing} have no support example, so their prototype is undefined; "
                         f"give every class 0..{n_way - 1} at least one support image")
    return sums / counts.unsqueeze(1)


def squared_euclidean(query_z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of every query to every prototype.

    ``d(z, c) = ||z - c||^2``, the distance in {eq}`eq-protonet-softmax`. Computed from the
    differences (not from the expansion ``||z||^2 - 2 z.c + ||c||^2``, which cancels
    badly in low precision) and in at least float32.

    Args:
        query_z: ``[n_query_total, D]`` query embeddings.
        protos: ``[n_way, D]`` prototypes.

    Returns:
        ``[n_query_total, n_way]`` distances (>= 0).
    """
    if query_z.shape[-1] != protos.shape[-1]:
        raise ValueError(f"query_z has D={query_z.shape[-1]} but protos has D={protos.shape[-1]}")
    with no_autocast(query_z):
        diff = _upcast(query_z).unsqueeze(1) - _upcast(protos).unsqueeze(0)  # [Q, n_way, D]
        return diff.pow(2).sum(-1)


def cosine_distance(query_z: torch.Tensor, protos: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine distance ``1 - cos(z, c)`` of every query to every prototype.

    Args:
        query_z: ``[n_query_total, D]`` query embeddings.
        protos: ``[n_way, D]`` prototypes.
        eps: guards the norms of all-zero vectors.

    Returns:
        ``[n_query_total, n_way]`` distances in ``[0, 2]``.
    """
    if query_z.shape[-1] != protos.shape[-1]:
        raise ValueError(f"query_z has D={query_z.shape[-1]} but protos has D={protos.shape[-1]}")
    with no_autocast(query_z):
        q = F.normalize(_upcast(query_z), dim=-1, eps=eps)
        c = F.normalize(_upcast(protos), dim=-1, eps=eps)
        return 1.0 - q @ c.T


def protonet_logits(query_z: torch.Tensor, protos: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Logits ``-d(f(x), c_k)``, whose softmax is {eq}`eq-protonet-softmax`.

    Args:
        query_z: ``[n_query_total, D]``.
        protos: ``[n_way, D]``.
        distance: ``"euclidean"`` (squared, the default) or ``"cosine"``.

    Returns:
        ``[n_query_total, n_way]`` logits.
    """
    if distance == "euclidean":
        return -squared_euclidean(query_z, protos)
    if distance == "cosine":
        return -cosine_distance(query_z, protos)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def linear_layer(protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prototype classifier as a linear layer (squared Euclidean distance).

    Implements {eq}`eq-protonet-linear`: ``-||z - c_k||^2 = 2 c_k.z - ||c_k||^2 - ||z||^2``;
    the last term is the same for every class, so ``W_k = 2 c_k`` and ``b_k = -||c_k||^2``
    give the same softmax. ``z @ W.T + b`` equals the distance logits plus ``||z||^2``.

    Args:
        protos: ``[n_way, D]`` prototypes.

    Returns:
        ``(W [n_way, D], b [n_way])``, ready for ``nn.functional.linear(z, W, b)``.
    """
    if protos.dim() != 2:
        raise ValueError(f"protos must be [n_way, D], got {tuple(protos.shape)}")
    return 2.0 * protos, -protos.pow(2).sum(-1)


# ----------------------------------------------------------------------------- the model
class ProtoNet(nn.Module):
    """An embedding network plus a distance: the whole of a prototypical network.

    Args:
        backbone: maps ``[B, C, H, W]`` to ``[B, D]`` (default: :class:`Conv4`).
        distance: ``"euclidean"`` (squared; default) or ``"cosine"``.
    """

    def __init__(self, backbone: nn.Module | None = None, distance: str = "euclidean") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.backbone = backbone if backbone is not None else Conv4()
        self.distance = distance

    def embed(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """``(support_z [n_way * n_shot, D], query_z [n_way * n_query, D])``, one backbone call."""
        x = torch.cat([episode.support_x, episode.query_x])
        z = self.backbone(x)
        n = len(episode.support_x)
        return z[:n], z[n:]

    def forward(self, episode: Episode) -> torch.Tensor:
        """Logits ``[n_way * n_query, n_way]`` of the episode's queries."""
        support_z, query_z = self.embed(episode)
        protos = prototypes(support_z, episode.support_y, episode.n_way)
        return protonet_logits(query_z, protos, self.distance)


def protonet_loss(model: ProtoNet, episode: Episode) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the queries under {eq}`eq-protonet-softmax`, and the episode's accuracy.

    Implements {eq}`eq-protonet-loss`. The engine's ``loss_fn`` is
    ``functools.partial(protonet_loss, model)`` (see :func:`fit`).

    Returns:
        ``(loss [], {"accuracy": float})``.
    """
    logits = model(episode)
    loss = F.cross_entropy(logits, episode.query_y)
    if logits.device.type == "meta":
        return loss, {}
    acc = (logits.detach().argmax(-1) == episode.query_y).float().mean()
    return loss, {"accuracy": float(acc)}


def make_predict(model: ProtoNet, device: torch.device | str | None = None,
                 precision: str = "auto") -> Predict:
    """A ``predict(episode) -> logits [n_way * n_query, n_way]`` for :func:`evaluate`.

    The model is put in eval mode (batch norm uses its running statistics); embeddings
    run under the same mixed precision as training, distances in float32.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    dtype = autocast_dtype(device, precision)
    cl = use_channels_last(device)
    for_inference(model, device)

    @torch.no_grad()
    def predict(episode: Episode) -> torch.Tensor:
        episode = episode.to(device, channels_last=cl)
        with autocast(device, dtype):
            return model(episode).float()

    return predict


@torch.no_grad()
def embed_dataset(model: ProtoNet, dataset: FewShotDataset, device: torch.device | str = "cpu",
                  batch_size: int = 512, precision: str = "auto") -> FewShotDataset:
    """Embed every image once (see :func:`fewshot_tutorial.evaluation.embed_dataset`).

    In eval mode an image's embedding does not depend on the rest of its batch, and an
    :class:`~fewshot_tutorial.data.EpisodeSampler` with the same seed draws the *same*
    episodes from the embedded dataset, so :func:`make_embedding_predict` scores the
    usual evaluation episodes without running the backbone for every episode (a 20-way
    5-shot episode with 15 queries is 400 images).

    Returns:
        :class:`FewShotDataset` with images ``[n_classes, n_per_class, D, 1, 1]`` (float32).
    """
    return _embed_dataset(model.backbone, dataset, device, batch_size, precision, module=model)


def make_embedding_predict(model: ProtoNet) -> Predict:
    """``predict`` for episodes drawn from :func:`embed_dataset`: prototypes and distances only.

    Returns logits ``[n_way * n_query, n_way]``, as :func:`make_predict` does on images.
    """

    def predict(episode: Episode) -> torch.Tensor:
        support_z, query_z = episode.support_x.flatten(1).float(), episode.query_x.flatten(1).float()
        protos = prototypes(support_z, episode.support_y, episode.n_way)
        return protonet_logits(query_z, protos, model.distance)

    return predict


def fit(model: ProtoNet, dataset: FewShotDataset, *, n_way: int = 60, n_shot: int = 1, n_query: int = 5,
        n_steps: int | None = 1000, max_seconds: float | None = None, lr: float = 1e-3,
        lr_decay_every: int | None = None, lr_schedule: str = "constant", seed: int = 0,
        device: torch.device | str = "cpu", precision: str = "auto", channels_last: bool | str = "auto",
        progress: bool = True) -> History:
    """Episodic training of ``model`` on ``dataset`` through the shared engine.

    ``n_way`` is the *training* way; Snell et al. train with more classes per episode
    (60) than they test with (5 or 20), which makes each episode a harder task.

    Args:
        n_way, n_shot, n_query: the training episodes.
        n_steps / max_seconds: the budget (whichever ends first).
        lr: Adam learning rate; halved every ``lr_decay_every`` steps if given
            (the paper halves it every 2000 episodes).
        lr_schedule: or ``"cosine"`` / ``"linear"``: decay to zero over the budget
            (steps or seconds), see :func:`~fewshot_tutorial.training.train`.
        seed: seed of the training episode sampler.
    """
    if n_way > dataset.n_classes:
        raise ValueError(f"train way n_way={n_way} but the training split has only {dataset.n_classes} classes")
    sampler = EpisodeSampler(dataset, n_way, n_shot, n_query, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, lr_decay_every, gamma=0.5)
                 if lr_decay_every else None)
    return train(model, partial(protonet_loss, model), sampler, n_steps=n_steps, max_seconds=max_seconds,
                 optimizer=optimizer, scheduler=scheduler, lr_schedule=lr_schedule, device=device,
                 precision=precision, channels_last=channels_last, progress=progress,
                 desc=f"protonet {n_way}-way {n_shot}-shot")


# ----------------------------------------------------------------------------- the CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """ProtoNet's own flags for ``python -m fewshot_tutorial train protonet``."""
    parser.add_argument("--train-way", type=int, default=None,
                        help="classes per training episode (default: 60, capped by the split; "
                             "--way is the test way)")
    parser.add_argument("--train-query", type=int, default=5, help="query images per class in training")
    parser.add_argument("--distance", default="euclidean", choices=DISTANCES)
    parser.add_argument("--lr-decay-every", type=int, default=None, help="halve the lr every this many steps")
    parser.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine", "linear"],
                        help="or decay the lr to zero over the budget (--steps or --seconds)")


def train_from_args(args: argparse.Namespace, dataset: FewShotDataset, device: torch.device,
                    profile: Any) -> tuple[ProtoNet, History, dict[str, Any]]:
    """Train a ProtoNet as the CLI asks; returns ``(model, history, config)``."""
    train_way = args.train_way or min(60, dataset.n_classes)
    steps = args.steps if args.steps is not None else (
        None if args.seconds is not None else profile.pick(quick=1000, standard=10000, paper=20000))
    lr = args.lr if args.lr is not None else 1e-3
    model = ProtoNet(Conv4(), distance=args.distance)
    hist = fit(model, dataset, n_way=train_way, n_shot=args.shot, n_query=args.train_query, n_steps=steps,
               max_seconds=args.seconds, lr=lr, lr_decay_every=args.lr_decay_every,
               lr_schedule=args.lr_schedule, seed=args.seed,
               device=device, precision=args.precision)
    config = {"backbone": "Conv4", "hidden": 64, "distance": args.distance, "train_way": train_way,
              "train_shot": args.shot, "train_query": args.train_query, "lr": lr, "steps": hist.steps,
              "lr_schedule": args.lr_schedule,
              "precision": args.precision}
    return model, hist, config


def predictor_from_checkpoint(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                              device: torch.device | str) -> Predict:
    """Rebuild the ProtoNet a checkpoint describes and return its ``predict``."""
    model = ProtoNet(Conv4(hidden=int(config.get("hidden", 64))), distance=config.get("distance", "euclidean"))
    model.load_state_dict(dict(state_dict))
    return make_predict(model, device, precision=config.get("precision", "auto"))
