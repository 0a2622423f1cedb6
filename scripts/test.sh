#!/usr/bin/env bash
# All tests: the package's unit tests and every chapter notebook executed by nbval.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
. "$(dirname "$0")/env.sh"
# trained models and results of this run are kept here, so the book build that follows
# (build_book.sh) reuses them instead of training twice
export FEWSHOT_RESULTS=${FEWSHOT_RESULTS:-$PWD/_build/results}
mkdir -p _build
python -m pytest tests $NOTEBOOKS --nbval-lax -p no:cacheprovider --durations=15 --junitxml=_build/test-report.xml "$@"
