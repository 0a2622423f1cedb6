"""The functional inner loop of MAML, first-order MAML and Reptile, with a pluggable update rule.

Everything works on *parameter dicts* ``{name: tensor}`` and evaluates the model with
:func:`torch.func.functional_call`, so the model object is never mutated: the inner
loop produces new tensors ``theta'`` that stay connected to ``theta`` in the autograd
graph. A loss at ``theta'`` therefore back-propagates to ``theta`` through every inner
step, Hessian-vector products included, unless ``first_order`` cuts that path.

An *update rule* maps ``(params, grads, step) -> new params``. :func:`sgd` (the default)
is {eq}`eq-maml-inner-step`; a rule with learned per-parameter rates (Meta-SGD) plugs
into the same :func:`adapt`. A rule that also needs the support loss and carries a state
from one step to the next (an LSTM that writes the update, Meta-LSTM) fills in the
richer :class:`StatefulUpdateRule` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from .backbones import composite_batch_norm
from .data import Episode
from .losses import cross_entropy

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
UpdateRule = Callable[[Params, Params, int], Params]
VECTORIZE = ("auto", "loop", "vmap")
# Measured by benchmarks/bench_maml.py on the 2-core CPU this book is tested on: a plain
# loop over tasks beats vmap for Conv4 there; vmap wins for tiny models (the sinusoid MLP).
DEFAULT_VECTORIZE = "loop"


@runtime_checkable
class StatefulUpdateRule(Protocol):
    """An update rule that sees the support loss and keeps a state across the inner steps.

    :func:`adapt` calls ``state = rule.init_state(params)`` once per task, then at every
    step ``params, state = rule.step(params, grads, loss, step, state)``, where ``loss``
    is the support loss ``[]`` at the parameters the gradients were taken at (a constant
    with ``first_order=True``, like the gradients).
    """

    def init_state(self, params: Mapping[str, torch.Tensor]) -> Any: ...

    def step(self, params: Params, grads: Params, loss: torch.Tensor, step: int,
             state: Any) -> tuple[Params, Any]: ...


def params_of(model: nn.Module) -> Params:
    """The model's parameters as a dict (the same tensors: gradients flow to the model)."""
    return dict(model.named_parameters())


