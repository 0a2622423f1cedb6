"""Baseline and Baseline++ (Chen et al. 2019, "A Closer Look at Few-shot Classification").

Transfer learning instead of meta-learning: pre-train a Conv4 and a classifier over
*all* training classes with plain cross-entropy on class batches, then, for a new task,
freeze the backbone and fit a new classifier on the support set's embeddings.

* ``Baseline``: a linear classifier ``z W^T + b``;
* ``Baseline++``: a cosine classifier ``rho * cos(z, w_k)``, {eq}`eq-cosine-head`, with a
  learned scale ``rho`` initialised at 10 (our choice; see :class:`~fewshot_tutorial.heads.CosineClassifier`).

At test time (``head_kind``): ``"finetune"`` trains a new head of the same kind on the
support set (:func:`~fewshot_tutorial.heads.finetune_head`, after Chen et al.);
``"nearest_mean"`` classifies by the nearest class mean of the frozen embeddings;
``"logreg"`` fits logistic regression on L2-normalised embeddings (Tian et al. 2020).
None of them changes the stored model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..aggregation import class_means
from ..backbones import Conv4
from ..data import Episode, FewShotDataset
from ..data.class_batches import ClassBatch, ClassBatchSampler
from ..device import upcast
from ..distances import squared_euclidean
from ..heads import CosineClassifier, finetune_head, head_logits, logistic_regression
from ..metrics import with_accuracy
from .base import Config, Method

HEAD_KINDS = ("finetune", "nearest_mean", "logreg")


def _check(name: str, ok: Callable[[Any], bool], what: str) -> Callable[[Any], None]:
    """A config check: ``ValueError("name must be what, got value")`` unless ``ok(value)``."""
    def check(value: Any) -> None:
        if not ok(value):
            raise ValueError(f"{name} must be {what}, got {value}")
    return check


def _positive(name: str) -> Callable[[Any], None]:
    return _check(name, lambda v: v > 0, "> 0")


@dataclasses.dataclass
class BaselineConfig(Config):
    """A pre-trained classifier over ``n_classes`` training classes and its test-time head.

    ``n_classes`` must equal the training dataset's number of classes (964 for Omniglot's
    background split); it is in the config so that a checkpoint rebuilds the classifier.
    The fine-tuning defaults follow Chen et al. (100 steps of SGD, rate 0.01, momentum
    0.9, weight decay 1e-3, batches of 4; their code runs 100 epochs over the support
    set and adds a dampening of 0.9).
    """

    n_classes: int = 964
    batch_size: int = 64
    head_kind: str = "finetune"
    finetune_steps: int = 100
    finetune_lr: float = 0.01
    finetune_momentum: float = 0.9
    finetune_weight_decay: float = 1e-3
    finetune_batch_size: int = 4
    logreg_c: float = 1.0
    logreg_steps: int = 300
    steps: int = 1000

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"head_kind": HEAD_KINDS}
    help: ClassVar[dict[str, str]] = {
        "n_classes": "classes of the training split (its classifier's outputs)",
        "batch_size": "images per training batch",
        "head_kind": "test-time classifier on frozen embeddings",
        "finetune_steps": "SGD steps of the new head on the support set",
        "finetune_batch_size": "support images per fine-tuning step",
        "logreg_c": "inverse L2 strength of the logistic regression (scikit-learn's C)",
        "logreg_steps": "gradient steps of the logistic regression",
    }
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {
        **{k: _positive(k) for k in ("n_classes", "batch_size", "finetune_lr", "finetune_batch_size", "logreg_c",
                                     "logreg_steps")},
        "finetune_steps": _check("finetune_steps", lambda v: v >= 0, ">= 0"),
        "finetune_momentum": _check("finetune_momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
        "finetune_weight_decay": _check("finetune_weight_decay", lambda v: v >= 0, ">= 0"),
    }


@dataclasses.dataclass
class BaselinePPConfig(BaselineConfig):
    """Baseline++: the cosine classifier's scale ``rho`` (initial value, learned or fixed)."""

    scale: float = 10.0
    learn_scale: bool = True

    help: ClassVar[dict[str, str]] = {**BaselineConfig.help, "scale": "initial scale rho of the cosine head",
                                      "learn_scale": "train the scale rho with the weights"}
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {**BaselineConfig.checks, "scale": _positive("scale")}


