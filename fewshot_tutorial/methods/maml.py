"""MAML (Finn et al. 2017), first-order MAML, and Reptile (Nichol et al. 2018).

All three learn an initialisation ``theta`` from which a few gradient steps on a new
task's support set give a good classifier. The inner loop is
:func:`fewshot_tutorial.inner_loop.adapt`; this file says what each algorithm
minimises over a meta-batch of tasks:

* MAML: the query loss after adaptation, differentiated through the inner steps
  (Hessian terms included), {eq}`eq-maml-objective`;
* first-order MAML: the same without the second-order terms, {eq}`eq-fomaml`;
* Reptile: a surrogate whose gradient is ``theta - mean_i theta'_i``, {eq}`eq-reptile-surrogate`,
  minimised by plain SGD so the step is exactly {eq}`eq-reptile-update`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch.func import functional_call

from ..backbones import MAMLNet
from ..data import Episode, EpisodeSampler, FewShotDataset
from ..data.tasks import batched
from ..metrics import with_accuracy
from ..inner_loop import VECTORIZE, adapt, inner_lrs, meta_loss, params_of, reptile_loss
from ..recompute import lean_query_loss
from .base import EpisodicConfig, Method, check_finite


@dataclasses.dataclass
class MAMLConfig(EpisodicConfig):
    """MAML's inner loop and meta-batch; ``train_way`` is also the head's size (the test way).

    ``inner_lr`` / ``inner_steps`` are used in meta-training, ``test_inner_lr`` (default:
    ``inner_lr``) / ``test_steps`` when adapting to a new task (Finn et al.: 1 step of
    0.4 in training, 3 at test, for 5-way Omniglot). Rates may be lists, one per step.
    """

    inner_lr: float | list[float] = 0.4
    inner_steps: int = 1
    test_inner_lr: float | list[float] | None = None
    test_steps: int = 3
    meta_batch: int = 8
    first_order: bool = False
    vectorize: str = "auto"
    transductive: bool = True
    per_task_backward: bool = False
    recompute: bool = False
    steps: int = 300

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"vectorize": VECTORIZE}
    help: ClassVar[dict[str, str]] = {"inner_lr": "inner rate alpha, one value or one per step",
                                      "first_order": "drop the second-order terms (FOMAML)",
                                      "transductive": "test-time batch norm over the whole query set (Finn "
                                                      "et al.), else over the support and one query at a time",
                                      "meta_batch": "tasks per meta-update",
                                      "per_task_backward": "one backward per task: the same meta-gradient in "
                                                           "a fraction of the memory",
                                      "recompute": "one backward per task, rebuilding each inner step's graph "
                                                   "and the first block's maps in the backward pass: the same "
                                                   "meta-gradient in less memory still"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_batch < 1:
            raise ValueError(f"meta_batch must be >= 1 task, got {self.meta_batch}")
        if self.train_way < 2:
            raise ValueError(f"train_way={self.train_way}: a classifier needs at least 2 classes")
        inner_lrs(self.inner_lr, self.inner_steps)
        inner_lrs(self.test_lr, self.test_steps)

    @property
    def test_lr(self) -> float | list[float]:
        """The inner rate at test time (``test_inner_lr``, else ``inner_lr`` if it is one float)."""
        if self.test_inner_lr is not None:
            return self.test_inner_lr
        if isinstance(self.inner_lr, (int, float)):
            return self.inner_lr
        raise ValueError("inner_lr is a per-step list; give test_inner_lr for the test-time steps")


class MAML(Method):
    """Conv4 + a linear ``train_way`` head, meta-trained by MAML (``first_order``: FOMAML)."""

    name = "maml"
    Config = MAMLConfig
    precision = "float32"  # see recommended_precision
    channels_last = False  # no speed-up on the CPU, and less precise fused float32 batch norm
    grad_at_test = True  # predict fine-tunes on the support set

    def __init__(self, config: MAMLConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.net = MAMLNet(c.train_way, c.in_channels, c.hidden, c.image_size)

    def inner_rule(self, test: bool = False) -> dict[str, Any]:
        """The inner loop's rule as keywords of :func:`~fewshot_tutorial.inner_loop.adapt`.

        MAML's is plain SGD: ``n_steps`` and ``inner_lr`` (the test-time ones if ``test``).
        A method that learns the update (Meta-SGD, Meta-LSTM) returns an ``update`` rule
        instead and inherits the rest of this class unchanged.
        """
        c = self.config
        if test:
            return {"inner_lr": c.test_lr, "n_steps": c.test_steps}
        return {"inner_lr": c.inner_lr, "n_steps": c.inner_steps}

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[list[Episode]]:
        c = self.config
        return batched(EpisodeSampler(dataset, c.train_way, c.train_shot, c.train_query, seed=seed), c.meta_batch)

    def loss(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean query loss after adaptation over the meta-batch, {eq}`eq-maml-objective`."""
        c = self.config
        loss, preds = meta_loss(self.net, params_of(self.net), tasks, first_order=c.first_order,
                                vectorize=c.vectorize, **self.inner_rule())
        y = torch.stack([t.query_y for t in tasks])
        return with_accuracy(loss, preds.flatten(0, 1), y.flatten())

    def backward(self, tasks: Sequence[Episode]) -> tuple[torch.Tensor, dict[str, float]]:
        """With ``per_task_backward``: the meta-gradient of :meth:`loss`, one task at a time.

        The mean over ``T`` tasks is a sum of ``loss_t / T``; back-propagating each term as
        soon as it is computed frees that task's inner-loop graph before the next task
        builds its own, so at most one task's activations are alive instead of ``T``
        (``vectorize="vmap"`` needs all tasks at once and goes through :meth:`loss`).
        With ``recompute`` (where :meth:`recomputes`), each task goes through
        :func:`~fewshot_tutorial.recompute.lean_query_loss` instead: the same meta-gradient,
        with one inner step's graph alive at a time and the first block recomputed.
        """
        c = self.config
        if c.vectorize == "vmap" or not (c.per_task_backward or c.recompute):
            return super().backward(tasks)
        total, correct, count = 0.0, 0, 0
        params = params_of(self.net)
        rule = self.inner_rule()
        for t in tasks:
            if self.recomputes(t.query_x.device.type):
                loss, pred = lean_query_loss(self.net, params, t, **rule)
            else:
                loss, pred = meta_loss(self.net, params, [t], first_order=c.first_order, **rule)
            check_finite(loss)
            (loss / len(tasks)).backward()
            total = total + loss.detach() / len(tasks)
            if pred.device.type != "meta":
                correct += int((pred.argmax(-1) == t.query_y).sum())
                count += len(t.query_y)
        return total, ({"accuracy": correct / count} if count else {})

    def recomputes(self, device_type: str = "cpu") -> bool:
        """Whether :meth:`backward` takes :mod:`~fewshot_tutorial.recompute`'s path: ``recompute``
        set, second order, plain SGD in the inner loop (a learned rule stores its graph), and
        no autocast on ``device_type`` (the rebuilt graphs would run in another precision)."""
        c = self.config
        return (c.recompute and not c.first_order and c.vectorize != "vmap" and "inner_lr" in self.inner_rule()
                and not (torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)))

    def predict(self, episode: Episode) -> torch.Tensor:
        """Adapt a copy of ``theta`` on the support set (test steps and rate), classify the queries.

        With ``transductive`` (the default, as in Finn et al.'s evaluation) batch norm
        normalises the query set with its own statistics, so one query's prediction
        depends on the others; otherwise each query is classified in a batch with the
        support images only (Nichol et al.'s non-transductive setting).
        """
        if episode.n_way != self.config.train_way:
            raise ValueError(f"this model has a {self.config.train_way}-way head; evaluate it on "
                             f"{self.config.train_way}-way episodes, not {episode.n_way}-way")
        params = {k: p.detach() for k, p in self.net.named_parameters()}
        with torch.enable_grad():
            adapted = adapt(self.net, params, episode.support_x, episode.support_y, first_order=True,
                            **self.inner_rule(test=True))
        with torch.no_grad():
            if self.config.transductive:
                return functional_call(self.net, adapted, (episode.query_x,))
            return torch.cat([functional_call(self.net, adapted, (torch.cat([episode.support_x, q[None]]),))[-1:]
                              for q in episode.query_x])


