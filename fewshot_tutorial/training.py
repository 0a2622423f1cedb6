"""The one training loop every method uses.

A method supplies a ``loss_fn(batch) -> loss`` (or ``(loss, metrics)``) and a source of
batches (episodes, pairs, or a list of episodes for a meta-batch); this loop does the
rest: device placement, channels-last memory, mixed precision, the optimiser step, a
budget in steps or seconds, a progress bar, a loss history and a provenance record.
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

from .data import Episode
from .device import autocast, autocast_dtype, use_channels_last

LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]

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


def train(
    model: nn.Module,
    loss_fn: Callable[[Any], LossOutput],
    batches: Iterable[Any],
    *,
    n_steps: int | None = None,
    max_seconds: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    scheduler: Any = None,
    lr_schedule: str = "constant",
    device: torch.device | str = "cpu",
    precision: str = "auto",
    channels_last: bool | str = "auto",
    grad_clip: float | None = None,
    progress: bool = True,
    desc: str = "training",
    callback: Callable[[int, float], None] | None = None,
) -> History:
    """Train ``model`` by minimising ``loss_fn`` over ``batches``.

    Args:
        model: the module whose parameters are optimised (moved to ``device``).
        loss_fn: ``batch -> loss`` or ``batch -> (loss, {"accuracy": ...})``; the batch
            arrives on ``device``. It runs under autocast when mixed precision is on.
        batches: an iterable of batches (e.g. an :class:`EpisodeSampler`).
        n_steps: stop after this many optimiser steps.
        max_seconds: or stop after this much wall time (whichever comes first).
        optimizer: default ``Adam(model.parameters(), lr)``.
        scheduler: a ``torch.optim`` scheduler, stepped once per step if given.
        lr_schedule: or a schedule over the budget (see :data:`LR_SCHEDULES`): the
            rate at each step is the optimiser's initial rate times
            ``LR_SCHEDULES[lr_schedule](budget_fraction(...))``, so ``"cosine"`` reaches
            zero at the end of the budget, in steps or in seconds.
        device: where to train.
        precision: ``"auto"`` or a dtype name; see :func:`~fewshot_tutorial.device.autocast_dtype`.
        channels_last: ``"auto"`` (on CPU/CUDA) or a bool.
        grad_clip: clip the global gradient norm to this value.
        progress: show a tqdm bar.
        callback: called as ``callback(step, loss)`` after every step.

    Returns:
        :class:`History` with losses, metrics, seconds and provenance.
    """
    from tqdm.auto import tqdm

    if n_steps is None and max_seconds is None:
        raise ValueError("give a budget: n_steps and/or max_seconds")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {lr_schedule!r}")
    if scheduler is not None and lr_schedule != "constant":
        raise ValueError("give either a torch scheduler or an lr_schedule, not both")
    device = torch.device(device)
    dtype = autocast_dtype(device, precision)
    cl = use_channels_last(device) if channels_last == "auto" else bool(channels_last)
    model.to(device)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    lr_factor = LR_SCHEDULES[lr_schedule]
    hist = History(provenance=provenance(device, dtype, channels_last=cl, n_steps=n_steps,
                                         max_seconds=max_seconds, lr_schedule=lr_schedule))
    # one refresh a second at most: a notebook kernel drops messages beyond ~1000 queued
    # ones (ZMQ's high-water mark), which can include the "cell finished" one
    bar = tqdm(total=n_steps, disable=not progress, desc=desc, leave=False, mininterval=1.0)
    start = time.perf_counter()
    step = 0
    for batch in batches:
        if n_steps is not None and step >= n_steps:
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        batch = to_device(batch, device, cl)
        with autocast(device, dtype):
            out = loss_fn(batch)
        loss, metrics = (out if isinstance(out, tuple) else (out, {}))
        value = float(loss.detach()) if device.type != "meta" else float("nan")
        if device.type != "meta" and not math.isfinite(value):
            raise FloatingPointError(
                f"loss became {value} at step {step}; the weights were not updated with it. "
                "Lower the learning rate or try precision='float32'."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if lr_schedule != "constant":
            factor = lr_factor(budget_fraction(step, time.perf_counter() - start, n_steps, max_seconds))
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


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split ``seq`` into consecutive pieces of ``size`` (the last may be shorter)."""
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def batched(batches: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Group an iterable of episodes into lists of ``size`` (a meta-batch of tasks)."""
    group: list[Any] = []
    for b in batches:
        group.append(b)
        if len(group) == size:
            yield group
            group = []
