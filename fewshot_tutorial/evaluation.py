"""Scoring a few-shot classifier on a fixed, seeded set of episodes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .data import Episode, EpisodeSampler, FewShotDataset
from .device import autocast, autocast_dtype, for_inference, use_channels_last

Predict = Callable[[Episode], torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    """Mean accuracy over episodes with its 95% confidence half-width."""

    accuracy: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return f"{100 * self.accuracy:.2f} ± {100 * self.ci95:.2f}% (n={self.n})"

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "ci95": self.ci95, "n": self.n}


def confidence_interval(accuracies: torch.Tensor | list[float]) -> EvalResult:
    """Mean and 95% half-width ``1.96 * s / sqrt(n)`` (``s``: sample std, ddof = 1).

    Implements {eq}`eq-ci95`.
    """
    a = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    n = a.numel()
    if n == 0:
        raise ValueError("no accuracies to summarise; evaluate at least one episode")
    s = a.std(unbiased=True).item() if n > 1 else float("nan")
    return EvalResult(a.mean().item(), 1.96 * s / math.sqrt(n), n)


def episode_accuracy(logits: torch.Tensor, query_y: torch.Tensor) -> float:
    """Fraction of queries whose highest logit is their label. ``logits: [Q, n_way]``."""
    return (logits.argmax(dim=-1) == query_y).float().mean().item()


def evaluate(
    predict: Predict,
    dataset: FewShotDataset,
    n_way: int,
    n_shot: int,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> EvalResult:
    """Accuracy of ``predict`` on ``n_episodes`` seeded episodes.

    The same ``seed`` gives every method the very same episodes, so their accuracies
    are compared on equal terms.

    Args:
        predict: ``episode -> logits [n_way * n_query, n_way]``.
        dataset: classes to test on (never seen in training).
        n_way, n_shot, n_query: the task.
        n_episodes: how many episodes to average.
        seed: seed of the episode sampler.
        device: where episodes are moved before ``predict`` sees them.
        progress: show a tqdm bar (default: when ``n_episodes >= 100``).

    Returns:
        :class:`EvalResult` (mean accuracy, 95% half-width, number of episodes).
    """
    from tqdm.auto import tqdm

    sampler = EpisodeSampler(dataset, n_way, n_shot, n_query, seed=seed, n_episodes=n_episodes)
    show = n_episodes >= 100 if progress is None else progress
    accs = []
    for episode in tqdm(sampler, total=n_episodes, disable=not show, leave=False, mininterval=1.0,
                        desc=f"{n_way}-way {n_shot}-shot"):
        episode = episode.to(device)
        logits = predict(episode)
        expected = (n_way * n_query, n_way)
        if tuple(logits.shape) != expected:
            raise ValueError(f"predict returned logits of shape {tuple(logits.shape)}, expected {expected}")
        accs.append(episode_accuracy(logits, episode.query_y))
    return confidence_interval(accs)


@torch.no_grad()
def embed_dataset(
    embed: Callable[[torch.Tensor], torch.Tensor],
    dataset: FewShotDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    precision: str = "float32",
    module: torch.nn.Module | None = None,
) -> FewShotDataset:
    """Embed every image once: a dataset whose "images" are ``[D, 1, 1]`` embeddings.

    For a backbone in eval mode an image's embedding does not depend on the other
    images of its batch, and :class:`~fewshot_tutorial.data.EpisodeSampler` draws its
    indices from the class and image counts only, so the same seed gives the *same*
    episodes from this dataset as from the images. A method's "embedding predict" then
    scores them without re-running the backbone for every episode, which makes
    evaluation tens of times cheaper.

    Args:
        embed: ``[B, C, H, W] -> [B, D]`` (put its module in eval mode first).
        dataset: images ``[n_classes, n_per_class, C, H, W]``.
        device: where to run ``embed``.
        batch_size: images per forward pass.
        precision: autocast precision (see :func:`~fewshot_tutorial.device.autocast_dtype`).
        module: the module behind ``embed``, if any: put in eval mode on ``device`` (in
            channels-last memory where that helps) first.

    Returns:
        :class:`FewShotDataset` with images ``[n_classes, n_per_class, D, 1, 1]`` (float32).
    """
    device = torch.device(device)
    if module is not None:
        for_inference(module, device)
    dtype = autocast_dtype(device, precision)
    fmt = torch.channels_last if use_channels_last(device) else torch.contiguous_format
    x, _ = dataset.flat()
    out = []
    with autocast(device, dtype):
        for i in range(0, len(x), batch_size):
            out.append(embed(x[i : i + batch_size].to(device).contiguous(memory_format=fmt)).float())
    z = torch.cat(out).reshape(dataset.n_classes, dataset.n_per_class, -1, 1, 1)
    return FewShotDataset(z, list(dataset.class_names), name=f"{dataset.name}:embedded")
