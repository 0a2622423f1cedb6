"""How long each page took to execute in the last book build.

Jupyter Book 1.x (myst-nb) records, for every notebook it executes, the run time in the
Sphinx environment it saves at the end of the build (``_build/.doctrees/
environment.pickle``); the "Running this book" page shows the same numbers with
myst-nb's ``nb-exec-table``. This prints them as a table, flags pages over the time
goal, and saves them with their provenance to ``_build/book-timing.json``.

Usage: python scripts/book_timing.py [_build] [--goal SECONDS]   (called by build_book.sh)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import platform
import sys
from pathlib import Path


def exec_times(build: Path) -> dict[str, dict]:
    """``docname -> {"runtime", "succeeded", "mtime", ...}`` for the pages executed."""
    env_file = build / ".doctrees" / "environment.pickle"
    if not env_file.is_file():
        return {}
    with env_file.open("rb") as f:
        env = pickle.load(f)  # the build's own file, written by Sphinx (needs sphinx installed)
    meta = getattr(env, "nb_metadata", {}) or {}
    return {doc: data["exec_data"] for doc, data in sorted(meta.items()) if data.get("exec_data")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default="_build")
    ap.add_argument("--goal", type=float, default=180.0, help="flag pages slower than this (s)")
    args = ap.parse_args()
    build = Path(args.build)
    times = exec_times(build)
    if not times:
        print(f"book timing: no execution record in {build}/.doctrees (the build did not get that far)")
        return 0
    info_file = build / "build-info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    rows = [{"page": doc, "seconds": round(d["runtime"], 1) if d.get("runtime") is not None else None,
             "succeeded": bool(d.get("succeeded")), "error": d.get("error")} for doc, d in times.items()]
    total = sum(r["seconds"] or 0 for r in rows)
    print(f"book timing: execution of each page in this build ({os.cpu_count()} CPUs, "
          f"{info.get('results_at_start', '?')} stored results at the start)")
    for r in rows:
        sec = r["seconds"]
        flag = "" if r["succeeded"] else f"  FAILED ({r['error']})"
        if sec is not None and sec > args.goal:
            flag += f"  over the {args.goal:.0f} s goal"
        print(f"  {r['page']:30s} {sec if sec is not None else float('nan'):7.1f} s{flag}")
    print(f"  {'total':30s} {total:7.1f} s")
    record = {
        "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": "myst-nb execution records of the build (_build/.doctrees/environment.pickle)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "profile": os.environ.get("FEWSHOT_PROFILE", "default (quick on a CPU)"),
        **info,
        "pages": rows,
        "total_seconds": round(total, 1),
    }
    (build / "book-timing.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
