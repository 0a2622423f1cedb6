"""MAML (Finn et al. 2017), first-order MAML and Reptile (Nichol et al. 2018), functionally.

Everything here works on *parameter dicts* ``{name: tensor}`` and evaluates the model
with :func:`torch.func.functional_call`, so the model object is never mutated: the
inner loop produces new tensors ``theta'`` that stay connected to ``theta`` in the
autograd graph. A loss computed at ``theta'`` therefore back-propagates to ``theta``
through every inner step, Hessian-vector products included, unless ``first_order``
cuts that path.

The meta-step goes through the shared engine (:func:`fewshot_tutorial.training.train`
with :func:`~fewshot_tutorial.training.batched` meta-batches): our loss functions return
the meta-loss, and the engine does ``backward`` and the optimiser step. Reptile fits the
same mould with a surrogate loss whose gradient is ``theta - phi`` ({eq}`eq-reptile-surrogate`).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .backbones import Conv4
from .data import Episode, EpisodeSampler, FewShotDataset
from .evaluation import Predict
from .training import History, batched, train

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ALGORITHMS = ("maml", "fomaml", "reptile")
VECTORIZE = ("auto", "loop", "vmap")
# Measured by benchmarks/bench_maml.py on the 2-core CPU this book is tested on: a plain
# loop over tasks beats vmap for Conv4 there; vmap wins for tiny models (the sinusoid MLP).
DEFAULT_VECTORIZE = "loop"


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; half-precision logits (from autocast) are upcast to float32 first."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, y)


# ----------------------------------------------------------------------------- the model
class TaskBatchNorm2d(nn.BatchNorm2d):
    """Batch norm with the current batch's statistics only (no running statistics).

    Same parameters (``weight``, ``bias``) and values as
    ``nn.BatchNorm2d(track_running_stats=False)``, in one of two forms:

    * fused (default): ``F.batch_norm`` in training mode, one kernel forward and one
      backward, and a correct double backward;
    * ``composite = True``: written with ``mean``, ``pow`` and ``rsqrt``. Under
      :func:`torch.func.vmap` the fused op's batching rule gives wrong second-order
      gradients (pytorch/functorch#534; ``test_vmap_over_tasks_equals_the_loop`` catches
      it), so :func:`meta_loss` switches to this form for ``vectorize="vmap"``
      (:func:`composite_batch_norm`). It is several element-wise passes instead of one:
      on the 2-core CPU this book is tested on, moving the loop to the fused form cut
      the time of a meta-iteration by about a third.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, track_running_stats=False)
        self.composite = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.composite:
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = h.mean(dim=(0, 2, 3), keepdim=True)
        centred = h - mean
        var = centred.pow(2).mean(dim=(0, 2, 3), keepdim=True)
        out = centred * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(x.dtype)


def composite_batch_norm(model: nn.Module) -> nn.Module:
    """The same model with every :class:`TaskBatchNorm2d` in its composite (vmap-safe) form.

    A copy of the module objects only: parameters and buffers are shared, so
    ``functional_call`` on the copy with ``model``'s parameter dict is the same function.
    """
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    copy_ = copy.deepcopy(model, memo)
    for m in copy_.modules():
        if isinstance(m, TaskBatchNorm2d):
            m.composite = True
    return copy_


