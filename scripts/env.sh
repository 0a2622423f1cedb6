# Sourced by build_book.sh and test.sh: creates .venv (if missing), installs the package
# with its book and test extras, and points FEWSHOT_DATA at the data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed-$(cat pyproject.toml | "$PY" -c "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])")
if [ ! -f "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # torch first, on its own: where a local wheel of a known-good release exists (as on
  # the project's CI machines) pip takes it; elsewhere this is the usual PyPI install.
  python -m pip install -q "torch>=2.1" "torchvision>=0.16"
  python -m pip install -q -e ".[book,test]"
  touch "$stamp"
fi
# Data: $FEWSHOT_DATA if set; else the shared copy next to the repo if there is one;
# else let the notebooks download Omniglot with torchvision into the user cache.
if [ -z "${FEWSHOT_DATA:-}" ] && [ -d ../shared/data/omniglot28 ]; then
  export FEWSHOT_DATA="$(cd ../shared/data && pwd)"
fi
if [ -z "${FEWSHOT_DATA:-}" ]; then
  export FEWSHOT_DOWNLOAD=1
  python -c "from fewshot_tutorial.notebook import setup; setup(download=True, quiet=True)"
fi
echo "python: $(python --version), torch $(python -c 'import torch;print(torch.__version__)'), data: ${FEWSHOT_DATA:-user cache}"
# the chapters listed in the table of contents, in order
NOTEBOOKS=$(python - <<'PY'
import yaml
toc = yaml.safe_load(open("_toc.yml"))
files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
print(" ".join(f + ".ipynb" for f in files if __import__("os").path.exists(f + ".ipynb")))
PY
)
export NOTEBOOKS
