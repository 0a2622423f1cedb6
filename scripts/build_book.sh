#!/usr/bin/env bash
# Build the book: set up the environment, find (or download) the data, execute every
# chapter and write the HTML to _build/html. Usage: bash scripts/build_book.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
export FEWSHOT_RESULTS=${FEWSHOT_RESULTS:-$PWD/_build/results}
python scripts/normalize_notebooks.py --check book/*.ipynb
jupyter-book build . --warningiserror --keep-going
python scripts/check_html.py _build/html
echo "book: $PWD/_build/html/index.html"
