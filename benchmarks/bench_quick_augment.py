"""Does the book's quick ProtoNet recipe gain from random affine distortions?

Issue 19 asks the book's recipes to take what the Lake benchmark teaches: augmentation
belongs in every chapter's training if it helps there too. This script answers it for
chapter 4's ``quick`` recipe (Conv4 ProtoNet, 1,600 episodes of 20-way 1-shot with 5
queries per class, Adam from 4e-3 with a cosine decay: about two minutes here), which
chapters 7 and 8 reuse. It trains the recipe twice from the same seed on the same
episodes, once as it is and once with every training image distorted by
:class:`~fewshot_tutorial.augment.RandomAffine`, on the background alphabets except
``--holdout`` held out (the same six as ``bench_lake.py --holdout 6``), and scores both
on the held-out alphabets only: random 5-way 1-shot episodes (the chapters' headline
setting) and within-alphabet, across-drawer 20-way 1-shot episodes (Lake's protocol).
The evaluation alphabets and Lake's runs are not read: the choice is made where the
book's numbers are not measured.

Prints both accuracies and the paired differences (distorted minus plain, the same
episodes) with their 95 % intervals; writes ``benchmarks/results/quick_augment.json``.

Usage: ``python benchmarks/bench_quick_augment.py [--steps 1600] [--holdout 6]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from bench_lake import split_alphabets
from fewshot_tutorial import ProtoNet, evaluate, fit, load_omniglot
from fewshot_tutorial.augment import RandomAffine
from fewshot_tutorial.device import get_device
from fewshot_tutorial.evaluation import paired_difference

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1600, help="training episodes (chapter 4's quick profile)")
    ap.add_argument("--holdout", type=int, default=6, help="background alphabets held out for scoring")
    ap.add_argument("--episodes", type=int, default=400, help="test episodes per setting")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.holdout < 1:
        raise SystemExit("--holdout must be at least 1: the choice is scored on held-out alphabets")

    device = get_device()
    background = load_omniglot(split="background")
    train_idx, held_idx, held = split_alphabets(background, args.holdout, args.seed)
    train_data, held_data = background.subset(train_idx), background.subset(held_idx)
    print(f"train: {train_data.n_classes} characters; held out: {', '.join(held)} ({len(held_idx)} characters); "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}", flush=True)
    scores, runs = {}, {}
    for name, augment in (("plain", None), ("distorted", RandomAffine(seed=args.seed))):
        torch.manual_seed(args.seed)
        model = ProtoNet(distance="euclidean", train_way=20, train_shot=1, train_query=5, lr=4e-3)
        start = time.perf_counter()
        hist = fit(model, train_data, n_steps=args.steps, seed=args.seed, lr_schedule="cosine", device=device,
                   augment=augment, progress=False)
        seconds = time.perf_counter() - start
        model.eval()
        scores[name] = {
            "5-way 1-shot": evaluate(model, held_data, 5, 1, 15, n_episodes=args.episodes, seed=args.seed + 1,
                                     device=device, progress=False),
            "within-alphabet 20-way 1-shot": evaluate(model, held_data, 20, 1, 1, n_episodes=args.episodes,
                                                      seed=args.seed + 1, device=device, within_alphabet=True,
                                                      progress=False),
        }
        runs[name] = {"seconds": round(seconds, 1), "augment": repr(augment), "provenance": hist.provenance}
        print(f"{name:9s} trained in {seconds:.0f} s: " + "; ".join(
            f"{s} {100 * r.accuracy:.2f} ± {100 * r.ci95:.2f} %" for s, r in scores[name].items()), flush=True)
    diffs = {s: paired_difference(scores["distorted"][s], scores["plain"][s]) for s in scores["plain"]}
    for s, d in diffs.items():
        print(f"distorted minus plain, {s}: {100 * d.accuracy:+.2f} ± {100 * d.ci95:.2f} points (paired)")
    out = {
        "setup": {"steps": args.steps, "train_way": 20, "train_shot": 1, "train_query": 5, "lr": 4e-3,
                  "schedule": "cosine", "held_out_alphabets": held, "train_characters": train_data.n_classes,
                  "test_episodes": args.episodes, "threads": torch.get_num_threads()},
        "training": runs,
        "results": {n: {s: r.as_dict() for s, r in res.items()} for n, res in scores.items()},
        "distorted_minus_plain": {s: d.as_dict() for s, d in diffs.items()},
        "provenance": {**{k: hist.provenance[k] for k in ("device", "hardware", "torch", "date", "precision")},
                       "script": "benchmarks/bench_quick_augment.py"},
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "quick_augment.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
