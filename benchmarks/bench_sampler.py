"""Episodes per second: our tensor-indexing sampler vs decoding PNGs for every episode.

The alternative is what a plain ``Dataset`` over image files does (and what
``torchvision.datasets.Omniglot`` + a task sampler does): open and decode each image of
each episode. Both draw 5-way 1-shot 15-query and 20-way 5-shot 15-query episodes from
the evaluation alphabets, in one process. Not a test: it prints figures.

Usage: FEWSHOT_DATA=../shared/data python benchmarks/bench_sampler.py
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fewshot_tutorial import EpisodeSampler, load_omniglot
from fewshot_tutorial.data.omniglot import default_root, find_source
from fewshot_tutorial.training import provenance


def rate(fn, seconds: float = 3.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    data = load_omniglot(split="evaluation")
    src = find_source(default_root(), "images_evaluation")
    if src is None or not src.is_file():
        raise SystemExit("this benchmark needs images_evaluation.zip under FEWSHOT_DATA")
    zf = zipfile.ZipFile(src)
    files: dict[str, list[str]] = {}
    for n in sorted(zf.namelist()):
        if n.endswith(".png"):
            files.setdefault("/".join(n.split("/")[1:3]), []).append(n)
    classes = sorted(files)
    rows = []
    for n_way, n_shot, n_query in ((5, 1, 15), (20, 5, 15)):
        sampler = EpisodeSampler(data, n_way, n_shot, n_query, seed=0)
        g = torch.Generator().manual_seed(0)

        def decode_episode() -> torch.Tensor:
            picked = torch.randperm(len(classes), generator=g)[:n_way].tolist()
            imgs = []
            for c in picked:
                names = files[classes[c]]
                for i in torch.randperm(len(names), generator=g)[: n_shot + n_query].tolist():
                    im = Image.open(io.BytesIO(zf.read(names[i]))).convert("L")
                    imgs.append(1.0 - np.asarray(im, dtype=np.float32) / 255)
            return torch.from_numpy(np.stack(imgs))

        ours = rate(sampler.sample)
        naive = rate(decode_episode)
        rows.append({"task": f"{n_way}-way {n_shot}-shot {n_query}-query", "ours_eps_per_s": round(ours, 1),
                     "decode_per_episode_eps_per_s": round(naive, 1), "ratio": round(ours / naive, 1)})
        print(f"{rows[-1]['task']:24s} ours {ours:9.1f} episodes/s   decode-per-episode {naive:7.1f} "
              f"episodes/s   ratio {ours / naive:6.1f}x")
    out = Path(__file__).parent / "results" / "sampler.json"
    out.write_text(json.dumps({"rows": rows, "provenance": provenance("cpu", None)}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
