"""The command line: python -m fewshot_tutorial data / evaluate."""

from __future__ import annotations

import json
import subprocess
import sys


from fewshot_tutorial.cli import main
from tests.conftest import make_tiny_omniglot, needs_data


def test_help_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "fewshot_tutorial", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "evaluate" in out.stdout and "train" in out.stdout


def test_data_command_on_tiny_layout(tmp_path, capsys):
    make_tiny_omniglot(tmp_path, name="images_background")
    make_tiny_omniglot(tmp_path, name="images_evaluation", n_chars=2)
    assert main(["data", "--root", str(tmp_path), "--image-size", "12", "--splits", "background", "evaluation"]) == 0
    out = capsys.readouterr().out
    assert "background" in out and "6 classes" in out and "4 classes" in out


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "--root", str(tmp_path), "--splits", "background"]) == 2
    assert "FEWSHOT_DATA" in capsys.readouterr().err


@needs_data
def test_evaluate_pixel_baseline(capsys):
    assert main(["evaluate", "--way", "5", "--shot", "1", "--episodes", "50", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["method"] == "pixel-nn" and r["n"] == 50 and 0.2 < r["accuracy"] < 1


def test_bad_way_is_reported(tmp_path, capsys):
    make_tiny_omniglot(tmp_path, name="images_evaluation")
    assert main(["evaluate", "--root", str(tmp_path), "--image-size", "12", "--way", "50", "--episodes", "2"]) == 2
    assert "n_way=50" in capsys.readouterr().err
