#!/usr/bin/env bash
# The chapters' shared first cell must work where the package is absent (a fresh Colab
# runtime). This makes a fresh virtual environment with only what Colab preinstalls
# (IPython, torch, torchvision), checks that the package is absent, runs the cell with
# IPython, and checks that it installed the package and set up device and profile.
# FEWSHOT_INSTALL points the cell's install at this checkout instead of the repository URL
# (no access to the code host from here); FEWSHOT_DATA must point at the data.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ -z "${FEWSHOT_DATA:-}" ] && [ -d ../shared/data/omniglot28 ]; then
  export FEWSHOT_DATA="$(cd ../shared/data && pwd)"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q ipython "torch>=2.1" "torchvision>=0.16"
cd "$work"  # not the checkout, so 'import fewshot_tutorial' cannot find the source tree
if "$work/venv/bin/python" -c "import fewshot_tutorial" 2>/dev/null; then
  echo "first cell check: the package is already installed in the fresh venv" >&2; exit 1
fi
status=0
out=$(FEWSHOT_INSTALL="$repo" FEWSHOT_RESULTS="$work/results" "$work/venv/bin/ipython" --no-banner --colors=NoColor \
  -c "$(cat "$repo/scripts/first_cell.py")
import fewshot_tutorial, sys
print('installed at', fewshot_tutorial.__file__)
print('ok', device.type, profile.name, data_root)" 2>&1) || status=$?
[ "$status" = 0 ] || { echo "$out" >&2; echo "first cell check: ipython exited with $status" >&2; exit 1; }
echo "$out"
echo "$out" | grep -q "^ok cpu quick" || { echo "first cell check: FAILED" >&2; exit 1; }
echo "$out" | grep -q "installed at $work/venv" || { echo "first cell check: not installed in the venv" >&2; exit 1; }
echo "first cell check: passed (fresh venv, package absent, installed by the cell)"
