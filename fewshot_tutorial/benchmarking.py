"""Measuring cost: peak memory of a call and interleaved wall time (for chapters and benchmarks)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


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
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


RESULTS_URL = "https://raw.githubusercontent.com/fewshot-tutorial/fewshot-tutorial/main/benchmarks/results"


def benchmark_result(name: str) -> dict[str, Any] | None:
    """What a benchmark script saved as ``benchmarks/results/<name>.json``, for a chapter to
    show (read, not retyped): from the repository beside the package, else fetched from
    the published repository; ``None`` if neither has it (the chapter then says how to run it).
    """
    import json
    import urllib.error
    import urllib.request
    from pathlib import Path

    local = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / f"{name}.json"
    if local.is_file():
        return json.loads(local.read_text())
    try:
        with urllib.request.urlopen(f"{RESULTS_URL}/{name}.json", timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
