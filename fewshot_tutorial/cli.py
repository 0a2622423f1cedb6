"""Command line: ``python -m fewshot_tutorial --help``.

Commands:
    data       find and check the Omniglot data, print split sizes
    evaluate   score the pixel baseline or a trained checkpoint on N-way K-shot episodes
    train      train a method (siamese, matching, protonet, maml) and save a checkpoint

Every method module that the CLI trains provides three functions, so that the CLI runs
the very code path the notebooks use:

* ``add_train_arguments(parser)``: its own flags;
* ``train_from_args(args, dataset, device, profile) -> (model, history, config)``;
* ``predictor_from_checkpoint(state_dict, config, device) -> predict``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .data import SPLITS, default_root, load_omniglot
from .device import PROFILES, get_device, get_profile, seed_everything

METHODS = {
    "siamese": "fewshot_tutorial.siamese",
    "matching": "fewshot_tutorial.matching",
    "protonet": "fewshot_tutorial.protonet",
    "maml": "fewshot_tutorial.maml",
}


def method_module(name: str) -> ModuleType:
    """The module that implements method ``name`` (see the module docstring)."""
    if name not in METHODS:
        raise SystemExit(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    try:
        module = importlib.import_module(METHODS[name])
    except ModuleNotFoundError as e:
        if e.name == METHODS[name]:
            raise SystemExit(f"method {name!r} is not available in this version of the package") from e
        raise
    missing = [f for f in ("add_train_arguments", "train_from_args", "predictor_from_checkpoint")
               if not hasattr(module, f)]
    if missing:
        raise SystemExit(f"method {name!r} does not provide {', '.join(missing)} for the command line yet")
    return module


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="Omniglot folder (default: $FEWSHOT_DATA or the user cache)")
    p.add_argument("--download", action="store_true", help="download Omniglot with torchvision if missing")
    p.add_argument("--image-size", type=int, default=28)


def _add_task_args(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument("--split", default=split, choices=SPLITS)
    p.add_argument("--way", type=int, default=5, help="classes per episode (N)")
    p.add_argument("--shot", type=int, default=1, help="support images per class (K)")
    p.add_argument("--query", type=int, default=15, help="query images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--profile", default=None, choices=PROFILES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_tutorial",
                                     description="Few-shot learning on Omniglot: data, training, evaluation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="find and check the data; print split sizes")
    _add_data_args(p)
    p.add_argument("--splits", nargs="*", default=list(SPLITS), choices=SPLITS)

    p = sub.add_parser("evaluate", help="score a predictor on N-way K-shot episodes")
    _add_data_args(p)
    _add_task_args(p, "evaluation")
    p.add_argument("--episodes", type=int, default=None, help="episodes (default: the profile's)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint from 'train' (default: pixel baseline)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("train", help="train a method and save a checkpoint")
    msub = p.add_subparsers(dest="method", required=True)
    for name in METHODS:
        mp = msub.add_parser(name, help=f"train {name}")
        _add_data_args(mp)
        _add_task_args(mp, "background")
        mp.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
        mp.add_argument("--seconds", type=float, default=None, help="or a time budget")
        mp.add_argument("--lr", type=float, default=None)
        mp.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
        mp.add_argument("--out", default=f"runs/{name}.pt", help="checkpoint path")
        mp.add_argument("--eval-episodes", type=int, default=0,
                        help="after training, evaluate on the evaluation split (0: skip)")
        try:
            method_module(name).add_train_arguments(mp)
        except SystemExit:
            mp.set_defaults(_unavailable=True)
    return parser


def cmd_data(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else default_root()
    print(f"data root: {root}")
    for split in args.splits:
        d = load_omniglot(root, split=split, image_size=args.image_size, download=args.download)
        print(f"{split:18s} {d.n_classes:5d} classes x {d.n_per_class} images, shape {d.image_shape}, "
              f"ink fraction {d.images.mean().item():.3f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .baselines import pixel_nearest_neighbour
    from .checkpoints import load_checkpoint
    from .evaluation import evaluate

    device = get_device(args.device)
    profile = get_profile(args.profile, device)
    seed_everything(args.seed)
    data = load_omniglot(args.root, split=args.split, image_size=args.image_size, download=args.download)
    if args.checkpoint:
        state, config = load_checkpoint(args.checkpoint, map_location=device)
        predict = method_module(config["method"]).predictor_from_checkpoint(state, config, device)
        name = config["method"]
    else:
        predict, name = pixel_nearest_neighbour, "pixel-nn"
    n = args.episodes or profile.eval_episodes
    res = evaluate(predict, data, args.way, args.shot, args.query, n, seed=args.seed, device=device)
    if args.json:
        print(json.dumps({"method": name, "split": args.split, "way": args.way, "shot": args.shot, **res.as_dict()}))
    else:
        print(f"{name} on {args.split}, {args.way}-way {args.shot}-shot: {res}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoints import save_checkpoint
    from .evaluation import evaluate

    if getattr(args, "_unavailable", False):
        raise SystemExit(f"method {args.method!r} is not available in this version of the package")
    module = method_module(args.method)
    device = get_device(args.device)
    profile = get_profile(args.profile, device)
    seed_everything(args.seed)
    data = load_omniglot(args.root, split=args.split, image_size=args.image_size, download=args.download)
    model, history, config = module.train_from_args(args, data, device, profile)
    config = {"method": args.method, "image_size": args.image_size, **config,
              "provenance": history.provenance}
    path = save_checkpoint(args.out, model, config)
    print(f"trained {args.method}: {history.steps} steps in {history.seconds:.1f} s, "
          f"final loss {sum(history.losses[-20:]) / max(1, len(history.losses[-20:])):.4f}; saved {path}")
    if args.eval_episodes:
        test_split = "vinyals/test" if args.split.startswith("vinyals/") else "evaluation"
        test = load_omniglot(args.root, split=test_split, image_size=args.image_size)
        predict = module.predictor_from_checkpoint(model.state_dict(), config, device)
        res = evaluate(predict, test, args.way, args.shot, args.query, args.eval_episodes, seed=args.seed, device=device)
        print(f"{args.method} on {test_split}, {args.way}-way {args.shot}-shot: {res}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"data": cmd_data, "evaluate": cmd_evaluate, "train": cmd_train}[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
