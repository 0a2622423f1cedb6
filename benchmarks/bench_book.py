"""Execution time of every chapter in a profile (default: quick), from scratch.

Runs each notebook listed in _toc.yml with nbclient, in order, with a fresh results
folder (so every chapter trains what it trains; nothing is reused), and records wall
time per chapter. Saves benchmarks/results/book_timing_<profile>.json. Not a test (the
book build itself records its per-chapter times: scripts/book_timing.py).

Usage: FEWSHOT_DATA=../shared/data python benchmarks/bench_book.py [--profile quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

from fewshot_tutorial.training import provenance

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    args = ap.parse_args()
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    chapters = [c["file"] for p in toc["parts"] for c in p["chapters"]
                if (REPO / f"{c['file']}.ipynb").exists()]
    os.environ["FEWSHOT_PROFILE"] = args.profile
    rows, total = [], 0.0
    with tempfile.TemporaryDirectory() as results:
        os.environ["FEWSHOT_RESULTS"] = results
        for ch in chapters:
            nb = nbformat.read(REPO / f"{ch}.ipynb", as_version=4)
            start = time.perf_counter()
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(REPO / "book")}}).execute()
            sec = time.perf_counter() - start
            total += sec
            title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells
                          if c.cell_type == "markdown" and c.source.startswith("# ")), ch)
            rows.append({"chapter": ch, "title": title, "seconds": round(sec, 1)})
            print(f"{title:60s} {sec:7.1f} s", flush=True)
    print(f"{'total':60s} {total:7.1f} s ({total / 60:.1f} min)")
    out = REPO / "benchmarks" / "results" / f"book_timing_{args.profile}.json"
    out.write_text(json.dumps({"profile": args.profile, "rows": rows, "total_seconds": round(total, 1),
                               "provenance": provenance("cpu", None, cpu_count=os.cpu_count())}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
