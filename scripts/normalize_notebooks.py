"""Store notebooks the way the repo wants them: no outputs, no execution counts, a
python3 kernelspec, no editor metadata, and the shared first cell (scripts/first_cell.py). Usage: python scripts/normalize_notebooks.py book/*.ipynb
(`--check` exits 1 if any notebook would change)."""

import json
import sys
from pathlib import Path

FIRST_CELL = (Path(__file__).with_name("first_cell.py")).read_text().rstrip("\n")

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def normalize(nb: dict) -> dict:
    nb["metadata"] = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    for cell in nb["cells"]:
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        cell["metadata"] = meta
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.pop("id", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    first = nb["cells"][0]
    if first["cell_type"] == "code" and "notebook import setup" in "".join(first["source"]):
        lines = FIRST_CELL.split("\n")
        first["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
        first["metadata"] = {"tags": ["hide-cell"]}  # collapsed in the HTML book
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    changed = []
    for path in (a for a in argv if a != "--check"):
        with open(path) as f:
            text = f.read()
        new = json.dumps(normalize(json.loads(text)), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            changed.append(path)
            if not check:
                with open(path, "w") as f:
                    f.write(new)
    if check and changed:
        print("not normalized:", *changed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