@dataclasses.dataclass
class FOMAMLConfig(MAMLConfig):
    first_order: bool = True


class FOMAML(MAML):
    """First-order MAML: the inner gradients are constants, {eq}`eq-fomaml`."""

    name = "fomaml"
    Config = FOMAMLConfig


@dataclasses.dataclass
class ReptileConfig(MAMLConfig):
    """Reptile: ``lr`` is the outer step ``beta`` (Nichol et al.: 1, decayed linearly to 0)."""

    inner_lr: float | list[float] = 0.1
    inner_steps: int = 5
    inner_batch: int = 10
    test_steps: int = 10
    lr: float = 1.0
    steps: int = 150

    help: ClassVar[dict[str, str]] = {**MAMLConfig.help,
                                      "inner_batch": "images per inner step: successive mini-batches of the task"}


class Reptile(MAML):
    """Reptile: move ``theta`` towards the weights adapted to each task, {eq}`eq-reptile-update`."""

    name = "reptile"
    Config = ReptileConfig
    lr_schedule = "linear"  # to zero at the end of the budget, in steps or seconds

    def loss(self, tasks: Sequence[Episode]) -> torch.Tensor:
        """Reptile's surrogate {eq}`eq-reptile-surrogate`: its gradient is ``theta - mean_i theta'_i``."""
        c = self.config
        return reptile_loss(self.net, params_of(self.net), tasks, inner_lr=c.inner_lr, n_steps=c.inner_steps,
                            inner_batch=c.inner_batch)

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.param_groups(), lr=lr)  # plain SGD: exactly eq-reptile-update


def recommended_precision(precision: str = "auto") -> str:
    """MAML's precision: ``"auto"`` means float32 (an explicit dtype is respected).

    The adapted weights ``theta' = theta - alpha * g`` differ from ``theta`` by one small
    step, and under bfloat16 autocast every convolution sees them rounded to 8
    significant bits, a rounding as large as the step for many weights; the small
    Hessian correction is computed from the same rounded numbers. The chapter measures
    the error of the bf16 meta-gradient; so MAML trains in float32 unless asked.
    """
    return "float32" if precision == "auto" else precision