class Baseline(Method):
    """A Conv4 and a linear classifier over all training classes; a new head per test task."""

    name = "baseline"
    Config = BaselineConfig
    grad_at_test = True  # the test-time head is fitted by gradient steps (the backbone stays frozen)
    #: the classifier: ``"linear"`` or ``"cosine"``
    kind: ClassVar[str] = "linear"

    def __init__(self, config: BaselineConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.backbone = Conv4(c.in_channels, c.hidden)
        dim = self.backbone.out_features(c.image_size)
        if self.classifier_kind == "cosine":
            self.classifier: nn.Module = CosineClassifier(dim, c.n_classes, c.scale, c.learn_scale)
        else:
            self.classifier = nn.Linear(dim, c.n_classes)

    @property
    def classifier_kind(self) -> str:
        return self.kind

    @classmethod
    def for_dataset(cls, dataset: FewShotDataset, **overrides: Any) -> Baseline:
        """The method with one output per class of ``dataset`` (``n_classes = dataset.n_classes``)."""
        return cls(n_classes=dataset.n_classes, **overrides)

    # ------------------------------------------------------------------ pre-training
    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[ClassBatch]:
        if dataset.n_classes != self.config.n_classes:
            raise ValueError(f"the dataset has {dataset.n_classes} classes but the classifier has "
                             f"n_classes={self.config.n_classes} outputs; build it with "
                             f"n_classes={dataset.n_classes} (or {type(self).__name__}.for_dataset(data), "
                             f"--n-classes {dataset.n_classes})")
        return ClassBatchSampler(dataset, self.config.batch_size, seed=seed)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Training-class logits: ``[B, C, H, W] -> [B, n_classes]``."""
        return self.classifier(self.backbone(x))

    def loss(self, batch: ClassBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy over all training classes."""
        x, y = batch
        logits = upcast(self.logits(x))
        return with_accuracy(F.cross_entropy(logits, y), logits, y)

    # ------------------------------------------------------------------ a new task
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return upcast(self.backbone(x))

    def predict(self, episode: Episode) -> torch.Tensor:
        """Logits ``[Q, n_way]``: the frozen backbone embeds (no gradient), the new head classifies."""
        n = len(episode.support_x)
        with torch.no_grad():
            z = self.embed(torch.cat([episode.support_x, episode.query_x]))
        return self.head(z[:n], episode.support_y, z[n:], episode.n_way)

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        """A classifier fitted on ``support_z [S, D]`` (``head_kind``), applied to ``query_z [Q, D]``."""
        c = self.config
        support_z, query_z = support_z.detach(), query_z.detach()
        if c.head_kind == "nearest_mean":
            return -squared_euclidean(query_z, class_means(support_z, support_y, n_way))
        if c.head_kind == "logreg":
            w, b = logistic_regression(support_z, support_y, n_way, c.logreg_c,
                                       c.logreg_steps)
            return F.linear(F.normalize(upcast(query_z), dim=-1), w, b)
        scale = self.classifier.scale.detach() if self.classifier_kind == "cosine" else None
        w, b = finetune_head(support_z, support_y, n_way, self.classifier_kind, scale,
                             c.finetune_steps, c.finetune_lr, c.finetune_momentum,
                             c.finetune_weight_decay, c.finetune_batch_size)
        return head_logits(query_z, w, b, scale)


class BaselinePP(Baseline):
    """Baseline++: a Conv4 and a cosine classifier ``rho * cos(z, w_k)`` over all training classes."""

    name = "baseline++"
    Config = BaselinePPConfig
    kind = "cosine"
