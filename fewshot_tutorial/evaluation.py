"""Scoring a few-shot classifier on a fixed, seeded set of episodes.

:func:`evaluate` takes a :class:`~fewshot_tutorial.methods.Method` or any
``predict(episode) -> logits`` and owns what scoring needs: eval mode, ``no_grad``
(or gradients, for methods that fine-tune inside ``predict``), autocast, the device,
and, for methods with an embedding, every image embedded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .data import Episode, EpisodeSampler, FewShotDataset
from .device import autocast, autocast_dtype, for_inference, use_channels_last
from .methods.base import Method
from .metrics import accuracy, with_accuracy  # noqa: F401  (with_accuracy re-exported)

Predict = Callable[[Episode], torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    """Mean accuracy over episodes with its 95% confidence half-width."""

    accuracy: float
    ci95: float
    n: int
    per_episode: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __str__(self) -> str:
        if self.n < 2:
            return f"{100 * self.accuracy:.2f}% (n={self.n}: no interval from one episode)"
        return f"{100 * self.accuracy:.2f} ± {100 * self.ci95:.2f}% (n={self.n})"

    def as_dict(self, per_episode: bool = False) -> dict[str, Any]:
        """JSON-able; with ``per_episode`` also the per-episode accuracies (for paired comparisons)."""
        out: dict[str, Any] = {"accuracy": self.accuracy, "ci95": self.ci95, "n": self.n}
        if per_episode:
            out["per_episode"] = list(self.per_episode)
        return out


def confidence_interval(accuracies: torch.Tensor | list[float]) -> EvalResult:
    """Mean and 95% half-width ``1.96 * s / sqrt(n)`` (``s``: sample std, ddof = 1).

    Implements {eq}`eq-ci95`.
    """
    a = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    n = a.numel()
    if n == 0:
        raise ValueError("no accuracies to summarise; evaluate at least one episode")
    s = a.std(unbiased=True).item() if n > 1 else float("nan")
    return EvalResult(a.mean().item(), 1.96 * s / math.sqrt(n), n, tuple(a.tolist()))


def prepare_for_inference(method: Method, device: torch.device,
                          precision: str | None = None) -> tuple[bool, torch.dtype | None]:
    """Put ``method`` in eval mode on ``device`` (channels-last where it uses it); return
    ``(channels_last, autocast dtype)`` for its calls (``precision``: default the method's own)."""
    mode = getattr(method, "channels_last", "auto")
    cl = use_channels_last(device) if mode == "auto" else bool(mode)
    for_inference(method, device, cl)
    return cl, autocast_dtype(device, precision or getattr(method, "precision", "auto"))


def make_predict(method: Method, device: torch.device | str, precision: str | None = None) -> Predict:
    """``method``'s ``predict`` as :func:`evaluate` runs it, ``episode -> logits [Q, n_way]`` in float32.

    The method is put in eval mode on ``device``; episodes are moved there; the call
    runs under ``no_grad`` (gradients on for methods whose ``predict`` fine-tunes) and
    the method's autocast precision.
    """
    device = torch.device(device)
    cl, dtype = prepare_for_inference(method, device, precision)

    def predict(episode: Episode) -> torch.Tensor:
        episode = episode.to(device, channels_last=cl)
        with torch.set_grad_enabled(method.grad_at_test), autocast(device, dtype):
            return method.predict(episode).float()

    return predict


def classify(method: Method, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
             device: torch.device | str = "cpu", precision: str | None = None) -> torch.Tensor:
    """Classify your own images: ``[Q, n_way]`` probabilities of each query image's class.

    The one call for a trained method and a few labelled images (load them with
    :func:`~fewshot_tutorial.data.load_image`, which preprocesses exactly as the training data).

    Args:
        method: a trained :class:`~fewshot_tutorial.methods.Method`.
        support_x: ``[S, C, H, W]`` labelled images; support_y: ``[S]`` their labels ``0..n_way-1``.
        query_x: ``[Q, C, H, W]`` the images to classify (one is fine: ``[1, C, H, W]``).

    Returns:
        ``[Q, n_way]``, rows summing to 1: the softmax of the method's logits.
    """
    if query_x.dim() == support_x.dim() - 1:
        query_x = query_x.unsqueeze(0)  # a single image
    support_y = torch.as_tensor(support_y)
    n_way = int(support_y.max()) + 1 if len(support_y) else 0
    episode = Episode(support_x, support_y, query_x, None, n_way=n_way)
    return make_predict(method, device, precision)(episode).softmax(-1)


def make_embedding_predict(method: Method) -> Predict:
    """``predict`` for episodes drawn from :func:`embed_dataset`: only ``method.head`` runs."""

    @torch.no_grad()
    def predict(episode: Episode) -> torch.Tensor:
        return method.head(episode.support_x.flatten(1).float(), episode.support_y,
                           episode.query_x.flatten(1).float(), episode.n_way).float()

    return predict


def check_logits(logits: torch.Tensor, expected: tuple[int, int]) -> torch.Tensor:
    """``logits`` if of shape ``expected`` (``[Q, n_way]``) and finite, else a ``ValueError``."""
    if tuple(logits.shape) != expected:
        raise ValueError(f"predict returned logits of shape {tuple(logits.shape)}, expected {expected}")
    if logits.device.type != "meta" and not bool(torch.isfinite(logits).all()):
        raise ValueError("predict returned NaN or infinite logits; an accuracy from them would be "
                         "meaningless. Check the model (a diverged training run?) or try precision='float32'")
    return logits


def evaluate(
    predict: Method | Predict,
    dataset: FewShotDataset,
    n_way: int,
    n_shot: int,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    precision: str | None = None,
    cache: bool = True,
    return_episodes: bool = False,
    within_alphabet: bool = False,
) -> EvalResult:
    """Accuracy on ``n_episodes`` seeded episodes.

    The same ``seed`` gives every method the very same episodes, so their accuracies
    are compared on equal terms (see :func:`paired_difference`).

    Args:
        predict: a :class:`~fewshot_tutorial.methods.Method`, or any
            ``episode -> logits [n_way * n_query, n_way]``.
        dataset: classes to test on (never seen in training).
        n_way, n_shot, n_query: the task.
        n_episodes: how many episodes to average.
        seed: seed of the episode sampler.
        device: where episodes (and a method) are moved.
        progress: show a progress bar (default: when ``n_episodes >= 100``).
        precision: a method's autocast precision (default: the method's own).
        cache: for a method with an embedding, embed every image once and score the
            episodes from the embeddings (the same episodes and, in eval mode, the
            same logits, tens of times cheaper).
        within_alphabet: Lake et al.'s protocol: the classes of an episode are characters
            of one alphabet, support and queries by different drawers
            (:class:`~fewshot_tutorial.data.within_alphabet.WithinAlphabetSampler`).

    Returns:
        :class:`EvalResult` (mean accuracy, 95% half-width, number of episodes), with
        the per-episode accuracies in ``per_episode``.

    Raises:
        ValueError: logits of the wrong shape, or not finite (NaN or infinite).
    """
    from tqdm.auto import tqdm

    if isinstance(predict, Method):
        method = predict
        if cache and method.has_embedding:
            dataset = embed_dataset(method, dataset, device, precision=precision)
            predict = make_embedding_predict(method)
        else:
            predict = make_predict(method, device, precision)
    if within_alphabet:
        from .data.within_alphabet import WithinAlphabetSampler

        sampler: EpisodeSampler | WithinAlphabetSampler = WithinAlphabetSampler(
            dataset, n_way, n_shot, n_query, seed=seed, n_episodes=n_episodes)
    else:
        sampler = EpisodeSampler(dataset, n_way, n_shot, n_query, seed=seed, n_episodes=n_episodes)
    show = n_episodes >= 100 if progress is None else progress
    accs = []
    for episode in tqdm(sampler, total=n_episodes, disable=not show, leave=False, mininterval=1.0,
                        desc=f"{n_way}-way {n_shot}-shot"):
        episode = episode.to(device)
        logits = check_logits(predict(episode), (n_way * n_query, n_way))
        accs.append(accuracy(logits, episode.query_y))
    return confidence_interval(accs)


def paired_difference(a: EvalResult, b: EvalResult) -> EvalResult:
    """Mean per-episode difference ``a - b`` and its 95% half-width, for the *same* episodes.

    Two methods scored with the same seed see the same episodes, so their difference
    is measured episode by episode: the interval of the mean difference is usually much
    narrower than either method's own interval (the episodes' difficulty cancels).
    Implements {eq}`eq-ci95` on the differences.

    Raises:
        ValueError: the results lack per-episode accuracies or count different episodes.
    """
    if not a.per_episode or not b.per_episode:
        raise ValueError("paired_difference needs per-episode accuracies: pass results from evaluate()")
    if len(a.per_episode) != len(b.per_episode):
        raise ValueError(f"the results count {len(a.per_episode)} and {len(b.per_episode)} episodes; "
                         "score both methods on the same seeded episodes")
    return confidence_interval([x - y for x, y in zip(a.per_episode, b.per_episode)])


@torch.no_grad()
def embed_dataset(
    embed: Method | Callable[[torch.Tensor], torch.Tensor],
    dataset: FewShotDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    precision: str | None = None,
    module: torch.nn.Module | None = None,
) -> FewShotDataset:
    """Embed every image once: a dataset whose "images" are ``[D, 1, 1]`` embeddings.

    For a backbone in eval mode an image's embedding does not depend on the other
    images of its batch, and :class:`~fewshot_tutorial.data.EpisodeSampler` draws its
    indices from the class and image counts only, so the same seed gives the *same*
    episodes from this dataset as from the images. :func:`make_embedding_predict` then
    scores them without re-running the backbone for every episode, which makes
    evaluation tens of times cheaper (what :func:`evaluate` does for a method).

    Args:
        embed: a :class:`~fewshot_tutorial.methods.Method` with an embedding, or any
            ``[B, C, H, W] -> [B, D]`` (then put its ``module`` in eval mode).
        dataset: images ``[n_classes, n_per_class, C, H, W]``.
        device: where to run ``embed``.
        batch_size: images per forward pass.
        precision: autocast precision (default: the method's, or float32 for a plain function).
        module: the module behind a plain ``embed``, put in eval mode on ``device`` first.

    Returns:
        :class:`FewShotDataset` with images ``[n_classes, n_per_class, D, 1, 1]`` (float32).
    """
    device = torch.device(device)
    if isinstance(embed, Method):
        module, precision, embed = embed, precision or embed.precision, embed.embed
    if module is not None:
        for_inference(module, device)
    dtype = autocast_dtype(device, precision or "float32")
    fmt = torch.channels_last if use_channels_last(device) else torch.contiguous_format
    x, _ = dataset.flat()
    out = []
    with autocast(device, dtype):
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size].to(device).contiguous(memory_format=fmt)
            out.append(embed(batch).float())
    z = torch.cat(out).reshape(dataset.n_classes, dataset.n_per_class, -1, 1, 1)
    return FewShotDataset(z, list(dataset.class_names), name=f"{dataset.name}:embedded")