def flatten(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a parameter dict into one vector ``[P]`` (in the dict's order)."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a vector ``[P]`` back into a dict shaped like ``like``."""
    total = sum(p.numel() for p in like.values())
    if vector.numel() != total:
        raise ValueError(f"vector has {vector.numel()} entries but the parameters hold {total}")
    out, i = {}, 0
    for k, p in like.items():
        out[k] = vector[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


def inner_lrs(inner_lr: float | Sequence[float], n_steps: int) -> list[float]:
    """One learning rate per inner step: ``inner_lr`` repeated, or a per-step list checked."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an int >= 0 (inner gradient steps), got {n_steps!r}")
    one = isinstance(inner_lr, (int, float)) and not isinstance(inner_lr, bool)
    lrs = [float(inner_lr)] * n_steps if one else [float(a) for a in inner_lr]
    if len(lrs) != n_steps:
        raise ValueError(f"got {len(lrs)} per-step inner learning rates for n_steps={n_steps}; "
                         "give one float or exactly one rate per step")
    if not all(math.isfinite(a) and a > 0 for a in lrs):
        raise ValueError(f"inner_lr must be positive and finite, got {lrs}")
    return lrs


def inner_update(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor],
                 inner_lr: float) -> Params:
    """One gradient step ``theta' = theta - alpha * g``, out of place. Implements {eq}`eq-maml-inner-step`."""
    return {k: p - inner_lr * grads[k] for k, p in params.items()}


def sgd(inner_lr: float | Sequence[float], n_steps: int) -> UpdateRule:
    """The plain gradient-descent update rule, one rate for all steps or one per step."""
    lrs = inner_lrs(inner_lr, n_steps)
    return lambda params, grads, step: inner_update(params, grads, lrs[step])


def mini_batches(n: int, batch_size: int | None, n_steps: int) -> list[slice | list[int]]:
    """Rows of the data for each inner step: all of them, or successive mini-batches of ``batch_size``.

    Step ``j`` takes rows ``j * b .. (j + 1) * b - 1`` (mod ``n``), so successive steps see
    different examples, and the data are cycled through when ``n_steps * b > n``.
    """
    if batch_size is None or batch_size >= n:
        return [slice(None)] * n_steps
    if batch_size < 1:
        raise ValueError(f"inner_batch must be >= 1, got {batch_size}")
    return [[(j * batch_size + i) % n for i in range(batch_size)] for j in range(n_steps)]


def adapt(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_steps: int,
    inner_lr: float | Sequence[float] | None = None,
    update: UpdateRule | StatefulUpdateRule | None = None,
    first_order: bool = False,
    loss_fn: LossFn = cross_entropy,
    inner_batch: int | None = None,
) -> Params:
    """Fine-tune ``params`` on one task's support set with ``n_steps`` steps of ``update``.

    Implements {eq}`eq-maml-inner-step` repeated ``n_steps`` times. With
    ``first_order=False`` a loss computed from the result back-propagates to ``params``
    through every step (the Hessian terms of {eq}`eq-maml-k-steps`); with
    ``first_order=True`` each inner gradient is a constant (first-order MAML,
    {eq}`eq-fomaml`). Works under :func:`torch.func.vmap`.

    Args:
        model: the architecture; only used through ``functional_call`` (never mutated).
        params: ``theta``, a dict of the model's parameter names to tensors.
        x: support inputs ``[n_way * n_shot, ...]``; y: their targets ``[n_way * n_shot, ...]``.
        n_steps: inner steps (0 returns ``params`` unchanged).
        inner_lr: ``alpha`` for the default rule :func:`sgd`, one float or one per step.
        update: or any update rule ``(params, grads, step) -> params``, or a
            :class:`StatefulUpdateRule`.
        first_order: drop the second-order terms.
        loss_fn: ``(predictions, y) -> scalar`` (default: cross-entropy).
        inner_batch: step on successive mini-batches of this many rows (:func:`mini_batches`)
            instead of all of ``x`` at every step, as Reptile does.

    Returns:
        ``theta'``: a new dict with the same keys and shapes.
    """
    if (inner_lr is None) == (update is None):
        raise ValueError("give exactly one of inner_lr (plain SGD) or update (an update rule)")
    rule = update if update is not None else sgd(inner_lr, n_steps)
    stateful = isinstance(rule, StatefulUpdateRule)
    support_loss = lambda p, xb, yb: loss_fn(functional_call(model, p, (xb,)), yb)
    grad_fn = grad_and_value(support_loss) if stateful else grad(support_loss)
    params = dict(params)
    state = rule.init_state(params) if stateful else None
    for step, rows in enumerate(mini_batches(len(x), inner_batch, n_steps)):
        at = {k: p.detach() for k, p in params.items()} if first_order else params
        if stateful:
            grads, loss = grad_fn(at, x[rows], y[rows])
            params, state = rule.step(params, grads, loss, step, state)
        else:
            params = rule(params, grad_fn(at, x[rows], y[rows]), step)
    return params


def query_loss(model: nn.Module, params: Mapping[str, torch.Tensor], episode: Episode, *,
               first_order: bool = False, loss_fn: LossFn = cross_entropy,
               **rule: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapt on the support set, then the query loss at ``theta'`` ({eq}`eq-maml-objective`).

    ``rule``: ``n_steps`` and ``inner_lr`` or ``update``, as for :func:`adapt`.

    Returns:
        ``(loss [], predictions [n_way * n_query, ...])`` at the adapted parameters.
    """
    adapted = adapt(model, params, episode.support_x, episode.support_y, first_order=first_order,
                    loss_fn=loss_fn, **rule)
    pred = functional_call(model, adapted, (episode.query_x,))
    return loss_fn(pred, episode.query_y), pred


def stack_episodes(tasks: Sequence[Episode]) -> tuple[torch.Tensor, ...]:
    """``(support_x, support_y, query_x, query_y)``, each with a leading task axis ``[T, ...]``."""
    if len({(t.support_x.shape, t.query_x.shape) for t in tasks}) != 1:
        raise ValueError("vmap over tasks needs episodes of one shape (same way, shot and query); "
                         "use vectorize='loop' for mixed tasks")
    return tuple(torch.stack([getattr(t, a) for t in tasks])
                 for a in ("support_x", "support_y", "query_x", "query_y"))


def meta_loss(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    tasks: Sequence[Episode],
    *,
    first_order: bool = False,
    loss_fn: LossFn = cross_entropy,
    vectorize: str = "auto",
    **rule: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query loss after adaptation over a meta-batch of tasks ({eq}`eq-maml-objective`).

    ``vectorize="loop"`` adapts one task after the other; ``"vmap"`` all at once with
    :func:`torch.func.vmap`. Both give the same loss and meta-gradient (tested);
    ``"auto"`` picks :data:`DEFAULT_VECTORIZE`. ``rule``: as for :func:`adapt`.

    Returns:
        ``(loss [], predictions [T, n_way * n_query, ...])``.
    """
    if not tasks:
        raise ValueError("empty meta-batch: give at least one task")
    if vectorize not in VECTORIZE:
        raise ValueError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")
    kw = dict(first_order=first_order, loss_fn=loss_fn, **rule)
    if (DEFAULT_VECTORIZE if vectorize == "auto" else vectorize) == "loop":
        out = [query_loss(model, params, t, **kw) for t in tasks]
        return torch.stack([l for l, _ in out]).mean(), torch.stack([p for _, p in out])
    arch = composite_batch_norm(model)  # the fused batch norm is wrong under vmap

    def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
        return query_loss(arch, params, Episode(sx, sy, qx, qy, n_way=1), **kw)

    losses, preds = vmap(one_task)(*stack_episodes(tasks))
    return losses.mean(), preds


def reptile_surrogate(
    params: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]]
) -> torch.Tensor:
    """``0.5 * ||theta - mean_i theta'_i||^2`` with the adapted ``theta'_i`` held constant.

    Implements {eq}`eq-reptile-surrogate`: its gradient is ``theta - mean_i theta'_i``, so one
    plain SGD step of size ``beta`` (the outer rate ``lr``) is Reptile's update {eq}`eq-reptile-update`.
    """
    if not adapted:
        raise ValueError("Reptile needs at least one adapted parameter dict")
    total = 0.0
    for k, theta in params.items():
        mean_adapted = torch.stack([a[k].detach() for a in adapted]).mean(0)
        total = total + 0.5 * (theta - mean_adapted).pow(2).sum()
    return total


def reptile_loss(model: nn.Module, params: Mapping[str, torch.Tensor], tasks: Sequence[Episode], *,
                 loss_fn: LossFn = cross_entropy, **rule: object) -> torch.Tensor:
    """Reptile's surrogate loss for a meta-batch: adapt (first order) on each task's data.

    Reptile does not split a task into support and query for meta-training: the inner
    loop trains on all of the episode's labelled images, in successive mini-batches when
    ``rule`` has an ``inner_batch`` (Nichol et al.; the images are taken round-robin over
    the classes, so every mini-batch mixes them). ``rule``: as for :func:`adapt`.
    """
    detached = {k: p.detach() for k, p in params.items()}
    adapted = []
    for t in tasks:
        x, y = torch.cat([t.support_x, t.query_x]), torch.cat([t.support_y, t.query_y])
        if rule.get("inner_batch") and len(y) % t.n_way == 0:  # class-interleaved: 0, 1, .., n_way - 1, 0, ..
            order = torch.argsort(y, stable=True).reshape(t.n_way, -1).T.flatten()
            x, y = x[order], y[order]
        adapted.append(adapt(model, detached, x, y, first_order=True, loss_fn=loss_fn, **rule))
    return reptile_surrogate(params, adapted)
