"""Command line: ``python -m fewshot_tutorial --help``.

Commands::

    data       find and check the Omniglot data, print split sizes
    train      train any method (``train METHOD --help`` lists its flags) and save a checkpoint
    evaluate   score the pixel baseline or a checkpoint on N-way K-shot episodes of
               Omniglot, or of your own ``<class>/<images>`` folder (``--folder``), or
               on Lake et al.'s 20 one-shot runs (``--lake``), or on episodes sampled
               with Lake's protocol (``--within-alphabet``)
    compare    score several checkpoints on the very same episodes (or Lake's runs) and
               print each one's paired difference from the first

The flags of ``train METHOD`` are made from the method's config dataclass, so the
command line trains through the very code the notebooks use (``fit``), and a user's
mistake ends in one ``error: ...`` line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import SPLITS, default_root, load_omniglot
from .device import PROFILES, cpu_threads, get_device, get_profile, seed_everything
from .methods import MAML, METHODS, Config

PIXEL = "pixel"  # names the pixel baseline where a checkpoint is expected (compare)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _field_kind(hint: Any) -> tuple[type, bool]:
    """``(scalar type, may be a list)`` of a config field's annotation."""
    if isinstance(hint, (types.UnionType,)) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        scalar = next(a for a in args if typing.get_origin(a) is not list)
        return scalar, any(typing.get_origin(a) is list for a in args)
    return hint, False


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type[Config]) -> None:
    """One flag per field of ``config_cls`` (``--train-way``, ``--fce/--no-fce``, ...), default: the config's."""
    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    group = parser.add_argument_group(f"{config_cls.__name__} (the model and its training batches)")
    for f in dataclasses.fields(config_cls):
        scalar, is_list = _field_kind(hints[f.name])
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{config_cls.help.get(f.name, f.name.replace('_', ' '))} (default: {default})"
        if scalar is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.name in config_cls.choices:
            group.add_argument(flag, choices=config_cls.choices[f.name], default=None, help=help_)
        else:
            group.add_argument(flag, type=scalar, nargs="+" if is_list else None, default=None, help=help_,
                               dest=f.name)


