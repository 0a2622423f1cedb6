"""Second-order MAML: peak memory and time of one meta-gradient against the number of inner steps.

Side by side in one process, on the same Conv4 classifier (``MAMLNet``, same initial
weights), the same meta-batch of 5-way 1-shot episodes with 15 queries and the same
threads, one *meta-iteration* (adapt on every task, query loss, backward to the initial
weights; the optimiser step is the same for all and left out) by:

* learn2learn 0.2.0, as its own examples use it (``maml.clone()``, ``adapt``, one
  ``backward`` per task, gradients divided by the number of tasks);
* ours, stored, all tasks at once: ``MAML().backward`` (one backward of the mean loss);
* ours, stored, one task at a time: ``MAML(per_task_backward=True)``;
* ours, recomputed: ``MAML(recompute=True)`` (:mod:`fewshot_tutorial.recompute`).

Every meta-gradient is asserted equal to learn2learn's (or, without it, to ours stored)
to a relative difference below 1e-5. Times are medians of interleaved rounds, so a busy
machine slows every variant alike; memory is the peak total size of the CPU tensors made
during one meta-iteration and alive at once (``peak_memory_mb``).

learn2learn is a peer, not a dependency: ``bash ../shared/peers/install-learn2learn.sh``.

Usage: ``python benchmarks/bench_maml_memory.py [--tasks 8] [--steps 1 5 10 20] [--rounds 3]``
Writes ``benchmarks/results/bench_maml_memory.json`` (read by the MAML chapter).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot_tutorial import MAML, EpisodeSampler, load_omniglot
from fewshot_tutorial.benchmarking import peak_memory_mb, seconds_per_call
from fewshot_tutorial.inner_loop import flatten
from fewshot_tutorial.training import provenance

OUT = Path(__file__).parent / "results" / "bench_maml_memory.json"
GOAL = {"memory_vs_learn2learn": 0.5, "time_vs_learn2learn": 1.3}
L2L = "learn2learn"
STORED, PER_TASK, RECOMPUTED = "ours, stored", "ours, stored, per task", "ours, recomputed"


def learn2learn_iteration(net: torch.nn.Module, tasks: list, alpha: float, k: int):
    """learn2learn's meta-iteration as its examples write it; ``None`` if it is not installed."""
    try:
        import learn2learn as l2l
    except ImportError:
        return None, None
    maml = l2l.algorithms.MAML(copy.deepcopy(net), lr=alpha, first_order=False)

    def run():
        maml.zero_grad()
        for t in tasks:
            learner = maml.clone()
            for _ in range(k):
                learner.adapt(F.cross_entropy(learner(t.support_x), t.support_y))
            F.cross_entropy(learner(t.query_x), t.query_y).backward()
        for p in maml.parameters():
            p.grad.mul_(1.0 / len(tasks))
    return run, maml


def implementations(tasks: list, k: int, alpha: float, dtype: torch.dtype) -> tuple[dict, dict]:
    """``({name: one meta-iteration}, {name: the module holding its gradients})``, same weights."""
    torch.manual_seed(0)
    methods = {STORED: MAML(inner_steps=k, inner_lr=alpha),
               PER_TASK: MAML(inner_steps=k, inner_lr=alpha, per_task_backward=True),
               RECOMPUTED: MAML(inner_steps=k, inner_lr=alpha, recompute=True)}
    for m in methods.values():
        m.load_state_dict(methods[STORED].state_dict())
        m.to(dtype)
    tasks = [dataclasses.replace(t, support_x=t.support_x.to(dtype), query_x=t.query_x.to(dtype)) for t in tasks]
    fns, modules = {}, dict(methods)
    l2l_run, l2l_module = learn2learn_iteration(methods[STORED].net, tasks, alpha, k)
    if l2l_run is not None:
        fns[L2L], modules[L2L] = l2l_run, l2l_module
    for name, m in methods.items():
        fns[name] = (lambda m=m: (m.zero_grad(), m.backward(tasks)))
    return fns, modules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_omniglot(split="background")
    tasks = list(EpisodeSampler(data, 5, 1, 15, seed=0, n_episodes=args.tasks))
    rows = {}
    for k in args.steps:
        alpha = 0.4 if k == 1 else 0.1
        rel = {}
        for dtype in (torch.float64, torch.float32):  # float64: the check; float32: what is measured
            fns, modules = implementations(tasks, k, alpha, dtype)
            grads = {}
            for name, fn in fns.items():
                fn()
                grads[name] = flatten({n.removeprefix("net.").removeprefix("module."): p.grad.clone()
                                       for n, p in modules[name].named_parameters()})
            ref = L2L if L2L in grads else STORED
            rel[str(dtype).removeprefix("torch.")] = {
                n: ((g - grads[ref]).norm() / grads[ref].norm()).item() for n, g in grads.items()}
        assert all(r < 1e-5 for r in rel["float64"].values()), rel
        memory = {n: peak_memory_mb(fn) for n, fn in fns.items()}
        seconds = seconds_per_call(fns, rounds=args.rounds)
        rows[k] = {"seconds": seconds, "memory_mb": memory, "relative_gradient_difference": rel,
                   "reference": ref}
        print(f"{k} inner step(s), {args.tasks} tasks:", flush=True)
        for n in fns:
            ratio = (f"  (memory x{memory[n] / memory[ref]:.2f}, time x{seconds[n] / seconds[ref]:.2f} "
                     f"of {ref})") if n != ref else ""
            print(f"  {n:24s} {memory[n]:7.1f} MB {seconds[n]:7.3f} s{ratio}; gradient vs {ref}: "
                  f"{rel['float64'][n]:.0e} (float64), {rel['float32'][n]:.0e} (float32)", flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "goal": GOAL, "tasks": args.tasks,
                               "episode": "5-way 1-shot, 15 queries per class",
                               "provenance": provenance("cpu", None, threads=torch.get_num_threads(),
                                                        script="benchmarks/bench_maml_memory.py")},
                              indent=1))
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
