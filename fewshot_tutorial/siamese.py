"""Siamese networks: a shared embedding trained on pairs, used as a one-shot classifier.

Two losses on pairs ``(x1, x2)`` with the label ``same = 1`` when both images show the
same character and ``0`` otherwise (the package's convention, see
{eq}`eq-siamese-contrastive`):

* the contrastive loss of Hadsell, Chopra and LeCun (2006) on the Euclidean distance
  between the embeddings ``z = f_phi(x)``;
* the learned similarity of Koch, Zemel and Salakhutdinov (2015): a sigmoid over a
  weighted L1 distance, trained with binary cross-entropy.

A trained network classifies the queries of an episode by their distance (or
similarity) to the support images: the nearest class wins, and for ``K > 1`` shots the
score of a class is the mean over its ``K`` support images.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import embed_dataset as _embed_dataset
from .backbones import Conv4
from .data import Episode, FewShotDataset
from .device import Profile, use_channels_last
from .training import History, train

HEADS = ("contrastive", "koch")
PairBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- the math
def safe_norm(diff: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dimension with a finite gradient at zero.

    ``sqrt`` has an infinite derivative at 0, so ``diff.pow(2).sum(-1).sqrt()`` back-
    propagates ``inf * 0 = nan`` when ``diff == 0``. Here the square root only ever sees
    positive numbers (the "double where" trick), the value is exact, and the gradient at
    zero is 0 (a valid subgradient of the norm there).

    Args:
        diff: ``[..., D]``.

    Returns:
        ``[...]`` norms.
    """
    d2 = diff.pow(2).sum(-1)
    positive = d2 > 0
    safe = torch.where(positive, d2, torch.ones_like(d2))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(d2))


def euclidean_distance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Distance between paired embeddings. Implements {eq}`eq-siamese-distance`.

    Args:
        z1: ``[B, D]``
        z2: ``[B, D]``

    Returns:
        ``[B]`` distances ``d_i = ||z1_i - z2_i||``.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be [B, D], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return safe_norm(z1 - z2)


def _check_pair_labels(z1: torch.Tensor, label: torch.Tensor, name: str) -> torch.Tensor:
    if label.dim() != 1 or label.shape[0] != z1.shape[0]:
        raise ValueError(f"{name} must be [B] = [{z1.shape[0]}] (one label a pair), got {tuple(label.shape)}")
    return label.to(z1.dtype)


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor, margin: float = 1.0,
                     reduction: str = "mean") -> torch.Tensor:
    """The contrastive loss, ``same = 1`` for a pair of the same class.

    Implements {eq}`eq-siamese-contrastive`: ``same * d^2 + (1 - same) * max(0, margin - d)^2``
    with ``d`` the Euclidean distance {eq}`eq-siamese-distance`, finite (value and
    gradient) also when ``z1 == z2``.

    Args:
        z1: ``[B, D]`` embeddings of the first images.
        z2: ``[B, D]`` embeddings of the second images.
        same: ``[B]`` 1 (or True) for same-class pairs, 0 for different-class pairs.
        margin: ``m > 0``; different pairs farther apart than ``m`` cost nothing.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (``[B]`` per-pair losses).

    Returns:
        scalar, or ``[B]`` with ``reduction="none"``.

    Raises:
        ValueError: shapes that do not pair up, ``margin <= 0`` or an unknown reduction.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}; try margin=1.0")
    d = euclidean_distance(z1, z2)
    y = _check_pair_labels(z1, same, "same")
    d2_same = (z1 - z2).pow(2).sum(-1)  # d^2 without a square root: exact gradient at 0
    per_pair = y * d2_same + (1 - y) * F.relu(margin - d).pow(2)
    return _reduce(per_pair, reduction)


def contrastive_loss_hadsell(z1: torch.Tensor, z2: torch.Tensor, different: torch.Tensor,
                             margin: float = 1.0) -> torch.Tensor:
    """The same loss in the other convention: ``different = 1`` for *dissimilar* pairs.

    Implements {eq}`eq-siamese-contrastive-flipped`,
    ``(1 - y) * d^2 + y * max(0, margin - d)^2`` with ``y = different`` (as written by
    Hadsell et al., 2006, without their factor 1/2). It equals
    ``contrastive_loss(z1, z2, 1 - different, margin)``.

    Args:
        z1, z2: ``[B, D]``.
        different: ``[B]`` 1 for different-class pairs.
        margin: ``m > 0``.

    Returns:
        scalar: the mean over the ``B`` pairs.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}; try margin=1.0")
    y = _check_pair_labels(z1, different, "different")
    d = euclidean_distance(z1, z2)
    return ((1 - y) * d.pow(2) + y * (margin - d).clamp(min=0).pow(2)).mean()


