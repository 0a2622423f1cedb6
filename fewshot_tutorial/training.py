"""The one training loop: :func:`fit` trains any :class:`~fewshot_tutorial.methods.Method`.

A method says what it trains on, what it minimises and which parameters move; this
loop does the rest: device placement, channels-last memory, mixed precision, the
optimiser and its schedule, a budget in steps or seconds, a progress bar, a loss
history and a provenance record. :func:`train` runs the same loop for any module and
loss function.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .data import Episode, FewShotDataset
from .data.tasks import batched  # noqa: F401  (re-exported: meta-batches of episodes)
from .device import autocast, autocast_dtype, use_channels_last
from .methods.base import LossOutput, Method

#: Learning-rate multipliers as a function of the fraction of the budget used, in [0, 1].
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda f: 1.0,
    "cosine": lambda f: 0.5 * (1.0 + math.cos(math.pi * f)),
    "linear": lambda f: 1.0 - f,
}


def budget_fraction(step: int, seconds: float, n_steps: int | None, max_seconds: float | None) -> float:
    """How much of the budget is spent: the larger of ``step / n_steps`` and ``seconds / max_seconds``.

    This is what lets a learning-rate schedule reach its end on time whether the budget
    is counted in steps or in seconds (the number of steps a time budget allows is not
    known in advance). Clipped to ``[0, 1]``.
    """
    fraction = 0.0
    if n_steps:
        fraction = step / n_steps
    if max_seconds:
        fraction = max(fraction, seconds / max_seconds)
    return min(max(fraction, 0.0), 1.0)


def to_device(batch: Any, device: torch.device | str, channels_last: bool = False) -> Any:
    """Move a batch (tensor, object with ``.to``, or nested tuple/list/dict) to ``device``.

    Floating 4-D tensors (images) are put in channels-last memory when asked.
    """
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    if isinstance(batch, Episode):
        return batch.to(device, channels_last=channels_last)
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


def provenance(device: torch.device | str, precision: torch.dtype | None, **extra: Any) -> dict[str, Any]:
    """Where and how a result was obtained: device, precision, versions, date."""
    device = torch.device(device)
    name = platform.processor() or platform.machine()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    return {
        "device": str(device),
        "hardware": name,
        "precision": str(precision).replace("torch.", "") if precision else "float32",
        "torch": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


@dataclass
class History:
    """What a training run did: per-step losses and metrics, time, and provenance."""

    losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.losses)

    def smoothed(self, window: int = 50) -> list[float]:
        """Running mean of the loss over ``window`` steps (for plots)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.losses):
            acc += v
            if i >= window:
                acc -= self.losses[i - window]
            out.append(acc / min(i + 1, window))
        return out


_ANNOUNCED: set[tuple[str, str, bool]] = set()


