"""Second-order MAML: ours (loop and vmap) against learn2learn and higher, in one process.

Same Conv4 classifier (``fewshot_tutorial.backbones.MAMLNet``, same initial weights), same
meta-batch of episodes (5-way 1-shot, 15 queries, 8 tasks, one inner step of 0.4),
float32, same threads. One *meta-iteration* = adapt on every task's support set, query
loss, and ``backward`` to the initial weights (the optimiser step is the same for all
and left out). The implementations are timed in interleaved rounds (median of rounds)
so that a busy machine slows them alike. Peak memory is the largest total size of the
CPU tensors made during one meta-iteration and alive at once (``peak_memory_mb``).

Also: our first-order time, the second-order / first-order ratio, Reptile, and a check
that all four second-order implementations give the same meta-gradient.

Peers (not dependencies of the package): learn2learn 0.2.0
(``bash ../shared/peers/install-learn2learn.sh``) and higher 0.2.1 (``pip install higher``).

Usage: ``python benchmarks/bench_maml.py [--tasks 8] [--rounds 5] [--threads N]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot_tutorial import EpisodeSampler, load_omniglot
from fewshot_tutorial.backbones import MAMLNet
from fewshot_tutorial.benchmarking import peak_memory_mb
from fewshot_tutorial.inner_loop import flatten, meta_loss, params_of, reptile_loss
from fewshot_tutorial.training import provenance

OUT = Path(__file__).parent / "results" / "bench_maml.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--shot", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    alpha, n_way = 0.4, 5
    data = load_omniglot(split="background")
    tasks = list(EpisodeSampler(data, n_way, args.shot, 15, seed=0, n_episodes=args.tasks))
    model = MAMLNet(n_way)
    params = params_of(model)

    # the engine's CPU default: NHWC ("channels_last") weights and images
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    tasks_cl = [t.to("cpu", channels_last=True) for t in tasks]

    def zero(m=model):
        for p in m.parameters():
            p.grad = None

    def ours(vectorize: str, first_order: bool = False, m=model, tk=tasks):
        def run():
            zero(m)
            loss, _ = meta_loss(m, params_of(m), tk, inner_lr=alpha, n_steps=1, first_order=first_order,
                                vectorize=vectorize)
            loss.backward()
        return run

    def reptile():
        zero()
        reptile_loss(model, params, tasks, inner_lr=0.1, n_steps=1).backward()

    impls = {"ours (loop)": ours("loop"), "ours (vmap)": ours("vmap"),
             "ours (loop, channels_last)": ours("loop", m=model_cl, tk=tasks_cl)}
    try:
        import learn2learn as l2l

        l2l_maml = l2l.algorithms.MAML(model, lr=alpha, first_order=False)

        def learn2learn():
            zero()
            total = 0.0
            for t in tasks:
                learner = l2l_maml.clone()
                learner.adapt(F.cross_entropy(learner(t.support_x), t.support_y))
                total = total + F.cross_entropy(learner(t.query_x), t.query_y)
            (total / len(tasks)).backward()

        impls["learn2learn MAML"] = learn2learn
    except ImportError:
        print("learn2learn not installed: skipped (bash ../shared/peers/install-learn2learn.sh)")
    try:
        import higher

        inner_opt = torch.optim.SGD(model.parameters(), lr=alpha)

        def higher_ctx(m=model, tk=tasks, opt=inner_opt):
            def run():
                zero(m)
                total = 0.0
                for t in tk:
                    with higher.innerloop_ctx(m, opt, copy_initial_weights=False) as (fmodel, diffopt):
                        diffopt.step(F.cross_entropy(fmodel(t.support_x), t.support_y))
                        total = total + F.cross_entropy(fmodel(t.query_x), t.query_y)
                (total / len(tk)).backward()
            return run

        impls["higher innerloop_ctx"] = higher_ctx()
        impls["higher (channels_last)"] = higher_ctx(model_cl, tasks_cl,
                                                     torch.optim.SGD(model_cl.parameters(), lr=alpha))
    except ImportError:
        print("higher not installed: skipped (pip install higher)")
    extra = {"ours first-order (loop)": ours("loop", True), "ours first-order (vmap)": ours("vmap", True),
             "ours Reptile (1 step)": reptile}

    # same meta-gradient?
    grads = {}
    for name, fn in impls.items():
        fn()
        m = model_cl if "channels_last" in name else model
        grads[name] = flatten({n: p.grad.clone() for n, p in m.named_parameters()})
    ref = grads["ours (loop)"]
    agree = {name: float((g - ref).abs().max() / ref.abs().max()) for name, g in grads.items()}

    everything = {**impls, **extra}
    times: dict[str, list[float]] = {k: [] for k in everything}
    for name, fn in everything.items():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in everything.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    memory = {name: peak_memory_mb(fn) for name, fn in everything.items()}

    sec = {k: statistics.median(v) for k, v in times.items()}
    ratios: dict[str, float] = {}
    print(f"\nsecond-order MAML, Conv4, {args.tasks} tasks of 5-way {args.shot}-shot 15-query, 1 inner step, "
          f"float32, {torch.get_num_threads()} threads, median of {args.rounds} rounds")
    print(f"{'implementation':28s} {'s/meta-iter':>11s} {'meta-iter/s':>11s} {'peak MB':>8s} {'rel. grad diff':>14s}")
    for k in everything:
        d = f"{agree[k]:.1e}" if k in agree else ""
        print(f"{k:28s} {sec[k]:11.3f} {1 / sec[k]:11.2f} {memory[k]:8.0f} {d:>14s}")
    ours_best = min(sec["ours (loop)"], sec["ours (vmap)"])
    ratios["engine default (channels_last) speed-up over contiguous, ours"] = (
        sec["ours (loop)"] / sec["ours (loop, channels_last)"])
    print()
    for peer in ("learn2learn MAML", "higher innerloop_ctx"):
        if peer in sec:
            ratios[f"speed-up of ours (best) over {peer}"] = sec[peer] / ours_best
            ratios[f"memory of {peer} / ours (loop)"] = memory[peer] / memory["ours (loop)"]
    ratios["vmap time / loop time"] = sec["ours (vmap)"] / sec["ours (loop)"]
    ratios["second-order / first-order time (loop)"] = sec["ours (loop)"] / sec["ours first-order (loop)"]
    ratios["second-order / first-order memory (loop)"] = memory["ours (loop)"] / memory["ours first-order (loop)"]
    for k, v in ratios.items():
        print(f"{k:48s} {v:6.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {"seconds_per_meta_iteration": sec, "all_times": times, "peak_memory_mb": memory,
              "relative_gradient_difference": agree, "ratios": ratios,
              "setup": {"tasks": args.tasks, "n_way": n_way, "n_shot": args.shot, "n_query": 15,
                        "inner_steps": 1, "inner_lr": alpha, "rounds": args.rounds,
                        "threads": torch.get_num_threads(), "load_average": os.getloadavg()},
              "provenance": provenance("cpu", None, script="benchmarks/bench_maml.py")}
    OUT.write_text(json.dumps(record, indent=1))
    print(f"\nsaved {OUT}")


if __name__ == "__main__":
    main()
