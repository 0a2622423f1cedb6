"""Everything that differs between CPU, CUDA and MPS lives here.

* :func:`get_device` picks the accelerator (CUDA, then MPS, then CPU).
* :func:`autocast_dtype` picks mixed precision only where the hardware has it natively.
* :func:`use_channels_last` says whether convolutions prefer NHWC memory.
* :class:`Profile` / :func:`get_profile` size the experiments to the machine.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")
PROFILES = ("quick", "standard", "paper")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``prefer`` (or ``FEWSHOT_DEVICE``) if given, else CUDA, MPS, CPU."""
    prefer = prefer or os.environ.get("FEWSHOT_DEVICE")
    if prefer:
        return check_device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a device that exists on this machine, else a ``ValueError`` saying what does."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA GPU is available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here; use --device cpu")
    return device


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False  # not Linux: do not guess
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for plain float32.

    Args:
        device: where the model runs.
        precision: ``"auto"`` (bfloat16 on CPUs with native bf16 and on CUDA GPUs that
            support it, float16 on older CUDA GPUs, float32 elsewhere), or one of
            ``"float32"``, ``"bfloat16"``, ``"float16"`` to force it. Overridable with
            the ``FEWSHOT_PRECISION`` environment variable.
    """
    precision = os.environ.get("FEWSHOT_PRECISION", precision) if precision == "auto" else precision
    device = torch.device(device)
    named = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if precision in named:
        return named[precision]
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'float32', 'bfloat16' or 'float16', got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None  # MPS, meta and CPUs that would emulate bf16: float32


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """A ``torch.autocast`` context for ``device`` (a no-op when ``dtype`` is None)."""
    device = torch.device(device)
    enabled = dtype is not None and device.type in ("cpu", "cuda", "mps")
    return torch.autocast(device_type=device.type if enabled else "cpu", dtype=dtype, enabled=enabled)


def no_autocast(like: torch.Tensor | torch.device | str):
    """A context that turns autocast off on the device of ``like`` (a tensor or a device),
    for computations that must stay in float32 (distances, softmax denominators)."""
    dev = like.device if isinstance(like, torch.Tensor) else torch.device(like)
    kind = dev.type if dev.type in ("cpu", "cuda", "mps") else "cpu"
    return torch.autocast(device_type=kind, enabled=False)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (from autocast) to float32; anything else unchanged.

    The one place where embeddings and logits leave bfloat16/float16 before means,
    distances, softmaxes and losses, which need float32's range and digits.
    """
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def use_channels_last(device: torch.device | str) -> bool:
    """NHWC memory format helps convolutions on CPU and CUDA (not needed on MPS/meta)."""
    return torch.device(device).type in ("cpu", "cuda")


def for_inference(model: torch.nn.Module, device: torch.device | str,
                  channels_last: bool | str = "auto") -> torch.nn.Module:
    """``model`` in eval mode on ``device``, in channels-last memory if asked (``"auto"``:
    where that helps, :func:`use_channels_last`). Returns the same module."""
    device = torch.device(device)
    cl = use_channels_last(device) if channels_last == "auto" else bool(channels_last)
    fmt = torch.channels_last if cl else torch.contiguous_format
    return model.eval().to(device, memory_format=fmt)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Profile:
    """How big the experiments are.

    ``quick``: a 2-core CPU, a few minutes a chapter. ``standard``: one GPU,
    near-paper numbers. ``paper``: the papers' own protocols.
    """

    name: str

    def pick(self, quick: T, standard: T, paper: T | None = None) -> T:
        """The value for this profile (``paper`` falls back to ``standard``)."""
        if self.name == "quick":
            return quick
        if self.name == "paper" and paper is not None:
            return paper
        return standard

    @property
    def eval_episodes(self) -> int:
        """Evaluation episodes per setting (600 in most papers, 1000 for ours on a GPU)."""
        return self.pick(quick=300, standard=1000, paper=1000)


def get_profile(name: str | None = None, device: torch.device | str | None = None) -> Profile:
    """The profile named, else ``FEWSHOT_PROFILE``, else ``standard`` on a GPU, ``quick`` otherwise."""
    name = name or os.environ.get("FEWSHOT_PROFILE")
    if not name:
        dev = torch.device(device) if device is not None else get_device()
        name = "quick" if dev.type == "cpu" else "standard"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; set FEWSHOT_PROFILE to one of {', '.join(PROFILES)}")
    return Profile(name)


def cpu_threads(samples: int = 5, interval: float = 0.1) -> int:
    """Threads torch should use on this CPU: its cores less those other processes keep busy.

    torch sizes its thread team to the cores. When other processes keep those cores
    busy, each parallel operation waits for a team member to be scheduled, and loops of
    small operations (episodes, Conv4 steps) run 10-100 times slower: chapter cells
    seemed to hang. The busy cores are read from the number of runnable tasks in
    ``/proc/loadavg`` (Linux; the median of a few samples, less this process); elsewhere
    all cores are used. ``FEWSHOT_THREADS`` overrides.
    """
    import statistics
    import time

    if os.environ.get("FEWSHOT_THREADS"):
        return max(1, int(os.environ["FEWSHOT_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        counts = []
        for i in range(samples):
            if i:
                time.sleep(interval)
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
    except (OSError, ValueError, IndexError):
        return min(cores, torch.get_num_threads())
    busy = max(0, round(statistics.median(counts)) - 1)  # the reading thread is runnable too
    return max(1, min(cores - busy, torch.get_num_threads()))
