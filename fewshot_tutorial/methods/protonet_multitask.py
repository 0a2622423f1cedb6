"""A prototypical network with a second, ordinary classification loss on the same backbone.

Two losses share one Conv4 at every step: ProtoNet's episodic loss
{eq}`eq-protonet-loss` on an episode, and cross-entropy over *all* training classes on
a class batch (a linear classifier on the embedding, as in
:class:`~fewshot_tutorial.methods.Baseline`). They are combined either with a fixed
weight, ``lam L_episodic + (1 - lam) L_class``, or with weights learned as Kendall et
al.'s (2018) task uncertainties, {eq}`eq-uncertainty-weighting`
(:class:`~fewshot_tutorial.multitask.UncertaintyWeighting`, optimised with the network).
A new task is classified as by ProtoNet: the classifier is used in training only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Episode, EpisodeSampler, FewShotDataset
from ..data.class_batches import ClassBatch, ClassBatchSampler
from ..device import upcast
from ..multitask import UncertaintyWeighting, fixed_weighting
from .baseline import _check, _positive
from .protonet import ProtoNet, ProtoNetConfig

WEIGHTINGS = ("fixed", "uncertainty")


@dataclasses.dataclass
class ProtoNetMultiTaskConfig(ProtoNetConfig):
    """ProtoNet's config, the classifier over ``n_classes`` training classes and the weighting.

    ``lam`` is the episodic loss's weight when ``weighting="fixed"`` (1: ProtoNet alone,
    the class batch is not even drawn through the network; 0: the classifier alone); with
    ``weighting="uncertainty"`` both weights are learned, ``lam`` is unused, and the
    log-variances ``nu_i`` have their own rate ``weight_lr`` (one scalar each: at the
    network's rate of about 1e-3 they would need thousands of steps to reach their
    optimum {eq}`eq-uncertainty-optimum`).
    """

    n_classes: int = 964
    batch_size: int = 64
    weighting: str = "uncertainty"
    lam: float = 0.5
    weight_lr: float = 0.05

    choices: ClassVar[dict[str, tuple[str, ...]]] = {**ProtoNetConfig.choices, "weighting": WEIGHTINGS}
    help: ClassVar[dict[str, str]] = {
        **ProtoNetConfig.help,
        "n_classes": "classes of the training split (the classifier's outputs)",
        "batch_size": "images per class batch of the classification loss",
        "weighting": "fixed lam, or learned uncertainty weights (Kendall et al. 2018)",
        "lam": "weight of the episodic loss when weighting is fixed",
        "weight_lr": "learning rate of the learned log-variances nu_i",
    }
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {
        **ProtoNetConfig.checks, "n_classes": _positive("n_classes"), "batch_size": _positive("batch_size"),
        "lam": _check("lam", lambda v: 0 <= v <= 1, "in [0, 1]"), "weight_lr": _positive("weight_lr")}


class _Paired:
    """An endless stream of ``(episode, class batch)`` pairs from two seeded samplers."""

    def __init__(self, episodes: Iterable[Episode], batches: Iterable[ClassBatch]) -> None:
        self.episodes, self.batches = episodes, batches

    def __iter__(self) -> Iterator[tuple[Episode, ClassBatch]]:
        return zip(self.episodes, self.batches)


class ProtoNetMultiTask(ProtoNet):
    """ProtoNet's episodic loss plus cross-entropy over all training classes, weighted."""

    name = "protonet-multitask"
    Config = ProtoNetMultiTaskConfig

    def __init__(self, config: ProtoNetMultiTaskConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.classifier = nn.Linear(self.backbone.out_features(c.image_size), c.n_classes)
        self.weighting = UncertaintyWeighting(2) if c.weighting == "uncertainty" else None

    @classmethod
    def for_dataset(cls, dataset: FewShotDataset, **overrides: Any) -> ProtoNetMultiTask:
        """The method with one classifier output per class of ``dataset``."""
        return cls(n_classes=dataset.n_classes, **overrides)

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[tuple[Episode, ClassBatch]]:
        c = self.config
        if dataset.n_classes != c.n_classes:
            raise ValueError(f"the dataset has {dataset.n_classes} classes but the classifier has "
                             f"n_classes={c.n_classes} outputs; build it with n_classes={dataset.n_classes} "
                             f"(or ProtoNetMultiTask.for_dataset(data), --n-classes {dataset.n_classes})")
        # two independent seeded streams; the class batches' seed is derived from the episodes'
        return _Paired(EpisodeSampler(dataset, c.train_way, c.train_shot, c.train_query, seed=seed),
                       ClassBatchSampler(dataset, c.batch_size, seed=None if seed is None else seed + 1))

    def param_groups(self) -> list[dict[str, Any]]:
        """The network at the optimiser's rate; the learned log-variances at ``weight_lr``."""
        if self.weighting is None:
            return super().param_groups()
        own = {id(p) for p in self.weighting.parameters()}
        return [{"params": [p for p in self.parameters() if p.requires_grad and id(p) not in own]},
                {"params": list(self.weighting.parameters()), "lr": self.config.weight_lr}]

    def loss_weights(self) -> tuple[float, float]:
        """The current weights of (episodic, classification) losses."""
        if self.weighting is None:
            return self.config.lam, 1 - self.config.lam
        w = self.weighting.weights.detach()
        return float(w[0]), float(w[1])

    def loss(
        self, batch: tuple[Episode, ClassBatch]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``lam L_episodic + (1 - lam) L_class``, or {eq}`eq-uncertainty-weighting` over the two losses."""
        episode, (x, y) = batch
        lam = self.config.lam if self.weighting is None else None
        zero = episode.query_x.new_zeros(())
        episodic, stats = super().loss(episode) if lam != 0 else (zero, {})
        classification = (F.cross_entropy(upcast(self.classifier(self.backbone(x))), y)
                          if lam != 1 else zero)  # lam = 1: ProtoNet alone, exactly
        if self.weighting is None:
            total = fixed_weighting(episodic, classification, lam)
        else:
            total = self.weighting(torch.stack([upcast(episodic), classification]))
        if total.device.type != "meta":
            w_episodic, w_class = self.loss_weights()
            stats = {**stats, "loss_episodic": float(episodic.detach()),
                     "loss_class": float(classification.detach()),
                     "weight_episodic": w_episodic, "weight_class": w_class}
        return total, stats
