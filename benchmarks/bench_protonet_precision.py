"""Does mixed precision cost ProtoNet accuracy? float32 vs bfloat16 autocast, same everything else.

Trains the same Conv4 ProtoNet twice through the engine, from the same seed (same
initial weights) on the same training episodes, once in float32 and once under bfloat16
autocast (both with channels-last memory), then tests both on the same seeded
evaluation episodes. Prints both accuracies with 95% confidence intervals, whether the
intervals overlap, the paired per-episode difference with its own interval, and the
training speed of each; writes
``benchmarks/results/protonet_precision.json`` with provenance.

On a CPU without native bfloat16 (no AVX-512 BF16 / AMX) the bf16 run is emulated and
slow, but the accuracy comparison still holds.

Usage: ``python benchmarks/bench_protonet_precision.py [--way 60 --steps 500 --episodes 600]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fewshot_tutorial import EpisodeSampler, ProtoNet, confidence_interval, fit, load_omniglot
from fewshot_tutorial.device import cpu_has_native_bf16, get_device
from fewshot_tutorial.evaluation import accuracy, make_predict
from fewshot_tutorial.training import provenance

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = [(5, 1), (20, 1)]


def per_episode_accuracies(predict, dataset, n_way, n_shot, n_episodes, device) -> torch.Tensor:
    """Accuracy of every one of the shared seeded episodes (the episodes ``evaluate`` uses)."""
    accs = []
    for episode in EpisodeSampler(dataset, n_way, n_shot, 15, seed=0, n_episodes=n_episodes):
        episode = episode.to(device)
        accs.append(accuracy(predict(episode), episode.query_y))
    return torch.tensor(accs, dtype=torch.float64)


def run(precision: str, args, train_data, test_data, device) -> tuple[dict, dict]:
    torch.manual_seed(args.seed)
    model = ProtoNet(train_way=args.way, train_shot=args.shot, train_query=args.query)
    hist = fit(model, train_data, n_steps=args.steps,
               lr=args.lr, seed=args.seed, device=device, precision=precision, progress=False)
    predict = make_predict(model, device, precision=precision)
    out = {"train_seconds": round(hist.seconds, 1), "episodes_per_s": round(hist.steps / hist.seconds, 2),
           "final_loss": round(sum(hist.losses[-50:]) / len(hist.losses[-50:]), 4), "results": {}}
    per_episode = {}
    for w, k in SETTINGS:
        a = per_episode_accuracies(predict, test_data, w, k, args.episodes, device)
        r = confidence_interval(a)
        per_episode[f"{w}-way {k}-shot"] = a
        out["results"][f"{w}-way {k}-shot"] = r.as_dict()
        print(f"  {precision:9s} {w}-way {k}-shot: {r}", flush=True)
    return out, per_episode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--way", type=int, default=60, help="training way")
    ap.add_argument("--shot", type=int, default=1)
    ap.add_argument("--query", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--episodes", type=int, default=600, help="evaluation episodes per setting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--root", default=None)
    ap.add_argument("--out", default=str(RESULTS / "protonet_precision.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    train_data = load_omniglot(args.root, split="background")
    test_data = load_omniglot(args.root, split="evaluation")
    print(f"ProtoNet {args.way}-way {args.shot}-shot training, {args.steps} episodes, seed {args.seed}, "
          f"device {device}, native bf16: {cpu_has_native_bf16() if device.type == 'cpu' else 'n/a'}")
    runs, per_episode = {}, {}
    for p in ("float32", "bfloat16"):
        runs[p], per_episode[p] = run(p, args, train_data, test_data, device)

    print(f"\nevaluation alphabets, the same {args.episodes} episodes, accuracy (%) with 95% CI:")
    overlap_all = True
    paired = {}
    for setting in runs["float32"]["results"]:
        a, b = runs["float32"]["results"][setting], runs["bfloat16"]["results"][setting]
        overlap = abs(a["accuracy"] - b["accuracy"]) <= a["ci95"] + b["ci95"]
        overlap_all &= overlap
        d = confidence_interval(per_episode["bfloat16"][setting] - per_episode["float32"][setting])
        paired[setting] = d.as_dict()
        print(f"  {setting}: float32 {100 * a['accuracy']:.2f} ± {100 * a['ci95']:.2f}   "
              f"bfloat16 {100 * b['accuracy']:.2f} ± {100 * b['ci95']:.2f}   intervals overlap: {overlap}   "
              f"paired difference (bf16 - fp32, same episodes) {100 * d.accuracy:+.2f} ± {100 * d.ci95:.2f}")
    print("  (each run is one training trajectory: the intervals cover episode sampling, not the run-to-run\n"
          "   spread of training, which rounding differences alone can cause)")
    speedup = runs["bfloat16"]["episodes_per_s"] / runs["float32"]["episodes_per_s"]
    print(f"  training speed: float32 {runs['float32']['episodes_per_s']} episodes/s, "
          f"bfloat16 {runs['bfloat16']['episodes_per_s']} episodes/s ({speedup:.2f}x)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "protonet accuracy, float32 vs bfloat16 autocast (same seed, same episodes)",
        "config": vars(args) | {"device": str(device)},
        "runs": runs, "intervals_overlap": overlap_all, "paired_difference_bf16_minus_fp32": paired, "bf16_speedup": round(speedup, 3),
        "provenance": provenance(device, torch.bfloat16, compared=["float32", "bfloat16"],
                                 native_bf16=cpu_has_native_bf16(), threads=torch.get_num_threads()),
    }
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
