#!/usr/bin/env bash
# Build the book: set up the environment, find (or download) the data, execute every
# chapter and write the HTML to _build/html. Prints how long each chapter took (also
# saved to _build/book-timing.json). Usage: bash scripts/build_book.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
export FEWSHOT_RESULTS=${FEWSHOT_RESULTS:-$PWD/_build/results}
python scripts/normalize_notebooks.py --check book/*.ipynb
# what this build starts from, for the "Running this book" page (executed during the
# build, it can only read what is on disk before): with stored results the chapters load
# trained models instead of training them, and run faster
mkdir -p _build
python - <<'PY'
import datetime as dt, json, os, pathlib
results = pathlib.Path(os.environ["FEWSHOT_RESULTS"])
n = len([p for p in results.glob("*") if p.suffix in (".pt", ".json")]) if results.is_dir() else 0
pathlib.Path("_build/build-info.json").write_text(json.dumps({
    "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    "results_at_start": n, "cpus": os.cpu_count()}, indent=1))
PY
start=$(date +%s)
status=0
jupyter-book build . --warningiserror --keep-going || status=$?
echo "book: built in $(( $(date +%s) - start )) s (exit $status)"
python scripts/book_timing.py _build --goal 180
[ "$status" = 0 ] || exit "$status"
python scripts/check_html.py _build/html
echo "book: $PWD/_build/html/index.html"