class MAMLNet(nn.Module):
    """Conv4 without running statistics plus a linear ``n_way`` head: Finn et al.'s classifier
    (which, on Omniglot, downsamples with strided convolutions instead of max-pooling).

    Batch norm always normalises with the statistics of the batch it sees
    (``track_running_stats=False``): running averages would be updated by every task's
    support set and so carry information from one task (and one inner step) to the next.

    Shapes:
        ``x: [B, C, H, W] -> logits [B, n_way]``
    """

    def __init__(self, n_way: int = 5, in_channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        if n_way < 2:
            raise ValueError(f"n_way={n_way}: a classifier needs at least 2 classes")
        self.backbone = Conv4(in_channels, hidden, track_running_stats=False)
        for block in self.backbone.encoder:  # conv -> BN -> ReLU -> pool: same names
            block[1] = TaskBatchNorm2d(hidden)
        self.head = nn.Linear(self.backbone.out_features(image_size), n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def params_of(model: nn.Module) -> Params:
    """The model's parameters as a dict (the same tensors: gradients flow to the model)."""
    return dict(model.named_parameters())


def flatten(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a parameter dict into one vector ``[P]`` (in the dict's order)."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a vector ``[P]`` back into a dict shaped like ``like``.

    Raises:
        ValueError: ``vector`` does not have as many entries as ``like`` holds.
    """
    total = sum(p.numel() for p in like.values())
    if vector.numel() != total:
        raise ValueError(f"vector has {vector.numel()} entries but the parameters hold {total}")
    out, i = {}, 0
    for k, p in like.items():
        out[k] = vector[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


# ----------------------------------------------------------------------------- the inner loop
def inner_lrs(inner_lr: float | Sequence[float], n_steps: int) -> list[float]:
    """One learning rate per inner step: ``inner_lr`` repeated, or a per-step list checked.

    Raises:
        ValueError: ``n_steps < 0``, a non-positive rate, or a list of the wrong length.
    """
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an int >= 0 (inner gradient steps), got {n_steps!r}")
    lrs = [float(inner_lr)] * n_steps if isinstance(inner_lr, (int, float)) else [float(a) for a in inner_lr]
    if len(lrs) != n_steps:
        raise ValueError(f"got {len(lrs)} per-step inner learning rates for n_steps={n_steps}; "
                         "give one float or exactly one rate per step")
    if any(a <= 0 for a in lrs):
        raise ValueError(f"inner learning rates must be positive, got {lrs}")
    return lrs


def inner_update(params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], inner_lr: float) -> Params:
    """One gradient step ``theta' = theta - alpha * g``, out of place.

    Implements {eq}`eq-maml-inner-step`.
    """
    return {k: p - inner_lr * grads[k] for k, p in params.items()}


def adapt(model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
          inner_lr: float | Sequence[float], n_steps: int, first_order: bool = False,
          loss_fn: LossFn = cross_entropy) -> Params:
    """Fine-tune ``params`` on one task's support set with ``n_steps`` gradient steps.

    Implements {eq}`eq-maml-inner-step` repeated ``n_steps`` times. With
    ``first_order=False`` a loss computed from the result back-propagates to ``params``
    through every step (the Hessian terms of {eq}`eq-maml-k-steps`); with
    ``first_order=True`` each inner gradient is a constant (first-order MAML,
    {eq}`eq-fomaml`). Works under :func:`torch.func.vmap`.

    Args:
        model: the architecture; only used through ``functional_call`` (never mutated).
        params: ``theta``, a dict of the model's parameter names to tensors.
        x: support inputs ``[n_way * n_shot, ...]``.
        y: support targets ``[n_way * n_shot]`` (labels) or ``[n_way * n_shot, ...]``.
        inner_lr: ``alpha``, one float or one per step.
        n_steps: inner gradient steps (0 returns ``params`` unchanged).
        first_order: drop the second-order terms.
        loss_fn: ``(predictions, y) -> scalar`` (default: cross-entropy).

    Returns:
        ``theta'``: a new dict with the same keys and shapes.
    """
    lrs = inner_lrs(inner_lr, n_steps)

    def support_loss(p: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (x,)), y)

    grad_fn = grad(support_loss)
    params = dict(params)
    for lr in lrs:
        if first_order:  # the gradient is evaluated at theta_j but treated as a constant
            grads = grad_fn({k: p.detach() for k, p in params.items()})
        else:
            grads = grad_fn(params)
        params = inner_update(params, grads, lr)
    return params


def query_loss(model: nn.Module, params: Mapping[str, torch.Tensor], episode: Episode, *,
               inner_lr: float | Sequence[float], n_steps: int, first_order: bool = False,
               loss_fn: LossFn = cross_entropy) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapt on the support set, then the query loss at ``theta'`` ({eq}`eq-maml-objective`).

    Returns:
        ``(loss, predictions)``: the scalar query loss and ``[n_way * n_query, ...]``
        predictions at the adapted parameters.
    """
    adapted = adapt(model, params, episode.support_x, episode.support_y, inner_lr=inner_lr,
                    n_steps=n_steps, first_order=first_order, loss_fn=loss_fn)
    pred = functional_call(model, adapted, (episode.query_x,))
    return loss_fn(pred, episode.query_y), pred


def stack_episodes(tasks: Sequence[Episode]) -> tuple[torch.Tensor, ...]:
    """``(support_x, support_y, query_x, query_y)``, each with a leading task axis ``[T, ...]``.

    Raises:
        ValueError: the tasks do not all have the same shapes (vmap needs that).
    """
    shapes = {(t.support_x.shape, t.query_x.shape) for t in tasks}
    if len(shapes) != 1:
        raise ValueError("vmap over tasks needs episodes of one shape (same way, shot and query); "
                         "use vectorize='loop' for mixed tasks")
    return tuple(torch.stack([getattr(t, a) for t in tasks])
                 for a in ("support_x", "support_y", "query_x", "query_y"))


def meta_loss(model: nn.Module, params: Mapping[str, torch.Tensor], tasks: Sequence[Episode], *,
              inner_lr: float | Sequence[float], n_steps: int, first_order: bool = False,
              loss_fn: LossFn = cross_entropy, vectorize: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query loss after adaptation over a meta-batch of tasks ({eq}`eq-maml-objective`).

    ``vectorize="loop"`` adapts one task after the other; ``"vmap"`` adapts all of them
    at once with :func:`torch.func.vmap`. Both give the same loss and meta-gradient
    (tested); ``"auto"`` picks :data:`DEFAULT_VECTORIZE`, the faster one for Conv4 here.

    Returns:
        ``(loss, predictions)``: scalar mean query loss and predictions ``[T, n_way * n_query, ...]``.
    """
    if not tasks:
        raise ValueError("empty meta-batch: give at least one task")
    if vectorize not in VECTORIZE:
        raise ValueError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")
    vectorize = DEFAULT_VECTORIZE if vectorize == "auto" else vectorize
    kw = dict(inner_lr=inner_lr, n_steps=n_steps, first_order=first_order, loss_fn=loss_fn)
    if vectorize == "loop":
        out = [query_loss(model, params, t, **kw) for t in tasks]
        return torch.stack([l for l, _ in out]).mean(), torch.stack([p for _, p in out])

    arch = composite_batch_norm(model)  # the fused batch norm is wrong under vmap (see TaskBatchNorm2d)

    def one_task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor):
        return query_loss(arch, params, Episode(sx, sy, qx, qy, n_way=1), **kw)

    losses, preds = vmap(one_task)(*stack_episodes(tasks))
    return losses.mean(), preds


# ----------------------------------------------------------------------------- Reptile
def reptile_surrogate(params: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """``0.5 * ||theta - mean_i phi_i||^2`` with ``phi`` held constant.

    Implements {eq}`eq-reptile-surrogate`: its gradient with respect to ``theta`` is
    ``theta - mean_i phi_i``, so one optimiser step of size ``epsilon`` (plain SGD) is
    Reptile's update ``theta + epsilon * (mean_i phi_i - theta)`` ({eq}`eq-reptile-update`).
    """
    if not adapted:
        raise ValueError("Reptile needs at least one adapted parameter dict")
    total = 0.0
    for k, theta in params.items():
        phi = torch.stack([a[k].detach() for a in adapted]).mean(0)
        total = total + 0.5 * (theta - phi).pow(2).sum()
    return total


def reptile_loss(model: nn.Module, params: Mapping[str, torch.Tensor], tasks: Sequence[Episode], *,
                 inner_lr: float | Sequence[float], n_steps: int, loss_fn: LossFn = cross_entropy) -> torch.Tensor:
    """Reptile's surrogate loss for a meta-batch: adapt (first order) on each task's data.

    Reptile does not split a task into support and query for meta-training: the inner
    loop trains on all of the episode's labelled images (support and query).
    """
    detached = {k: p.detach() for k, p in params.items()}
    adapted = []
    for t in tasks:
        x = torch.cat([t.support_x, t.query_x])
        y = torch.cat([t.support_y, t.query_y])
        adapted.append(adapt(model, detached, x, y, inner_lr=inner_lr, n_steps=n_steps,
                             first_order=True, loss_fn=loss_fn))
    return reptile_surrogate(params, adapted)


# ----------------------------------------------------------------------------- training
@dataclass
class MAMLConfig:
    """Everything needed to rebuild and re-run a MAML / FOMAML / Reptile model (JSON-able).

    ``inner_lr`` / ``train_steps`` are used in meta-training, ``test_inner_lr`` /
    ``test_steps`` when adapting to a new task (Finn et al.: 1 step of 0.4 in training,
    3 at test for 5-way Omniglot). Rates may be lists, one per step.
    """

    algorithm: str = "maml"
    n_way: int = 5
    hidden: int = 64
    in_channels: int = 1
    image_size: int = 28
    inner_lr: float | list[float] = 0.4
    train_steps: int = 1
    test_inner_lr: float | list[float] | None = None
    test_steps: int = 3
    meta_batch: int = 8
    vectorize: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.meta_batch < 1:
            raise ValueError(f"meta_batch must be >= 1 task, got {self.meta_batch}")
        inner_lrs(self.inner_lr, self.train_steps)
        inner_lrs(self.test_lr, self.test_steps)

    @property
    def test_lr(self) -> float | list[float]:
        """The inner rate at test time (``test_inner_lr``, else ``inner_lr`` if it is one float)."""
        if self.test_inner_lr is not None:
            return self.test_inner_lr
        if isinstance(self.inner_lr, (int, float)):
            return self.inner_lr
        raise ValueError("inner_lr is a per-step list; give test_inner_lr for the test-time steps")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_loss(model: nn.Module, config: MAMLConfig,
              loss_fn: LossFn = cross_entropy) -> Callable[[Sequence[Episode]], tuple[torch.Tensor, dict[str, float]]]:
    """The engine's ``loss_fn``: a meta-batch (list of episodes) -> (meta-loss, metrics).

    For MAML / FOMAML the meta-loss is the mean query loss after adaptation; for
    Reptile it is the surrogate of {eq}`eq-reptile-surrogate`.
    """
    def step(tasks: Sequence[Episode]) -> tuple[torch.Tensor, dict[str, float]]:
        params = params_of(model)
        if config.algorithm == "reptile":
            return reptile_loss(model, params, tasks, inner_lr=config.inner_lr, n_steps=config.train_steps,
                                loss_fn=loss_fn), {}
        loss, preds = meta_loss(model, params, tasks, inner_lr=config.inner_lr, n_steps=config.train_steps,
                                first_order=config.algorithm == "fomaml", loss_fn=loss_fn,
                                vectorize=config.vectorize)
        if preds.device.type == "meta" or loss_fn is not cross_entropy:
            return loss, {}
        y = torch.stack([t.query_y for t in tasks])
        return loss, {"accuracy": float((preds.detach().argmax(-1) == y).float().mean())}

    return step


def fit(model: nn.Module, dataset: FewShotDataset, config: MAMLConfig, *, n_shot: int = 1, n_query: int = 15,
        n_steps: int | None = 1000, max_seconds: float | None = None, lr: float | None = None,
        seed: int = 0, device: torch.device | str = "cpu", precision: str = "float32",
        channels_last: bool | str = False, progress: bool = True) -> History:
    """Meta-train ``model`` on episodes of ``dataset`` through the shared engine.

    Each engine step sees a meta-batch of ``config.meta_batch`` episodes. MAML and
    FOMAML use Adam (outer rate ``lr``, default 1e-3 as in Finn et al.); Reptile uses
    plain SGD so that the step is exactly {eq}`eq-reptile-update` (``lr`` = ``epsilon``,
    default 1.0 as in Nichol et al., decayed linearly to 0 over ``n_steps``).

    ``precision`` defaults to float32: see :func:`recommended_precision`. Memory stays
    contiguous by default (``channels_last=False``): on the CPU, channels-last gave MAML
    no speed-up (``benchmarks/bench_maml.py``), and its fused float32 batch norm moved
    the meta-gradient about 8e-4 (relative) from the float64 one, against 5e-6 contiguous.
    """
    if config.n_way > dataset.n_classes:
        raise ValueError(f"n_way={config.n_way} but the training split has only {dataset.n_classes} classes")
    sampler = EpisodeSampler(dataset, config.n_way, n_shot, n_query, seed=seed)
    schedule = "constant"
    if config.algorithm == "reptile":
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0 if lr is None else lr)
        schedule = "linear"  # to zero at the end of the budget, in steps or seconds
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if lr is None else lr)
    return train(model, make_loss(model, config), batched(sampler, config.meta_batch), n_steps=n_steps,
                 max_seconds=max_seconds, optimizer=optimizer, lr_schedule=schedule, device=device,
                 precision=precision, channels_last=channels_last, progress=progress,
                 desc=f"{config.algorithm} {config.n_way}-way {n_shot}-shot")


def recommended_precision(precision: str = "auto") -> str:
    """MAML's precision: ``"auto"`` means float32 (an explicit dtype is respected).

    The adapted weights ``theta' = theta - alpha * g`` differ from ``theta`` by one small
    step, and under bfloat16 autocast every convolution sees them rounded to 8
    significant bits, a rounding as large as the step for many weights; the small
    Hessian correction is computed from the same rounded numbers. The chapter measures it:
    on the CPU this book is tested on, the bf16 meta-gradient was off by about 16% of its
    norm (float32: 1e-4), for 20-30% less time. So MAML trains in float32 unless asked.
    """
    return "float32" if precision == "auto" else precision


def make_predict(model: nn.Module, config: MAMLConfig, device: torch.device | str | None = None,
                 loss_fn: LossFn = cross_entropy) -> Predict:
    """A ``predict(episode) -> logits [n_way * n_query, n_way]`` for :func:`evaluate`.

    Adapts a copy of the parameters on the support set with the *test* inner steps and
    rate, then classifies the query set. Batch norm uses the query batch's own
    statistics (transductive, as in Finn et al.'s evaluation).
    """
    if device is None:
        device = next(model.parameters()).device
    model.to(device)

    def predict(episode: Episode) -> torch.Tensor:
        episode = episode.to(device)
        params = {k: p.detach() for k, p in model.named_parameters()}
        with torch.enable_grad():
            adapted = adapt(model, params, episode.support_x, episode.support_y, inner_lr=config.test_lr,
                            n_steps=config.test_steps, first_order=True, loss_fn=loss_fn)
        with torch.no_grad():
            return functional_call(model, adapted, (episode.query_x,)).float()

    return predict


# ----------------------------------------------------------------------------- cost
def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Peak extra CPU memory (MB) held by tensors made while ``fn()`` runs.

    Every tensor operation (forward, backward, under ``vmap``) is seen through a
    ``TorchDispatchMode``: each new CPU storage an operation returns (not one of its
    inputs', so in-place ops and views add nothing) adds its size, and a storage counts
    down again once freed (a weak reference to it has expired). Workspaces internal to an
    operation are not seen. Unlike ``torch.profiler``, this starts no profiler: on a CUDA
    build of torch without a GPU the profiler probes the driver and writes to stderr.
    """
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live: dict[int, tuple[StorageWeakRef, int]] = {}  # storage -> (weak reference, bytes)
    level = peak = 0

    def storages(tree: Any) -> dict[int, Any]:
        out = {}
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                s = t.untyped_storage()
                out[s._cdata] = s
        return out

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal level, peak
            for key in [k for k, (ref, _) in live.items() if ref.expired()]:
                level -= live.pop(key)[1]  # freed since the last operation
            out = func(*args, **(kwargs or {}))
            inputs = storages((args, kwargs))
            for key, s in storages(out).items():
                if key not in inputs and key not in live and s.nbytes():
                    live[key] = (StorageWeakRef(s), s.nbytes())
                    level += s.nbytes()
            peak = max(peak, level)
            return out

    with Count():
        fn()
    return peak / 2**20


def seconds_per_call(fns: Mapping[str, Callable[[], Any]], rounds: int = 3) -> dict[str, float]:
    """Median wall time of each ``fn()`` over ``rounds``, run interleaved after one warm-up.

    Interleaving makes a busy machine slow every variant alike, so ratios stay fair.
    """
    import statistics
    import time

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- the CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """MAML's own flags for ``python -m fewshot_tutorial train maml``."""
    parser.add_argument("--algorithm", default="maml", choices=["maml", "reptile"],
                        help="MAML (add --first-order for FOMAML) or Reptile")
    parser.add_argument("--first-order", action="store_true", help="first-order MAML (no Hessian terms)")
    parser.add_argument("--inner-lr", type=float, nargs="+", default=None,
                        help="inner rate alpha, one value or one per step (default 0.4; Reptile 0.1)")
    parser.add_argument("--inner-steps", type=int, default=None, help="inner steps in training (MAML 1, Reptile 5)")
    parser.add_argument("--test-inner-lr", type=float, nargs="+", default=None)
    parser.add_argument("--test-steps", type=int, default=None, help="inner steps at test time (MAML 3, Reptile 10)")
    parser.add_argument("--meta-batch", type=int, default=8, help="tasks per meta-update")
    parser.add_argument("--vectorize", default="auto", choices=list(VECTORIZE))


def _one_or_list(v: list[float] | None) -> float | list[float] | None:
    return v if v is None or len(v) > 1 else v[0]


def train_from_args(args: argparse.Namespace, dataset: FewShotDataset, device: torch.device,
                    profile: Any) -> tuple[MAMLNet, History, dict[str, Any]]:
    """Train MAML / FOMAML / Reptile as the CLI asks; returns ``(model, history, config)``."""
    reptile = args.algorithm == "reptile"
    algorithm = "reptile" if reptile else ("fomaml" if args.first_order else "maml")
    inner_lr = _one_or_list(args.inner_lr) or (0.1 if reptile else 0.4)
    config = MAMLConfig(algorithm=algorithm, n_way=args.way, image_size=args.image_size, inner_lr=inner_lr,
                        train_steps=args.inner_steps or (5 if reptile else 1),
                        test_inner_lr=_one_or_list(args.test_inner_lr),
                        test_steps=args.test_steps or (10 if reptile else 3),
                        meta_batch=args.meta_batch, vectorize=args.vectorize)
    steps = args.steps if args.steps is not None else (
        None if args.seconds is not None else profile.pick(quick=300, standard=20000, paper=60000))
    model = MAMLNet(config.n_way, hidden=config.hidden, image_size=args.image_size)
    precision = recommended_precision(args.precision)
    hist = fit(model, dataset, config, n_shot=args.shot, n_query=args.query, n_steps=steps,
               max_seconds=args.seconds, lr=args.lr, seed=args.seed, device=device, precision=precision)
    return model, hist, {**config.as_dict(), "precision": precision, "steps": hist.steps}


def predictor_from_checkpoint(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                              device: torch.device | str) -> Predict:
    """Rebuild the model a checkpoint describes and return its ``predict``."""
    fields = {k: config[k] for k in MAMLConfig.__dataclass_fields__ if k in config}
    cfg = MAMLConfig(**fields)
    model = MAMLNet(cfg.n_way, cfg.in_channels, cfg.hidden, cfg.image_size)
    model.load_state_dict(dict(state_dict))
    return make_predict(model.to(device), cfg, device)