def contrastive_grad_z1(z1: torch.Tensor, z2: torch.Tensor, same: torch.Tensor,
                        margin: float = 1.0) -> torch.Tensor:
    """The gradient of the mean contrastive loss with respect to ``z1``, derived by hand.

    Implements {eq}`eq-siamese-grad`: a same pair pulls ``z1`` towards ``z2`` with
    ``2 (z1 - z2)``; a different pair inside the margin pushes it away with
    ``-2 (m - d) (z1 - z2) / d``; a different pair beyond the margin does nothing. Each
    row is divided by ``B`` (the mean). At ``d = 0`` the push has no direction; like
    :func:`safe_norm`, we return 0 there.

    Args:
        z1, z2: ``[B, D]``; same: ``[B]``; margin: ``m``.

    Returns:
        ``[B, D]``, equal to ``autograd.grad(contrastive_loss(z1, z2, same, margin), z1)``.
    """
    d = euclidean_distance(z1, z2).unsqueeze(-1)  # [B, 1]
    y = _check_pair_labels(z1, same, "same").unsqueeze(-1)
    diff = z1 - z2
    pull = 2 * diff
    unit = torch.where(d > 0, diff / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(diff))
    push = -2 * (margin - d).clamp(min=0) * unit
    return (y * pull + (1 - y) * push) / z1.shape[0]


