"""Lake et al.'s one-shot runs: the loader (zip, folder, bad input) and the scorer."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot_tutorial.baselines import pixel_nearest_neighbour
from fewshot_tutorial.data import Episode
from fewshot_tutorial.data.lake import LAKE_FILE, LakeRuns, load_lake_runs
from fewshot_tutorial.lake import LAKE_PUBLISHED, score_lake, wilson_interval
from tests.conftest import needs_data, png_bytes

N_RUNS, N_WAY, SIZE = 2, 3, 12


def _runs_files(top: str = "") -> dict[str, bytes]:
    """Runs in the official layout. Class k of run r has an ink pixel at (r, k); test item m
    belongs to class (m + 1) % N_WAY and is drawn as that class's pixel plus one at row 11."""
    files = {}
    for r in range(1, N_RUNS + 1):
        run = f"run{r:02d}"
        lines = []
        for k in range(N_WAY):
            img = np.full((SIZE, SIZE), 255, np.uint8)
            img[r, k] = 0
            files[f"{run}/training/class{k + 1:02d}.png"] = png_bytes(img)
        for m in range(N_WAY):
            k = (m + 1) % N_WAY
            img = np.full((SIZE, SIZE), 255, np.uint8)
            img[r, k] = img[11, m] = 0
            files[f"{run}/test/item{m + 1:02d}.png"] = png_bytes(img)
            lines.append(f"{run}/test/item{m + 1:02d}.png {run}/training/class{k + 1:02d}.png")
        files[f"{run}/class_labels.txt"] = ("\n".join(lines) + "\n").encode()
    return {f"{top}{k}": v for k, v in files.items()}


def make_runs(folder: Path, as_zip: bool = True, top: str = "", drop: str | None = None,
              labels: dict[str, bytes] | None = None) -> Path:
    files = _runs_files(top)
    files.update(labels or {})
    files.pop(f"{top}{drop}", None)
    folder.mkdir(parents=True, exist_ok=True)
    if as_zip:
        path = folder / LAKE_FILE
        with zipfile.ZipFile(path, "w") as zf:
            for k, v in files.items():
                zf.writestr(k, v)
        return path
    for k, v in files.items():
        (folder / k).parent.mkdir(parents=True, exist_ok=True)
        (folder / k).write_bytes(v)
    return folder


@pytest.mark.parametrize("top", ["", "all_runs/"])
def test_zip_and_folder_give_the_same_episodes(tmp_path, top):
    z = load_lake_runs(make_runs(tmp_path / "z", top=top), image_size=SIZE)
    f = load_lake_runs(make_runs(tmp_path / "f", as_zip=False, top=top), image_size=SIZE)
    assert len(z) == len(f) == N_RUNS and z.run_names == ("run01", "run02")
    for a, b in zip(z, f):
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
        assert torch.equal(a.query_y, b.query_y)
    e = z[1]
    assert e.support_x.shape == (N_WAY, 1, SIZE, SIZE) and e.n_way == N_WAY
    assert e.support_y.tolist() == [0, 1, 2] and e.query_y.tolist() == [1, 2, 0]
    # polarity: the black pixel at (run, class) is ink = 1, paper is 0
    assert e.support_x[2, 0, 2, 2] == 1 and e.support_x[2].sum() == 1
    assert z.support_files[1][2] == "run02/training/class03.png"
    assert z.query_files[0][0] == "run01/test/item01.png"


def test_found_under_root_and_lake_runs(tmp_path, monkeypatch):
    make_runs(tmp_path / "lake_runs")
    assert len(load_lake_runs(tmp_path, image_size=SIZE)) == N_RUNS
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path))
    assert load_lake_runs(image_size=SIZE).source == tmp_path / "lake_runs" / LAKE_FILE


def test_resized_to_image_size(tmp_path):
    runs = load_lake_runs(make_runs(tmp_path), image_size=6)
    assert runs.image_size == 6 and runs[0].query_x.shape == (N_WAY, 1, 6, 6)


