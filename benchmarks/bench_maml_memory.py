"""Second-order MAML: peak memory and time of one meta-gradient, all tasks at once vs one backward per task.

Same model (``MAML``, Conv4, same initial weights), same meta-batch of 5-way 1-shot episodes
with 15 queries, for several numbers of inner steps. "batched" is ``loss(tasks).backward()``
(every task's inner-loop graph alive at the backward); "per task" is
``MAML(per_task_backward=True).backward`` (one backward per task, so one task's graph at a time). The two
meta-gradients are asserted equal (relative difference < 1e-5).

Usage: ``python benchmarks/bench_maml_memory.py [--tasks 8] [--steps 1 5] [--rounds 3] [--threads N]``
Writes ``benchmarks/results/bench_maml_memory.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fewshot_tutorial import MAML, EpisodeSampler, load_omniglot
from fewshot_tutorial.benchmarking import peak_memory_mb, seconds_per_call
from fewshot_tutorial.inner_loop import flatten
from fewshot_tutorial.training import provenance

OUT = Path(__file__).parent / "results" / "bench_maml_memory.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_omniglot(split="background")
    tasks = list(EpisodeSampler(data, 5, 1, 15, seed=0, n_episodes=args.tasks))
    rows = {}
    for k in args.steps:
        torch.manual_seed(0)
        method = MAML(inner_steps=k, inner_lr=0.4 if k == 1 else 0.1, per_task_backward=True)

        def batched():
            method.zero_grad()
            method.loss(tasks)[0].backward()

        def per_task():
            method.zero_grad()
            method.backward(tasks)

        grads = {}
        for name, fn in (("batched", batched), ("per task", per_task)):
            fn()
            grads[name] = flatten({n: p.grad.clone() for n, p in method.named_parameters()})
        rel = ((grads["batched"] - grads["per task"]).norm() / grads["batched"].norm()).item()
        assert rel < 1e-5, rel
        seconds = seconds_per_call({"batched": batched, "per task": per_task}, rounds=args.rounds)
        memory = {"batched": peak_memory_mb(batched), "per task": peak_memory_mb(per_task)}
        rows[k] = {"seconds": seconds, "memory_mb": memory, "relative_gradient_difference": rel}
        print(f"{k} inner step(s), {args.tasks} tasks: batched {memory['batched']:.0f} MB {seconds['batched']:.3f} s;"
              f" per task {memory['per task']:.0f} MB {seconds['per task']:.3f} s "
              f"(memory x{memory['per task'] / memory['batched']:.2f}, time x{seconds['per task'] / seconds['batched']:.2f})",
              flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "provenance": provenance("cpu", None, threads=torch.get_num_threads(),
                                                                       script="benchmarks/bench_maml_memory.py")},
                              indent=1))
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