def weighted_l1_logit(z1: torch.Tensor, z2: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Koch et al.'s learned similarity, as a logit. Implements {eq}`eq-siamese-koch`.

    ``logit = sum_j alpha_j |z1_j - z2_j| + b`` and ``p(same) = sigmoid(logit)``; the
    weights ``alpha`` are learned (a negative ``alpha_j`` means "a difference in feature
    ``j`` speaks against same").

    Args:
        z1: ``[..., D]``; z2: ``[..., D]`` (broadcastable); weight: ``[D]``; bias: scalar.

    Returns:
        ``[...]`` logits of "same class".
    """
    if weight.dim() != 1 or weight.shape[0] != z1.shape[-1]:
        raise ValueError(f"weight must be [D] = [{z1.shape[-1]}], got {tuple(weight.shape)}")
    return ((z1 - z2).abs() * weight).sum(-1) + bias


def koch_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``same``. Implements {eq}`eq-siamese-bce`.

    Args:
        logits: ``[B]`` from :func:`weighted_l1_logit`; same: ``[B]`` in {0, 1}.

    Returns:
        scalar mean over the pairs.
    """
    return F.binary_cross_entropy_with_logits(logits, _check_pair_labels(logits.unsqueeze(-1), same, "same"))


def _reduce(per_pair: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_pair.mean()
    if reduction == "none":
        return per_pair
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def class_scores(pair_scores: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Average query-support scores over each class's support images.

    Implements {eq}`eq-siamese-predict`: with ``K = 1`` this is the nearest-neighbour
    rule; with ``K > 1`` each class gets the mean over its ``K`` shots.

    Args:
        pair_scores: ``[n_query_total, n_way * n_shot]`` (higher = more alike).
        support_y: ``[n_way * n_shot]`` labels in ``0..n_way-1``.
        n_way: number of classes.

    Returns:
        ``[n_query_total, n_way]``.
    """
    onehot = F.one_hot(support_y, n_way).to(pair_scores.dtype)  # [S, n_way]
    return pair_scores @ onehot / onehot.sum(0)


# ------------------------------------------------------------------------- the pairs
class PairSampler:
    """Balanced, seeded batches of image pairs from a :class:`FewShotDataset`.

    Each batch holds ``batch_size // 2`` same-class pairs (one class, two different
    drawings) followed by as many different-class pairs (two distinct classes, one
    drawing each), all drawn uniformly. Iterating yields tuples
    ``(x1 [B, C, H, W], x2 [B, C, H, W], same [B])`` that the training engine moves to
    the device.

    Args:
        dataset: the training classes.
        batch_size: pairs per batch ``B`` (even).
        seed: same seed -> the same batches.
        n_batches: length of one pass (``None``: endless).
    """

    def __init__(self, dataset: FewShotDataset, batch_size: int = 64, seed: int | None = 0,
                 n_batches: int | None = None) -> None:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch_size must be an even number >= 2 (half same, half different), got {batch_size}")
        if dataset.n_classes < 2 or dataset.n_per_class < 2:
            raise ValueError(f"need >= 2 classes of >= 2 images to make pairs, got {dataset!r}")
        self.dataset, self.batch_size, self.n_batches = dataset, batch_size, n_batches
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def sample_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(first [B, 2], second [B, 2], same [B])``: (class, drawing) indices of each image."""
        g, h = self.generator, self.batch_size // 2
        n_cls, n_img = self.dataset.n_classes, self.dataset.n_per_class
        # same: one class, two distinct drawings (second = first + a non-zero shift)
        c = torch.randint(n_cls, (h,), generator=g)
        i = torch.randint(n_img, (h,), generator=g)
        j = (i + torch.randint(1, n_img, (h,), generator=g)) % n_img
        # different: two distinct classes (shift by 1..n_cls-1), any drawings
        c1 = torch.randint(n_cls, (h,), generator=g)
        c2 = (c1 + torch.randint(1, n_cls, (h,), generator=g)) % n_cls
        i1, i2 = torch.randint(n_img, (2, h), generator=g)
        first = torch.stack([torch.cat([c, c1]), torch.cat([i, i1])], 1)
        second = torch.stack([torch.cat([c, c2]), torch.cat([j, i2])], 1)
        same = torch.cat([torch.ones(h), torch.zeros(h)])
        return first, second, same

    def sample(self) -> PairBatch:
        """The next batch ``(x1, x2, same)``."""
        first, second, same = self.sample_indices()
        data = self.dataset.images
        dev = data.device
        x1 = data[first[:, 0].to(dev), first[:, 1].to(dev)]
        x2 = data[second[:, 0].to(dev), second[:, 1].to(dev)]
        return x1, x2, same.to(dev)

    def __iter__(self) -> Iterator[PairBatch]:
        n = 0
        while self.n_batches is None or n < self.n_batches:
            yield self.sample()
            n += 1


# ------------------------------------------------------------------------- the model
class SiameseNetwork(nn.Module):
    """One embedding tower ``f_phi`` shared by both images of a pair, plus a pair head.

    Args:
        head: ``"contrastive"`` (Euclidean distance, contrastive loss) or ``"koch"``
            (weighted L1 + sigmoid, binary cross-entropy).
        margin: the contrastive loss's margin ``m`` (ignored by ``"koch"``).
        in_channels, hidden: of the :class:`~fewshot_tutorial.backbones.Conv4` tower.
        image_size: side of the input images (fixes ``D``).

    Shapes:
        ``embed: [B, C, H, W] -> [B, D]`` (``D = 64`` for 28x28 Omniglot).
    """

    def __init__(self, head: str = "contrastive", margin: float = 1.0, in_channels: int = 1,
                 hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}; try margin=1.0")
        self.head, self.margin = head, float(margin)
        self.hparams = {"head": head, "margin": float(margin), "in_channels": in_channels,
                        "hidden": hidden, "image_size": image_size}
        self.encoder = Conv4(in_channels, hidden)
        dim = self.encoder.out_features(image_size)
        if head == "koch":
            # start with "any difference speaks against same": alpha_j < 0
            self.alpha = nn.Parameter(torch.full((dim,), -1.0 / dim))
            self.bias = nn.Parameter(torch.ones(()))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``z = f_phi(x)``: ``[B, C, H, W] -> [B, D]`` in float32."""
        return self.encoder(x).float()

    def pair_scores(self, zq: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """Similarity of every query to every support embedding: ``[Q, D], [S, D] -> [Q, S]``.

        Minus the distance for the contrastive head, the logit of "same" for Koch's.
        """
        if self.head == "koch":
            return weighted_l1_logit(zq.unsqueeze(1), zs.unsqueeze(0), self.alpha, self.bias)
        return -safe_norm(zq.unsqueeze(1) - zs.unsqueeze(0))

    def loss(self, batch: PairBatch) -> torch.Tensor:
        """The training loss of one batch of pairs (for :func:`~fewshot_tutorial.training.train`).

        Both images go through the tower in one call (one batch-norm batch).
        """
        x1, x2, same = batch
        z1, z2 = self.embed(torch.cat([x1, x2])).chunk(2)
        if self.head == "koch":
            return koch_loss(weighted_l1_logit(z1, z2, self.alpha, self.bias), same)
        return contrastive_loss(z1, z2, same, self.margin)


def episode_logits(model: SiameseNetwork, support_z: torch.Tensor, support_y: torch.Tensor,
                   query_z: torch.Tensor, n_way: int) -> torch.Tensor:
    """Logits of an episode from its embeddings. Implements {eq}`eq-siamese-predict`.

    Args:
        support_z: ``[n_way * n_shot, D]``; support_y: ``[n_way * n_shot]``;
        query_z: ``[n_way * n_query, D]``; n_way: ``N``.

    Returns:
        ``[n_way * n_query, n_way]``: the mean similarity of each query to each class's
        support embeddings (minus the mean distance for the contrastive head).
    """
    return class_scores(model.pair_scores(query_z, support_z), support_y, n_way)


def make_predict(model: SiameseNetwork) -> Callable[[Episode], torch.Tensor]:
    """A ``predict`` for :func:`~fewshot_tutorial.evaluation.evaluate` on image episodes.

    Returns:
        ``episode -> logits [n_way * n_query, n_way]`` (see :func:`episode_logits`).
    """

    @torch.no_grad()
    def predict(episode: Episode) -> torch.Tensor:
        model.eval()
        n_s = len(episode.support_x)
        x = torch.cat([episode.support_x, episode.query_x])
        if use_channels_last(x.device):  # NHWC convolutions are faster on CPU and CUDA
            x = x.contiguous(memory_format=torch.channels_last)
        z = model.embed(x)
        return episode_logits(model, z[:n_s], episode.support_y, z[n_s:], episode.n_way)

    return predict


@torch.no_grad()
def embed_dataset(model: SiameseNetwork, dataset: FewShotDataset, device: torch.device | str = "cpu",
                  batch_size: int = 256) -> FewShotDataset:
    """Embed every image once (see :func:`fewshot_tutorial.evaluation.embed_dataset`): a dataset whose "images" are ``[D, 1, 1]`` embeddings.

    In eval mode an image's embedding does not depend on the rest of its batch, and an
    :class:`~fewshot_tutorial.data.EpisodeSampler` draws its indices from the class and
    image counts only, so the same seed gives the *same* episodes here as on the images;
    :func:`make_embedding_predict` then scores them without re-running the tower.

    Returns:
        :class:`FewShotDataset` with images ``[n_classes, n_per_class, D, 1, 1]``.
    """
    return _embed_dataset(model.embed, dataset, device, batch_size, module=model)


def make_embedding_predict(model: SiameseNetwork) -> Callable[[Episode], torch.Tensor]:
    """``predict`` for episodes drawn from :func:`embed_dataset` (only the pair head runs)."""

    @torch.no_grad()
    def predict(episode: Episode) -> torch.Tensor:
        model.eval()
        return episode_logits(model, episode.support_x.flatten(1), episode.support_y,
                              episode.query_x.flatten(1), episode.n_way)

    return predict


def fit(model: SiameseNetwork, dataset: FewShotDataset, *, n_steps: int | None = None,
        max_seconds: float | None = None, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
        device: torch.device | str = "cpu", precision: str = "auto", progress: bool = True) -> History:
    """Train ``model`` on balanced pairs of ``dataset`` through the shared engine."""
    pairs = PairSampler(dataset, batch_size, seed=seed)
    return train(model, model.loss, pairs, n_steps=n_steps, max_seconds=max_seconds, lr=lr,
                 device=device, precision=precision, progress=progress, desc=f"siamese ({model.head})")


# --------------------------------------------------------------------------- the CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``python -m fewshot_tutorial train siamese``."""
    parser.add_argument("--head", default="contrastive", choices=HEADS,
                        help="contrastive loss (Hadsell et al.) or weighted L1 + BCE (Koch et al.)")
    parser.add_argument("--margin", type=float, default=2.0, help="contrastive margin m (the chapter uses 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per step (half same, half different)")


def default_steps(profile: Profile) -> int:
    """Training steps (batches of pairs) for a profile: the chapter's and the CLI's default."""
    return profile.pick(quick=200, standard=5000, paper=20000)


def train_from_args(args: argparse.Namespace, dataset: FewShotDataset, device: torch.device,
                    profile: Profile) -> tuple[SiameseNetwork, History, dict[str, Any]]:
    """Build and train the model the CLI asked for; return it, its history and its config."""
    image_size = dataset.image_shape[-1]
    model = SiameseNetwork(args.head, args.margin, dataset.image_shape[0], 64, image_size)
    steps = args.steps if args.steps is not None or args.seconds is not None else default_steps(profile)
    lr = args.lr if args.lr is not None else 1e-3
    hist = fit(model, dataset, n_steps=steps, max_seconds=args.seconds, batch_size=args.batch_size,
               lr=lr, seed=args.seed, device=device, precision=args.precision)
    config = {**model.hparams, "batch_size": args.batch_size, "lr": lr, "steps": hist.steps}
    return model, hist, config


def model_from_config(config: dict[str, Any]) -> SiameseNetwork:
    """An untrained :class:`SiameseNetwork` with the hyper-parameters stored in ``config``."""
    keys = ("head", "margin", "in_channels", "hidden", "image_size")
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"config lacks {missing}; it is not a siamese checkpoint config")
    return SiameseNetwork(**{k: config[k] for k in keys})


def predictor_from_checkpoint(state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                              device: torch.device | str) -> Callable[[Episode], torch.Tensor]:
    """Rebuild the trained model from a checkpoint and return its ``predict``."""
    model = model_from_config(config)
    model.load_state_dict(state_dict)
    return make_predict(model.to(device))