def test_missing_runs_say_what_to_do(tmp_path, monkeypatch):
    from fewshot_tutorial.data import lake

    monkeypatch.setattr(lake, "_download", lambda folder: pytest.fail("must not download"))
    with pytest.raises(FileNotFoundError) as e:
        load_lake_runs(tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere" in msg and "FEWSHOT_DATA" in msg and "download=True" in msg and "github.com" in msg


def test_download_when_asked(tmp_path, monkeypatch):
    from fewshot_tutorial.data import lake

    seen = []
    monkeypatch.setattr(lake, "_download", lambda folder: seen.append(folder) or make_runs(folder))
    assert len(load_lake_runs(tmp_path, image_size=SIZE, download=True)) == N_RUNS
    assert seen == [tmp_path / "lake_runs"]


def test_missing_class_labels(tmp_path):
    with pytest.raises(ValueError, match="run02/class_labels.txt is missing"):
        load_lake_runs(make_runs(tmp_path, drop="run02/class_labels.txt"), image_size=SIZE)


def test_label_pointing_at_a_missing_class(tmp_path):
    bad = b"run01/test/item01.png run01/training/class09.png\n"
    with pytest.raises(ValueError, match="names run01/training/class09.png"):
        load_lake_runs(make_runs(tmp_path, labels={"run01/class_labels.txt": bad}), image_size=SIZE)


def test_missing_image_is_named(tmp_path):
    with pytest.raises(ValueError, match="run01/test/item02.png, which is not in the runs"):
        load_lake_runs(make_runs(tmp_path, as_zip=False, drop="run01/test/item02.png"), image_size=SIZE)


def test_unlabelled_item_and_malformed_line(tmp_path):
    short = b"run01/test/item01.png run01/training/class02.png\n"
    with pytest.raises(ValueError, match="no line for run01/test/item02.png"):
        load_lake_runs(make_runs(tmp_path / "a", labels={"run01/class_labels.txt": short}), image_size=SIZE)
    with pytest.raises(ValueError, match="line 1"):
        load_lake_runs(make_runs(tmp_path / "b", labels={"run01/class_labels.txt": b"just one\n"}), image_size=SIZE)


def test_foreign_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="no 'runNN/class_labels.txt'"):
        load_lake_runs(tmp_path / "x.zip")


# --- the scorer -------------------------------------------------------------------


def _toy_runs(n_runs: int = 20, n_way: int = 20) -> LakeRuns:
    """Images that are just their run and item index, so predictors can be written by hand."""
    g = torch.Generator().manual_seed(0)
    eps = []
    for r in range(n_runs):
        y = torch.randperm(n_way, generator=g)
        q = torch.full((n_way, 1, 1, 2), float(r))
        q[:, 0, 0, 1] = torch.arange(n_way)
        eps.append(Episode(torch.zeros(n_way, 1, 1, 2), torch.arange(n_way), q, y, n_way=n_way))
    names = tuple(f"run{r + 1:02d}" for r in range(n_runs))
    return LakeRuns(tuple(eps), names, (), (), Path("toy"), 2)


def _logits_for(labels: torch.Tensor, n_way: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, n_way).float()


def test_right_and_wrong_by_construction():
    runs = _toy_runs()
    right = score_lake(lambda e: _logits_for(e.query_y, e.n_way), runs)
    wrong = score_lake(lambda e: _logits_for((e.query_y + 1) % e.n_way, e.n_way), runs)
    assert right.error == 0 and right.per_run == (0.0,) * 20 and right.mistakes() == []
    assert wrong.error == 1 and wrong.per_run == (1.0,) * 20 and len(wrong.mistakes()) == 400
    assert right.binomial_ci95[0] == 0 and 0 < right.binomial_ci95[1] < 0.02
    assert wrong.binomial_ci95[1] == 1 and right.n_trials == 400


@pytest.mark.parametrize("k", [0, 1, 37, 250, 399, 400])
def test_right_on_exactly_k_items(k):
    """Right on the first k trials (runs in order, items in order): error (400 - k) / 400."""
    runs = _toy_runs()

    def predict(e):
        r = int(e.query_x[0, 0, 0, 0])
        item = e.query_x[:, 0, 0, 1].long()
        right = r * 20 + item < k
        return _logits_for(torch.where(right, e.query_y, (e.query_y + 1) % 20), 20)

    res = score_lake(predict, runs)
    assert res.error == (400 - k) / 400
    expected = [(20 - min(max(k - 20 * r, 0), 20)) / 20 for r in range(20)]  # wrong / 20
    assert res.per_run == pytest.approx(expected, abs=0)
    assert len(res.mistakes()) == 400 - k
    assert all(p != y for _, _, p, y in res.mistakes())
    mean = sum(expected) / 20
    s = float(torch.tensor(expected, dtype=torch.float64).std())
    assert res.ci95 == pytest.approx(1.96 * s / 20 ** 0.5)
    assert res.error == pytest.approx(mean)


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(20, 100)  # textbook: 0.1333 .. 0.2888
    assert lo == pytest.approx(0.1333, abs=1e-4) and hi == pytest.approx(0.2888, abs=1e-4)


