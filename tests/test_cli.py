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


@needs_data
def test_evaluate_within_alphabet(capsys):
    argv = ["evaluate", "--way", "20", "--shot", "1", "--query", "1", "--episodes", "100", "--json"]
    assert main(argv) == 0 and main([*argv, "--within-alphabet"]) == 0
    mixed, within = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert within["within_alphabet"] and not mixed["within_alphabet"]
    assert within["accuracy"] < mixed["accuracy"]  # lookalike classes, other drawers: harder
    assert main(["evaluate", "--folder", "x", "--within-alphabet"]) == 2
    assert "does not apply to --folder" in capsys.readouterr().err


def test_bad_way_is_reported(tmp_path, capsys):
    make_tiny_omniglot(tmp_path, name="images_evaluation")
    assert main(["evaluate", "--root", str(tmp_path), "--image-size", "12", "--way", "50", "--episodes", "2"]) == 2
    assert "n_way=50" in capsys.readouterr().err


@needs_data
def test_evaluate_lake_pixel_baseline(capsys):
    assert main(["evaluate", "--lake", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["method"] == "pixel-nn" and r["n_trials"] == 400 and len(r["per_run"]) == 20
    assert 0.6 < r["error"] < 0.95 and r["published"]["humans"] == 0.045
    assert main(["evaluate", "--lake"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Lake's 20 one-shot runs" in out[0] and out[1].startswith("per run (%): ")
    assert len(out[1].split(": ")[1].split()) == 20 and "humans 4.5%" in out[2]


def test_evaluate_lake_checkpoint_on_tiny_runs(tmp_path, capsys):
    from fewshot_tutorial.checkpoints import save_model
    from fewshot_tutorial.methods import ProtoNet
    from tests.test_lake import make_runs

    make_runs(tmp_path / "lake_runs")
    ckpt = save_model(tmp_path / "p.pt", ProtoNet(ProtoNet.Config(image_size=16, hidden=8)))
    assert main(["evaluate", "--lake", "--root", str(tmp_path), "--checkpoint", str(ckpt), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["method"] == "protonet" and r["n_trials"] == 6 and len(r["per_run"]) == 2


def test_evaluate_lake_mistakes_are_one_line(tmp_path, capsys):
    assert main(["evaluate", "--lake", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Lake's one-shot runs were not found") and err.count("\n") == 1
    assert main(["evaluate", "--lake", "--folder", str(tmp_path)]) == 2
    assert "--lake and --folder" in capsys.readouterr().err


def test_compare_pairs_checkpoints_on_the_same_episodes(tmp_path, capsys):
    """compare scores every model on the same seeded episodes: a model compared with itself
    differs by exactly 0, and the pixel baseline's row equals what evaluate prints for it."""
    from fewshot_tutorial.checkpoints import save_model
    from fewshot_tutorial.methods import ProtoNet

    make_tiny_omniglot(tmp_path, name="images_evaluation", n_chars=4, size=16)
    a = save_model(tmp_path / "a.pt", ProtoNet(ProtoNet.Config(image_size=16, hidden=8)))
    b = save_model(tmp_path / "b.pt", ProtoNet(ProtoNet.Config(image_size=16, hidden=8)))
    base = ["--root", str(tmp_path), "--way", "3", "--query", "2", "--episodes", "7", "--json"]
    assert main(["compare", str(a), str(a), str(b), "pixel", *base]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["method"] for r in rows] == ["protonet", "protonet", "protonet", "pixel-nn"]
    assert rows[0]["minus_first"] is None and rows[1]["minus_first"] == {"accuracy": 0.0, "ci95": 0.0}
    assert all(r["n"] == 7 for r in rows)
    for r in rows[2:]:   # the paired difference is the difference of the means
        assert abs(r["minus_first"]["accuracy"] - (r["accuracy"] - rows[0]["accuracy"])) < 1e-9
    assert main(["evaluate", "--image-size", "16", *base]) == 0
    pixel = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pixel["accuracy"] == rows[3]["accuracy"]
    assert main(["compare", str(a), str(b), *base[:-1]]) == 0
    out = capsys.readouterr().out
    assert "paired, on the same episodes" in out and "minus first" in out


def test_compare_mistakes_are_one_line(tmp_path, capsys):
    from fewshot_tutorial.checkpoints import save_model
    from fewshot_tutorial.methods import MAML, ProtoNet

    a = save_model(tmp_path / "a.pt", ProtoNet(ProtoNet.Config(image_size=16, hidden=8)))
    b = save_model(tmp_path / "b.pt", ProtoNet(ProtoNet.Config(image_size=20, hidden=8)))
    m = save_model(tmp_path / "m.pt", MAML(MAML.Config(image_size=16, hidden=8)))
    for argv, says in ((["compare", str(a)], "at least two"),
                       (["compare", str(a), str(b)], "different image sizes"),
                       (["compare", str(a), str(m), "--way", "20"], "5-way head"),
                       (["compare", str(a), str(tmp_path / "none.pt")], "no checkpoint")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and err.count("\n") == 1