def announce(device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> None:
    """Say once per process what the engine chose on its own (mixed precision, memory format)."""
    key = (str(device), str(dtype), channels_last)
    if key in _ANNOUNCED or device.type == "meta":
        return
    _ANNOUNCED.add(key)
    if dtype is not None:
        print(f"[fewshot_tutorial] training on {device} with {str(dtype).replace('torch.', '')} autocast "
              f"(native on this hardware; precision='float32' gives exact float32 math)"
              + (", channels-last memory" if channels_last else ""))
    elif channels_last:
        print(f"[fewshot_tutorial] training on {device} in float32 with channels-last memory")


def fit(
    method: Method,
    data: FewShotDataset | Iterable[Any],
    *,
    n_steps: int | None = None,
    max_seconds: float | None = None,
    lr: float | None = None,
    lr_schedule: str | None = None,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    channels_last: bool | str | None = None,
    seed: int = 0,
    grad_clip: float | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    desc: str | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> History:
    """Train ``method`` on ``data``: the one training loop of the package.

    Args:
        method: any :class:`~fewshot_tutorial.methods.Method` (moved to ``device``).
        data: a :class:`FewShotDataset` (the method draws its batches from it with
            ``method.batches(data, seed)``) or an iterable of batches.
        n_steps: stop after this many optimiser steps; max_seconds: or after this much
            wall time (whichever comes first). Neither: ``method.config.steps``.
        lr: the optimiser's rate (default ``method.config.lr``).
        lr_schedule: a schedule over the budget (see :data:`LR_SCHEDULES`): the rate at
            each step is ``lr * LR_SCHEDULES[lr_schedule](budget_fraction(...))``, so
            ``"cosine"`` reaches zero at the end of the budget, in steps or in seconds
            (default: the method's, usually ``"constant"``).
        device: where to train.
        precision: ``"auto"`` (mixed precision where the hardware has it natively),
            ``"float32"``, ``"bfloat16"`` or ``"float16"`` (default: the method's).
        channels_last: image memory format (default: the method's; ``"auto"``: CPU/CUDA).
        seed: seed of the training batches.
        grad_clip: clip the global gradient norm to this value.
        progress: show a progress bar (and say once what the engine chose).
        callback: called as ``callback(step, loss)`` after every step.
        augment: distort every training image, e.g.
            :class:`~fewshot_tutorial.augment.RandomAffine` (see
            :func:`~fewshot_tutorial.augment.augment_batch` for the batches it applies to).

    Returns:
        :class:`History` with losses, metrics, seconds and provenance.
    """
    from tqdm.auto import tqdm

    from .augment import augment_batch

    if n_steps is None and max_seconds is None:
        n_steps = method.config.steps
    for name, v in (("n_steps", n_steps), ("max_seconds", max_seconds)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    lr_schedule = lr_schedule or method.lr_schedule
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {lr_schedule!r}")
    device = torch.device(device)
    dtype = autocast_dtype(device, precision or method.precision)
    cl = channels_last if channels_last is not None else method.channels_last
    cl = use_channels_last(device) if cl == "auto" else bool(cl)
    method.to(device)
    if cl:
        method.to(memory_format=torch.channels_last)
    method.train()
    optimizer = method.optimizer(method.config.lr if lr is None else lr)
    scheduler = method.scheduler(optimizer)
    if scheduler is not None and lr_schedule != "constant":
        raise ValueError("the method has its own scheduler; leave lr_schedule at 'constant'")
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    batches = method.batches(data, seed) if isinstance(data, FewShotDataset) else data
    hist = History(provenance=provenance(device, dtype, method=method.name, config=method.config.as_dict(),
                                         channels_last=cl, n_steps=n_steps, max_seconds=max_seconds,
                                         lr_schedule=lr_schedule, seed=seed,
                                         augment=None if augment is None else repr(augment)))
    if progress:
        announce(device, dtype, cl)
    # one refresh a second at most: a notebook kernel drops messages beyond ~1000 queued
    # ones (ZMQ's high-water mark), which can include the "cell finished" one
    bar = tqdm(total=n_steps, disable=not progress, desc=desc or method.name or "training", leave=False,
               mininterval=1.0)
    start = time.perf_counter()
    step = 0
    for batch in batches:
        if n_steps is not None and step >= n_steps:
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        batch = to_device(batch, device, cl)
        if augment is not None:
            batch = augment_batch(batch, augment)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss, metrics = method.backward(batch)
        value = float(loss) if device.type != "meta" else float("nan")
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        if lr_schedule != "constant":
            factor = LR_SCHEDULES[lr_schedule](budget_fraction(step, time.perf_counter() - start, n_steps, max_seconds))
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        hist.losses.append(value)
        for k, v in metrics.items():
            hist.metrics.setdefault(k, []).append(float(v))
        step += 1
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(hist.losses[-20:]) / 20:.3f}", refresh=False)
        if callback is not None:
            callback(step, value)
    bar.close()
    hist.seconds = time.perf_counter() - start
    hist.provenance["steps"] = step
    hist.provenance["seconds"] = round(hist.seconds, 2)
    return hist


class _ModuleAndLoss(Method):
    """Any module with a loss function, trained by :func:`train` through :func:`fit`."""

    name = "module"

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any], LossOutput], optimizer: Any,
                 scheduler: Any) -> None:
        super().__init__()
        self.model, self._loss_fn, self._optimizer, self._scheduler = model, loss_fn, optimizer, scheduler

    def loss(self, batch: Any) -> LossOutput:
        return self._loss_fn(batch)

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        return self._optimizer if self._optimizer is not None else super().optimizer(lr)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return self._scheduler


def train(model: nn.Module, loss_fn: Callable[[Any], LossOutput], batches: Iterable[Any], *,
          n_steps: int | None = None, max_seconds: float | None = None,
          optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, scheduler: Any = None,
          precision: str = "auto", channels_last: bool | str = "auto", desc: str = "training",
          **engine: Any) -> History:
    """Train any ``model`` by minimising ``loss_fn(batch)`` over ``batches`` with :func:`fit`.

    For experiments outside the method classes (the sinusoid and quadratic demos of the
    MAML chapter, a student's own model). ``optimizer`` defaults to Adam over
    ``model.parameters()``; the other arguments are :func:`fit`'s.
    """
    if n_steps is None and max_seconds is None:
        raise ValueError("give a budget: n_steps and/or max_seconds")
    return fit(_ModuleAndLoss(model, loss_fn, optimizer, scheduler), batches, n_steps=n_steps,
               max_seconds=max_seconds, lr=lr, precision=precision, channels_last=channels_last,
               desc=desc, **engine)


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split ``seq`` into consecutive pieces of ``size`` (the last may be shorter)."""
    return [seq[i : i + size] for i in range(0, len(seq), size)]
