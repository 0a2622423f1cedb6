"""End-to-end ProtoNet training speed: fewshot_tutorial vs easyfsl, in one process.

Both sides train the same Conv4 on the same in-memory Omniglot background images with
Adam and the same episodes shape; what differs is the pipeline:

* ours: ``EpisodeSampler`` (tensor indexing) + ``fewshot_tutorial.training.train`` with
  its defaults (channels-last memory and bfloat16 autocast where the CPU has it natively),
  as ``fewshot_tutorial.fit`` runs it; and, to separate the two effects, the same
  pipeline forced to float32 without channels-last;
* easyfsl: ``PrototypicalNetworks`` with its ``TaskSampler`` + ``DataLoader``
  (``episodic_collate_fn``, ``num_workers=0``) over a dataset that serves the same
  images, and the training step of easyfsl's own example (``process_support_set``, then
  ``model(query_images)``).

Runs are interleaved (ours, easyfsl, ours, ...) and the best repetition of each is kept,
so load from other processes on a shared machine penalises both alike. Prints episodes/s
and the ratio; writes ``benchmarks/results/protonet_easyfsl.json`` with provenance.

Usage: ``python benchmarks/bench_protonet_easyfsl.py [--way 5 --shot 5 --query 15 --steps 40 --reps 3]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from fewshot_tutorial import Conv4, ProtoNet, fit, load_omniglot
from fewshot_tutorial.device import autocast_dtype, use_channels_last
from fewshot_tutorial.training import provenance

RESULTS = Path(__file__).resolve().parent / "results"
PATCH_NOTE = ("easyfsl 1.5.0's TaskSampler calls Sampler.__init__(data_source=None), which this torch "
              "rejects; the benchmark lets Sampler.__init__ accept (and ignore) that argument while the "
              "TaskSampler is built, in this process only.")


class InMemoryOmniglot(Dataset):
    """The same images as ours, in easyfsl's dataset interface: ``(image [1, H, W], label)``."""

    def __init__(self, images: torch.Tensor) -> None:  # images: [n_classes, n_per_class, 1, H, W]
        self.x = images.reshape(-1, *images.shape[2:])
        self.labels = torch.arange(images.shape[0]).repeat_interleave(images.shape[1]).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]

    def get_labels(self) -> list[int]:
        return self.labels


def make_task_sampler(dataset, n_way, n_shot, n_query, n_tasks):
    """easyfsl's TaskSampler, with the torch-compatibility patch described in PATCH_NOTE."""
    from easyfsl.samplers import TaskSampler

    had_own = "__init__" in Sampler.__dict__
    original = Sampler.__dict__.get("__init__")
    Sampler.__init__ = lambda self, data_source=None: None  # type: ignore[method-assign]
    try:
        return TaskSampler(dataset, n_way=n_way, n_shot=n_shot, n_query=n_query, n_tasks=n_tasks)
    finally:
        if had_own:
            Sampler.__init__ = original  # type: ignore[method-assign]
        else:
            del Sampler.__init__


def run_easyfsl(images, n_way, n_shot, n_query, steps, warmup, seed) -> float:
    """Episodes/s of easyfsl's training loop (float32, default memory format)."""
    from easyfsl.methods import PrototypicalNetworks

    torch.manual_seed(seed)
    dataset = InMemoryOmniglot(images)
    sampler = make_task_sampler(dataset, n_way, n_shot, n_query, warmup + steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0, collate_fn=sampler.episodic_collate_fn)
    model = PrototypicalNetworks(Conv4())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = None
    for i, (support_images, support_labels, query_images, query_labels, _) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad()
        model.process_support_set(support_images, support_labels)
        loss = loss_fn(model(query_images), query_labels)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def run_ours(dataset, n_way, n_shot, n_query, steps, warmup, seed, precision="auto", channels_last="auto") -> float:
    """Episodes/s of ``fit`` (the engine) with the given precision / memory format."""
    torch.manual_seed(seed)
    model = ProtoNet(train_way=n_way, train_shot=n_shot, train_query=n_query)
    kw = dict(device="cpu", precision=precision, channels_last=channels_last, progress=False)
    fit(model, dataset, n_steps=warmup, seed=seed, **kw)
    hist = fit(model, dataset, n_steps=steps, seed=seed + 1, **kw)
    return hist.steps / hist.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--way", type=int, default=5)
    ap.add_argument("--shot", type=int, default=5)
    ap.add_argument("--query", type=int, default=15)
    ap.add_argument("--steps", type=int, default=40, help="timed episodes per repetition")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--root", default=None)
    ap.add_argument("--out", default=str(RESULTS / "protonet_easyfsl.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import easyfsl

    print(f"note: {PATCH_NOTE}")
    data = load_omniglot(args.root, split="background")
    task = (args.way, args.shot, args.query)
    best = {"ours": 0.0, "ours_float32": 0.0, "easyfsl": 0.0}
    for rep in range(args.reps):
        runs = {
            "ours": lambda: run_ours(data, *task, args.steps, args.warmup, rep),
            "easyfsl": lambda: run_easyfsl(data.images, *task, args.steps, args.warmup, rep),
            "ours_float32": lambda: run_ours(data, *task, args.steps, args.warmup, rep,
                                             precision="float32", channels_last=False),
        }
        for name, run in runs.items():
            eps = run()
            best[name] = max(best[name], eps)
            print(f"rep {rep + 1}/{args.reps}  {name:13s} {eps:6.2f} episodes/s", flush=True)

    dtype = autocast_dtype("cpu", "auto")
    ratio = best["ours"] / best["easyfsl"]
    ratio_fp32 = best["ours_float32"] / best["easyfsl"]
    print(f"\n{args.way}-way {args.shot}-shot {args.query}-query, Conv4, Adam, one process, "
          f"{torch.get_num_threads()} threads, best of {args.reps}:")
    print(f"  fewshot_tutorial (engine defaults: {str(dtype).replace('torch.', '') if dtype else 'float32'}, "
          f"channels_last={use_channels_last('cpu')}): {best['ours']:6.2f} episodes/s")
    print(f"  fewshot_tutorial (float32, contiguous):      {best['ours_float32']:6.2f} episodes/s")
    print(f"  easyfsl {easyfsl.__version__ if hasattr(easyfsl, '__version__') else ''} "
          f"PrototypicalNetworks + TaskSampler: {best['easyfsl']:6.2f} episodes/s")
    print(f"  ratio ours / easyfsl: {ratio:.2f}x (goal >= 2x); float32 pipeline alone: {ratio_fp32:.2f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "protonet training episodes/s, fewshot_tutorial vs easyfsl",
        "task": {"n_way": args.way, "n_shot": args.shot, "n_query": args.query, "image_size": 28},
        "steps_per_rep": args.steps, "warmup": args.warmup, "reps": args.reps, "threads": torch.get_num_threads(),
        "episodes_per_s": {k: round(v, 3) for k, v in best.items()},
        "ratio": round(ratio, 3), "ratio_float32_pipeline": round(ratio_fp32, 3), "goal_ratio": 2.0,
        "note": PATCH_NOTE,
        "provenance": provenance("cpu", dtype, channels_last=use_channels_last("cpu"),
                                 easyfsl=getattr(easyfsl, "__version__", "1.5.0")),
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
