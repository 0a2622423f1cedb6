"""Lake et al.'s one-shot challenge on a 2-core CPU: a ProtoNet trained in a fixed budget.

The challenge (Lake et al. 2015): 20 runs of 20-way one-shot classification within one
alphabet of the evaluation set, training and test drawings by different people; people
make 4.5 % errors, Bayesian program learning 3.3 %, Koch et al.'s Siamese network 8.0 %.
Models may train on the 30 background alphabets only.

Two modes, so that no choice is tuned on Lake's runs:

- ``--holdout N`` (tuning): trains on the background alphabets except N held out (drawn
  with a fixed seed among those with at least 20 characters) and reports the error on
  seeded within-alphabet, across-drawer 20-way 1-shot episodes of the held-out alphabets
  (:class:`~fewshot_tutorial.data.WithinAlphabetSampler`), for each test-time
  augmentation setting in ``--tta``. Lake's runs are not read.
- ``--holdout 0`` (final, the default): trains on all 30 background alphabets and scores
  Lake's 400 trials once, for each ``--tta`` setting given (choose it by a tuning run).

Training: the package's ProtoNet (Conv4) on ``--way``-way 1-shot episodes through
``fit`` for ``--minutes`` of wall time with a cosine schedule, mixed precision and
channels-last where the engine chooses them, every training image distorted by
:class:`~fewshot_tutorial.augment.RandomAffine` unless ``--no-augment``. Test-time
augmentation ``--tta K`` embeds each image and K distorted copies and averages the
embeddings (:func:`~fewshot_tutorial.augment.tta_predict`). ``--within-alphabet F``
draws a fraction F of the training episodes within one alphabet, support and queries by
different drawers, as Lake's runs are (:class:`~fewshot_tutorial.data.WithinAlphabetSampler`).
``--no-last-pool`` drops Conv4's last max-pool (a 576-dimensional embedding, not 64).

Writes ``benchmarks/results/lake_<final|holdout>[_<tag>].json`` with provenance. Usage:
``python benchmarks/bench_lake.py [--minutes 30] [--holdout 0] [--tta 0 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import torch

from fewshot_tutorial import ProtoNet, evaluate, fit, load_lake_runs, load_omniglot, score_lake
from fewshot_tutorial.augment import RandomAffine, tta_predict
from fewshot_tutorial.data import EpisodeSampler
from fewshot_tutorial.data.within_alphabet import WithinAlphabetSampler, alphabet_of
from fewshot_tutorial.device import get_device
from fewshot_tutorial.lake import LAKE_PUBLISHED

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.045  # humans (Lake et al. 2015); the stretch goal is BPL's 3.3 %


def split_alphabets(dataset, n_holdout: int, seed: int = 0):
    """``(train classes, held-out classes, held-out alphabet names)`` of the background set."""
    by_alphabet: dict[str, list[int]] = {}
    for i, name in enumerate(dataset.class_names):
        by_alphabet.setdefault(alphabet_of(name), []).append(i)
    eligible = sorted(a for a, cls in by_alphabet.items() if len(cls) >= 20)
    held = sorted(random.Random(seed).sample(eligible, n_holdout)) if n_holdout else []
    train = [i for a, cls in by_alphabet.items() if a not in held for i in cls]
    return sorted(train), sorted(i for a in held for i in by_alphabet[a]), held


def mixed_episodes(dataset, n_way: int, n_query: int, fraction: float, seed: int):
    """Endless 1-shot episodes: each within one alphabet with probability ``fraction``
    (:class:`WithinAlphabetSampler`; alphabets with fewer than ``n_way`` characters are
    never drawn there), else from all classes (:class:`EpisodeSampler`)."""
    within = iter(WithinAlphabetSampler(dataset, n_way, 1, n_query, seed=seed))
    anywhere = iter(EpisodeSampler(dataset, n_way, 1, n_query, seed=seed + 1))
    coin = random.Random(seed)
    while True:
        yield next(within) if coin.random() < fraction else next(anywhere)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget, wall time")
    ap.add_argument("--holdout", type=int, default=0, help="background alphabets held out for tuning (0: final)")
    ap.add_argument("--way", type=int, default=20, help="classes per training episode")
    ap.add_argument("--query", type=int, default=5, help="queries per class in a training episode")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam's initial rate (cosine schedule)")
    ap.add_argument("--no-augment", action="store_true", help="train on the images as they are")
    ap.add_argument("--within-alphabet", type=float, default=0.0, metavar="FRACTION",
                    help="this fraction of the training episodes is drawn within one alphabet, support and "
                         "queries by different drawers, as Lake's runs are (the rest from all classes)")
    ap.add_argument("--no-last-pool", action="store_true",
                    help="drop Conv4's last max-pool: a 64 x 3 x 3 = 576-dimensional embedding instead of 64")
    ap.add_argument("--tta", type=int, nargs="+", default=[0], help="distorted copies averaged at test time")
    ap.add_argument("--val-episodes", type=int, default=400, help="within-alphabet tuning episodes (20 trials)")
    ap.add_argument("--tag", default="", help="suffix of the result file's name, lake_<mode>_<tag>.json "
                    "(default: from the training options that differ from the plain run)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not 0 <= args.within_alphabet <= 1:
        raise SystemExit(f"--within-alphabet is a fraction between 0 and 1, got {args.within_alphabet}")
    # a run with other training options gets its own file: the README quotes the plain ones
    options = [f"within{round(100 * args.within_alphabet)}"] if args.within_alphabet else []
    options += (["nolastpool"] if args.no_last_pool else []) + (["noaugment"] if args.no_augment else [])
    tag = args.tag or "_".join(options)

    device = get_device()
    background = load_omniglot(split="background")
    train_idx, held_idx, held = split_alphabets(background, args.holdout, args.seed)
    train_data = background.subset(train_idx)
    print(f"train: {train_data.n_classes} characters of {30 - len(held)} background alphabets"
          + (f"; held out: {', '.join(held)} ({len(held_idx)} characters)" if held else "")
          + f"; device {device}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}", flush=True)
    torch.manual_seed(args.seed)
    model = ProtoNet(train_way=args.way, train_shot=1, train_query=args.query)
    if args.no_last_pool:  # the last block's 3x3 map, flattened, is the embedding
        model.backbone.encoder[-1][-1] = torch.nn.Identity()
    if args.within_alphabet:
        model.batches = lambda dataset, seed: mixed_episodes(dataset, args.way, args.query, args.within_alphabet,
                                                             seed)
    augment = None if args.no_augment else RandomAffine(seed=args.seed)
    hist = fit(model, train_data, max_seconds=60 * args.minutes, lr=args.lr, lr_schedule="cosine", seed=args.seed,
               device=device, augment=augment, progress=False)
    print(f"trained {hist.steps} episodes of {args.way}-way 1-shot in {hist.seconds / 60:.1f} min "
          f"({hist.provenance['precision']}, channels_last={hist.provenance['channels_last']}, "
          f"augment={augment is not None}, within_alphabet={args.within_alphabet}, "
          f"last_pool={not args.no_last_pool})", flush=True)
    model.eval()
    results = {}
    if held:
        val_data = background.subset(held_idx)
        for k in args.tta:
            predict = model if k == 0 else tta_predict(model, k, device)
            r = evaluate(predict, val_data, 20, 1, 1, n_episodes=args.val_episodes, seed=args.seed + 1,
                         device=device, within_alphabet=True, progress=False)
            results[f"tta={k}"] = {"error": 1 - r.accuracy, "ci95": r.ci95, "trials": 20 * r.n,
                                   "per_episode_accuracy": list(r.per_episode)}
            print(f"held-out within-alphabet 20-way 1-shot, TTA {k}: error {100 * (1 - r.accuracy):.2f}% "
                  f"± {100 * r.ci95:.2f} ({20 * r.n} trials)", flush=True)
    else:
        runs = load_lake_runs()
        for k in args.tta:
            predict = model if k == 0 else tta_predict(model, k, device)
            r = score_lake(predict, runs, device=device)
            results[f"tta={k}"] = r.as_dict()
            met = "met" if r.binomial_ci95[1] < GOAL else ("reached" if r.error <= GOAL else "not met")
            print(f"Lake's 20 runs, TTA {k}: {r}; goal <= {100 * GOAL:.1f}%: {met}", flush=True)
        print("published: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in LAKE_PUBLISHED.items()))
    out = {
        "mode": "holdout" if held else "final",
        "setup": {"minutes": args.minutes, "train_way": args.way, "train_shot": 1, "train_query": args.query,
                  "lr": args.lr, "schedule": "cosine", "augment": repr(augment),
                  "within_alphabet": args.within_alphabet, "last_pool": not args.no_last_pool,
                  "held_out_alphabets": held,
                  "train_characters": train_data.n_classes, "tta": args.tta,
                  "threads": torch.get_num_threads(), "load_average_after": list(os.getloadavg())},
        "training": {"episodes": hist.steps, "seconds": round(hist.seconds, 1)},
        "results": results,
        "goal_error": GOAL,
        "published": LAKE_PUBLISHED,
        "provenance": {**hist.provenance, "script": "benchmarks/bench_lake.py"},
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"lake_{out['mode']}{'_' + tag if tag else ''}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
