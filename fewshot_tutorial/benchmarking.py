"""Measuring cost: peak memory of a call and interleaved wall time (for chapters and benchmarks)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Peak extra CPU memory (MB) the PyTorch allocator holds while ``fn()`` runs.

    Read from the profiler's allocation events (a running sum of allocations and frees
    in time order), so it counts tensors only, and only those made during the call.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are charged to the op that made them, frees appear as "[memory]" events
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return peak / 2**20


def seconds_per_call(fns: Mapping[str, Callable[[], Any]], rounds: int = 3) -> dict[str, float]:
    """Median wall time of each ``fn()`` over ``rounds``, run interleaved after one warm-up.

    Interleaving makes a busy machine slow every variant alike, so ratios stay fair.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