def config_from_args(config_cls: type[Config], args: argparse.Namespace) -> Config:
    """The config the flags ask for (unset flags keep the config's defaults)."""
    values = {}
    for f in dataclasses.fields(config_cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v[0] if isinstance(v, list) and len(v) == 1 else v
    return config_cls(**values)


def _add_data_args(p: argparse.ArgumentParser, image_size: bool = True) -> None:
    p.add_argument("--root", default=None, help="Omniglot folder (default: $FEWSHOT_DATA or the user cache)")
    p.add_argument("--download", action="store_true", help="download Omniglot if missing")
    if image_size:
        p.add_argument("--image-size", type=positive_int, default=None,
                       help="image side (default: 28, or the checkpoint's)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--profile", default=None, choices=PROFILES)


def _add_test_args(p: argparse.ArgumentParser) -> None:
    """What to test on (evaluate, compare): the data, the episodes or Lake's runs, the output."""
    _add_data_args(p)
    _add_run_args(p)
    p.add_argument("--split", default="evaluation", choices=SPLITS)
    p.add_argument("--folder", default=None, help="your own <class>/<images> folder instead of Omniglot")
    p.add_argument("--lake", action="store_true",
                   help="Lake et al.'s 20 one-shot runs (20-way 1-shot, 400 trials) instead of sampled episodes")
    p.add_argument("--within-alphabet", action="store_true",
                   help="Lake's protocol for sampled episodes: one alphabet per episode, support and "
                        "queries by different drawers")
    p.add_argument("--way", type=positive_int, default=5, help="classes per test episode (N)")
    p.add_argument("--shot", type=positive_int, default=1, help="support images per class (K)")
    p.add_argument("--query", type=positive_int, default=15, help="query images per class")
    p.add_argument("--episodes", type=positive_int, default=None, help="episodes (default: the profile's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fewshot_tutorial",
                                     description="Few-shot learning on Omniglot: data, training, evaluation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="find and check the data; print split sizes")
    _add_data_args(p)
    p.add_argument("--splits", nargs="*", default=list(SPLITS), choices=SPLITS)

    p = sub.add_parser("evaluate", help="score a predictor on N-way K-shot episodes")
    _add_test_args(p)
    p.add_argument("--checkpoint", default=None, help="a checkpoint from 'train' (default: pixel baseline)")

    p = sub.add_parser("compare", help="score several checkpoints on the same seeded episodes, paired")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help=f"checkpoints from 'train' (or '{PIXEL}' for the pixel baseline); each is compared "
                        "with the first")
    _add_test_args(p)

    p = sub.add_parser("train", help="train a method and save a checkpoint")
    msub = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, cls in METHODS.items():
        mp = msub.add_parser(name, help=(cls.__doc__ or name).strip().splitlines()[0])
        _add_data_args(mp, image_size=False)
        _add_run_args(mp)
        mp.add_argument("--split", default="background", choices=SPLITS, help="training classes")
        mp.add_argument("--seconds", type=float, default=None, help="a time budget (instead of, or with, --steps)")
        mp.add_argument("--lr-schedule", default=None, choices=["constant", "cosine", "linear"],
                        help=f"decay the rate over the budget (default: {cls.lr_schedule})")
        mp.add_argument("--precision", default=None, choices=["auto", "float32", "bfloat16", "float16"],
                        help=f"mixed precision (default: {cls.precision})")
        mp.add_argument("--augment", action="store_true",
                        help="distort every training image by a small random affine map (Koch et al.)")
        mp.add_argument("--out", default=f"runs/{name}.pt", help="checkpoint path")
        mp.add_argument("--eval-way", type=positive_int, default=5, help="after training: classes per test episode")
        mp.add_argument("--eval-shot", type=positive_int, default=1, help="after training: shots per test class")
        mp.add_argument("--eval-episodes", type=int, default=0,
                        help="after training, evaluate on this many episodes of the test split (0: skip)")
        add_config_flags(mp, cls.Config)
    return parser


def cmd_data(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else default_root()
    print(f"data root: {root}")
    for split in args.splits:
        d = load_omniglot(root, split=split, image_size=args.image_size or 28, download=args.download)
        print(f"{split:18s} {d.n_classes:5d} classes x {d.n_per_class} images, shape {d.image_shape}, "
              f"ink fraction {d.images.mean().item():.3f}")
    return 0


def _predictor(checkpoint: str | None, args: argparse.Namespace, device, way: int):
    """``(predict, name, image size)`` of a checkpoint from 'train' (or of the pixel baseline,
    whose size is ``--image-size``, or ``None``: any).

    Refuses an image size the checkpoint was not trained at, and a way its head cannot give.
    """
    from .baselines import pixel_nearest_neighbour
    from .checkpoints import load_model

    if checkpoint in (None, PIXEL):
        return pixel_nearest_neighbour, "pixel-nn", args.image_size
    predict, config = load_model(checkpoint, device)
    name = predict.name
    if args.image_size not in (None, config.image_size):
        raise ValueError(f"{checkpoint} was trained on {config.image_size}x{config.image_size} images; "
                         f"drop --image-size or give --image-size {config.image_size}")
    if isinstance(predict, MAML) and way != config.train_way:
        raise ValueError(f"{checkpoint}: this {name} model has a {config.train_way}-way head; "
                         + ("Lake's runs are 20-way" if args.lake else f"use --way {config.train_way}"))
    return predict, name, config.image_size


def _test_data(args: argparse.Namespace, size: int):
    """The dataset that sampled episodes come from, and its name."""
    from .data import load_image_folder

    if args.within_alphabet and args.folder:
        raise ValueError("--within-alphabet needs Omniglot's alphabets; it does not apply to --folder")
    if args.folder:
        return load_image_folder(args.folder, image_size=size), args.folder
    return load_omniglot(args.root, split=args.split, image_size=size, download=args.download), args.split


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    device = _device(args.device)
    profile = get_profile(args.profile, device)
    seed_everything(args.seed)
    predict, name, size = _predictor(args.checkpoint, args, device, 20 if args.lake else args.way)
    size = size or 28
    if args.lake:
        return _evaluate_lake(args, predict, name, size, device)
    data, where = _test_data(args, size)
    n = args.episodes or profile.eval_episodes
    res = evaluate(predict, data, args.way, args.shot, args.query, n, seed=args.seed, device=device,
                   within_alphabet=args.within_alphabet)
    protocol = ", within alphabets, across drawers" if args.within_alphabet else ""
    if args.json:
        print(json.dumps({"method": name, "data": where, "way": args.way, "shot": args.shot,
                          "within_alphabet": args.within_alphabet, **res.as_dict()}))
    else:
        print(f"{name} on {where}, {args.way}-way {args.shot}-shot{protocol}: {res}")
    return 0


def _evaluate_lake(args: argparse.Namespace, predict, name: str, size: int, device) -> int:
    """``evaluate --lake``: the error on Lake's runs, per run, beside the published errors."""
    from .data.lake import load_lake_runs
    from .lake import LAKE_PUBLISHED, format_published, score_lake

    if args.folder:
        raise ValueError("--lake and --folder both name the test data; give one")
    runs = load_lake_runs(args.root, image_size=size, download=args.download)
    res = score_lake(predict, runs, device=device)
    if args.json:
        print(json.dumps({"method": name, "data": "lake", **res.as_dict(), "published": LAKE_PUBLISHED}))
        return 0
    print(f"{name} on Lake's {len(runs)} one-shot runs ({size}x{size}): {res}")
    print("per run (%): " + " ".join(f"{100 * e:.0f}" for e in res.per_run))
    print(f"published: {format_published()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare A B ...``: every model on the same seeded episodes, each minus the first, paired."""
    from .evaluation import confidence_interval, evaluate, paired_difference
    from .lake import score_lake

    if len(args.checkpoints) < 2:
        raise ValueError("give at least two checkpoints to compare (or 'pixel' for the pixel baseline)")
    device = _device(args.device)
    profile = get_profile(args.profile, device)
    way = 20 if args.lake else args.way
    models = [_predictor(c, args, device, way) for c in args.checkpoints]
    sizes = {size for _, _, size in models if size}
    if len(sizes) > 1:
        raise ValueError(f"the checkpoints were trained at different image sizes ({sorted(sizes)}); "
                         "compare models trained at one size")
    size = sizes.pop() if sizes else 28
    results = []
    if args.lake:
        from .data.lake import load_lake_runs

        runs = load_lake_runs(args.root, image_size=size, download=args.download)
        for predict, _, _ in models:
            seed_everything(args.seed)
            res = score_lake(predict, runs, device=device)  # accuracy per run, paired over the 20 runs
            results.append(confidence_interval([1 - e for e in res.per_run]))
        what = f"Lake's {len(runs)} one-shot runs (20-way 1-shot), accuracy per run"
    else:
        data, where = _test_data(args, size)
        n = args.episodes or profile.eval_episodes
        for predict, _, _ in models:
            seed_everything(args.seed)
            results.append(evaluate(predict, data, args.way, args.shot, args.query, n, seed=args.seed,
                                    device=device, within_alphabet=args.within_alphabet))
        protocol = ", within alphabets, across drawers" if args.within_alphabet else ""
        what = f"{where}, {args.way}-way {args.shot}-shot{protocol}, {n} episodes (seed {args.seed})"
    rows = []
    for i, (c, (_, name, _), r) in enumerate(zip(args.checkpoints, models, results)):
        d = paired_difference(r, results[0]) if i else None
        rows.append({"checkpoint": c, "method": name, **r.as_dict(),
                     "minus_first": None if d is None else {"accuracy": d.accuracy, "ci95": d.ci95}})
    if args.json:
        print(json.dumps({"data": what, "rows": rows}))
        return 0
    same = "runs" if args.lake else "episodes"
    print(f"{what}; 95% intervals; the differences are paired, on the same {same}, against the first")
    width = max(len(c) for c in args.checkpoints)
    for row in rows:
        d = row["minus_first"]
        diff = "" if d is None else f"   minus first {100 * d['accuracy']:+6.2f} ± {100 * d['ci95']:.2f}"
        print(f"  {row['checkpoint']:{width}s}  {row['method']:12s} "
              f"{100 * row['accuracy']:6.2f}% ± {100 * row['ci95']:.2f}{diff}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoints import check_writable, save_model
    from .evaluation import evaluate
    from .training import fit

    cls = METHODS[args.method]
    config = config_from_args(cls.Config, args)
    out = check_writable(args.out)  # before training: a bad path must not cost the run
    device = _device(args.device)
    seed_everything(args.seed)
    data = load_omniglot(args.root, split=args.split, image_size=config.image_size, download=args.download)
    method = cls(config)
    steps = config.steps if args.seconds is None or args.steps is not None else None  # --seconds alone: time only
    augment = None
    if args.augment:
        from .augment import RandomAffine

        augment = RandomAffine(seed=args.seed)
    history = fit(method, data, n_steps=steps, max_seconds=args.seconds, lr_schedule=args.lr_schedule,
                  device=device, precision=args.precision, seed=args.seed, augment=augment)
    path = save_model(out, method, provenance=history.provenance)
    tail = history.losses[-20:]
    print(f"trained {args.method}: {history.steps} steps in {history.seconds:.1f} s, "
          f"final loss {sum(tail) / max(1, len(tail)):.4f}; saved {path}")
    if args.eval_episodes:
        test_split = "vinyals/test" if args.split.startswith("vinyals/") else "evaluation"
        test = load_omniglot(args.root, split=test_split, image_size=config.image_size)
        res = evaluate(method, test, args.eval_way, args.eval_shot, 15, args.eval_episodes, seed=args.seed,
                       device=device)
        print(f"{args.method} on {test_split}, {args.eval_way}-way {args.eval_shot}-shot: {res}")
    return 0


def _device(name: str | None):
    """The device, and on the CPU only the cores other processes leave free, as the notebooks do."""
    import torch

    device = get_device(name)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return device


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"data": cmd_data, "evaluate": cmd_evaluate, "compare": cmd_compare,
                "train": cmd_train}[args.command](args)
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
