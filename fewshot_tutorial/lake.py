"""Scoring a classifier on Lake et al.'s one-shot challenge (20 runs x 20 trials).

The runs are loaded by :func:`~fewshot_tutorial.data.lake.load_lake_runs`; the score
is the error rate over the 400 trials, the number Lake et al. (2015) and Koch et al.
(2015) report, which :data:`LAKE_PUBLISHED` quotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .data.lake import LakeRuns
from .evaluation import Predict, check_logits, confidence_interval, make_predict
from .methods.base import Method

# Published error rates on the 20 runs (fractions), quoted, not re-measured:
LAKE_PUBLISHED: dict[str, float] = {
    # Lake, Salakhutdinov & Tenenbaum (2015), Science 350:1332, one-shot classification results
    "humans": 0.045,
    "BPL": 0.033,  # Bayesian program learning
    "deep convnet (Lake et al.)": 0.135,
    # Koch, Zemel & Salakhutdinov (2015), ICML Deep Learning Workshop, Table 2 (92.0 % accuracy)
    "Siamese convnet (Koch et al.)": 0.080,
}


@dataclass(frozen=True)
class LakeResult:
    """Error on Lake's runs, per run, with two 95% intervals and every prediction.

    Attributes:
        error: wrong trials / all trials (400 for the official runs).
        ci95: half-width ``1.96 * s / sqrt(n_runs)`` over the per-run errors
            ({eq}`eq-ci95`); it treats runs, not trials, as independent, which they are
            not within a run (the same 20 training drawings serve 20 trials).
        binomial_ci95: Wilson score interval ``(low, high)`` over the trials as if they
            were independent; unlike the normal interval it stays inside [0, 1] at 0 or
            400 errors.
        per_run: error of each run.
        predictions, labels: per run, the predicted and the true class of each test item
            (in the order of :attr:`LakeRuns.query_files`).
    """

    error: float
    ci95: float
    binomial_ci95: tuple[float, float]
    per_run: tuple[float, ...]
    predictions: tuple[tuple[int, ...], ...] = field(repr=False)
    labels: tuple[tuple[int, ...], ...] = field(repr=False)

    @property
    def n_trials(self) -> int:
        return sum(len(y) for y in self.labels)

    def mistakes(self) -> list[tuple[int, int, int, int]]:
        """``(run, item, predicted, true)`` indices of every wrong trial."""
        return [(r, i, p, y) for r, (ps, ys) in enumerate(zip(self.predictions, self.labels))
                for i, (p, y) in enumerate(zip(ps, ys)) if p != y]

    def __str__(self) -> str:
        lo, hi = self.binomial_ci95
        return (f"error {100 * self.error:.2f}% ± {100 * self.ci95:.2f} over {len(self.per_run)} runs "
                f"(Wilson 95% [{100 * lo:.2f}, {100 * hi:.2f}] over {self.n_trials} trials)")

    def as_dict(self) -> dict:
        return {"error": self.error, "ci95": self.ci95, "binomial_ci95": list(self.binomial_ci95),
                "per_run": list(self.per_run), "n_trials": self.n_trials}


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (``z = 1.96``: 95%).

    The two roots ``p`` of ``(k/n - p)^2 = z^2 p (1 - p) / n``: the proportions whose own
    binomial interval just reaches the observed one. Implements {eq}`eq-wilson`.
    """
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def score_lake(predict: Method | Predict, runs: LakeRuns, device: torch.device | str = "cpu",
               precision: str | None = None) -> LakeResult:
    """Error of a classifier on every trial of Lake's runs.

    Args:
        predict: a :class:`~fewshot_tutorial.methods.Method` (run as :func:`evaluate`
            runs it, through :func:`make_predict`), or any
            ``episode -> logits [n_items, n_way]``.
        runs: from :func:`~fewshot_tutorial.data.lake.load_lake_runs`.
        device: where episodes (and a method) are moved.
        precision: a method's autocast precision (default: the method's own).

    Returns:
        :class:`LakeResult`.

    Raises:
        ValueError: logits of the wrong shape, or not finite.
    """
    if isinstance(predict, Method):
        predict = make_predict(predict, device, precision)
    preds, labels = [], []
    for episode in runs.episodes:
        episode = episode.to(device)
        logits = check_logits(predict(episode), (len(episode.query_x), episode.n_way))
        preds.append(tuple(logits.argmax(-1).tolist()))
        labels.append(tuple(episode.query_y.tolist()))
    wrong = [sum(p != y for p, y in zip(ps, ys)) for ps, ys in zip(preds, labels)]
    n = sum(len(ys) for ys in labels)
    per_run = tuple(w / len(ys) for w, ys in zip(wrong, labels))
    return LakeResult(sum(wrong) / n, confidence_interval(per_run).ci95, wilson_interval(sum(wrong), n), per_run,
                      tuple(preds), tuple(labels))


def format_published() -> str:
    """``humans 4.5%, BPL 3.3%, ...``: the published errors of :data:`LAKE_PUBLISHED`."""
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in LAKE_PUBLISHED.items())