def test_exercise_errors_below_human_level():
    """Chapter 8, exercise 2: at most 9 errors of 400 keep Wilson's upper end below 4.5 %."""
    assert max(k for k in range(40) if wilson_interval(k, 400)[1] < 0.045) == 9
    assert wilson_interval(9, 400)[1] == pytest.approx(0.0422, abs=5e-5)
    assert wilson_interval(10, 400)[1] == pytest.approx(0.0454, abs=5e-5)


@pytest.mark.parametrize("k, n", [(0, 400), (1, 400), (29, 400), (200, 400), (399, 400), (3, 7)])
def test_wilson_interval_solves_its_quadratic(k, n):
    """eq-wilson: both ends are the roots of (k/n - p)^2 = z^2 p (1 - p) / n (a brute-force
    scan of p finds the same crossings), clipped to [0, 1]."""
    z, phat = 1.96, k / n
    lo, hi = wilson_interval(k, n, z)
    for p in (lo, hi):
        if 0 < p < 1:
            assert (phat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9, abs=1e-15)
    grid = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    inside = grid[(phat - grid) ** 2 <= z * z * grid * (1 - grid) / n]
    assert float(inside.min()) == pytest.approx(lo, abs=1e-5) and float(inside.max()) == pytest.approx(hi, abs=1e-5)


def test_bad_logits_are_refused():
    runs = _toy_runs(2, 5)
    with pytest.raises(ValueError, match="expected \\(5, 5\\)"):
        score_lake(lambda e: torch.zeros(5, 4), runs)
    with pytest.raises(ValueError, match="NaN"):
        score_lake(lambda e: torch.full((5, 5), float("nan")), runs)


def test_a_method_is_scored_through_make_predict():
    from fewshot_tutorial.methods import ProtoNet

    method = ProtoNet(ProtoNet.Config())
    method.train()
    runs = _toy_runs(2, 5)
    runs = LakeRuns(tuple(Episode(torch.rand(5, 1, 28, 28), e.support_y, torch.rand(5, 1, 28, 28), e.query_y)
                          for e in runs), runs.run_names, (), (), Path("toy"), 28)
    res = score_lake(method, runs)
    assert 0 <= res.error <= 1 and not method.training  # put in eval mode by the engine


def test_published_anchors():
    assert LAKE_PUBLISHED == {"humans": 0.045, "BPL": 0.033, "deep convnet (Lake et al.)": 0.135,
                              "Siamese convnet (Koch et al.)": 0.080}


# --- the real runs ------------------------------------------------------------------


@needs_data
def test_real_runs(data_root, evaluation):
    runs = load_lake_runs(data_root)
    assert len(runs) == 20 and runs.run_names[-1] == "run20"
    for e in runs:
        assert e.support_x.shape == (20, 1, 28, 28) and e.query_x.shape == (20, 1, 28, 28)
        assert sorted(e.query_y.tolist()) == list(range(20))  # one test item per class
    assert runs[0].query_y[0] == 7  # run01/test/item01.png run01/training/class08.png
    x = torch.cat([torch.cat([e.support_x, e.query_x]) for e in runs])
    ref = evaluation.images[:50].flatten(0, 1)
    # same polarity as the package's Omniglot: paper (the most common value) is 0, ink is rare
    assert torch.mode(x.flatten()).values == torch.mode(ref.flatten()).values == 0
    assert 0.03 < x.mean() < 0.2 and abs(x.mean() - ref.mean()) < 0.05
    assert x.min() == 0 and x.max() == 1


@needs_data
def test_pixel_baseline_on_real_runs(data_root):
    res = score_lake(pixel_nearest_neighbour, load_lake_runs(data_root))
    assert res.n_trials == 400 and len(res.per_run) == 20
    assert 0.6 < res.error < 0.95  # raw pixels barely beat chance (95%)
