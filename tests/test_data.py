"""Loading Omniglot: counts, resizing, polarity, rotations, caching and every bad input."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from fewshot_tutorial.data import load_omniglot, rotate
from fewshot_tutorial.data import omniglot as om
from tests.conftest import make_tiny_omniglot, needs_data

SPLIT_SIZES = {
    "background": 964,
    "evaluation": 659,
    "vinyals/train": 4112,
    "vinyals/val": 688,
    "vinyals/trainval": 4800,
    "vinyals/test": 1692,
}


@needs_data
@pytest.mark.parametrize("split,n", SPLIT_SIZES.items())
def test_split_sizes_and_format(data_root, split, n):
    d = load_omniglot(data_root, split=split)
    assert d.images.shape == (n, 20, 1, 28, 28)
    assert d.images.dtype == torch.float32
    assert d.images.min() >= 0 and d.images.max() <= 1
    assert len(set(d.class_names)) == n
    parts = 3 if split.startswith("vinyals/") else 2
    assert all(len(c.split("/")) == parts for c in d.class_names)


@needs_data
def test_alphabet_counts(background, evaluation):
    assert len({c.split("/")[0] for c in background.class_names}) == 30
    assert len({c.split("/")[0] for c in evaluation.class_names}) == 20


@needs_data
def test_ink_is_one_and_rare(evaluation):
    # strokes are thin: ink (=1) covers a small minority of the pixels
    assert 0.02 < evaluation.images.mean().item() < 0.2
    assert (evaluation.images[:, :, :, 0, 0] < 0.5).float().mean() > 0.99  # corners are paper


@needs_data
def test_vinyals_rotation_is_counter_clockwise(data_root, evaluation):
    test = load_omniglot(data_root, split="vinyals/test")
    name = test.class_names[0].rsplit("/", 1)[0]
    base = evaluation.images[evaluation.class_names.index(name)]
    for deg in (0, 90, 180, 270):
        img = test.images[test.class_names.index(f"{name}/rot{deg:03d}")]
        assert torch.equal(img, torch.rot90(base, deg // 90, dims=(-2, -1)))


def test_rotate_direction():
    x = torch.zeros(1, 3, 3)
    x[0, 0, 2] = 1  # top-right
    assert rotate(x, 90)[0, 0, 0] == 1  # counter-clockwise: top-right -> top-left
    assert rotate(x, 180)[0, 2, 0] == 1  # -> bottom-left
    assert rotate(x, 270)[0, 2, 2] == 1  # -> bottom-right
    with pytest.raises(ValueError, match="multiple of 90"):
        rotate(x, 45)


@needs_data
def test_resizing_105_to_28_matches_the_shipped_28(data_root, tmp_path):
    """Our antialiased 105 -> 28 resize agrees with the shipped Lanczos-resized images."""
    src = data_root / "omniglot105" / "images_background_small1.zip"
    if not src.is_file():
        pytest.skip("omniglot105 samples not present")
    small, names = om.load_source(src, "images_background_small1", 28)
    with zipfile.ZipFile(src) as zf:
        assert om._decode(zf.read(zf.namelist()[3]), 105).shape == (105, 105)
    full, full_names = om.load_source(data_root / "omniglot28" / "images_background.zip", "images_background", 28)
    idx = [full_names.index(n) for n in names[:20]]
    ours = small[:20].float() / 255
    ref = full[idx].float() / 255  # 1-bit: 0 or 1
    agree = ((ours > 0.5) == (ref > 0.5)).float().mean().item()
    assert agree > 0.95, agree
    assert small.shape[1:] == (20, 28, 28)


def test_tiny_zip_polarity_and_layout(tmp_path):
    make_tiny_omniglot(tmp_path, size=12)
    d = load_omniglot(tmp_path, split="background", image_size=12)
    assert d.images.shape == (6, 20, 1, 12, 12)
    assert d.class_names[0] == "Alphabet_0/character01"
    # the black pixel at (row a, col c) is ink = 1, everything else 0
    assert d.images[4, 0, 0, 1, 1] == 1.0
    assert d.images[4, 0, 0].sum() == 1.0


@pytest.mark.parametrize("layout", ["zip", "folder", "torchvision"])
def test_layouts(tmp_path, layout):
    if layout == "zip":
        make_tiny_omniglot(tmp_path)
    elif layout == "folder":
        make_tiny_omniglot(tmp_path, as_zip=False)
    else:  # torchvision extracts to <root>/omniglot-py/images_background/
        make_tiny_omniglot(tmp_path / "omniglot-py", as_zip=False)
    d = load_omniglot(tmp_path, split="background", image_size=12)
    assert d.n_classes == 6 and d.n_per_class == 20


def test_cache_is_reused_then_rebuilt_when_source_changes(tmp_path, monkeypatch):
    make_tiny_omniglot(tmp_path, n_chars=2)
    a = load_omniglot(tmp_path, split="background", image_size=12)
    calls = []
    real = om._decode_source
    monkeypatch.setattr(om, "_decode_source", lambda *x: calls.append(1) or real(*x))
    b = load_omniglot(tmp_path, split="background", image_size=12)
    assert calls == [] and torch.equal(a.images, b.images)  # served from the cache
    make_tiny_omniglot(tmp_path, n_chars=3)  # the source changes
    c = load_omniglot(tmp_path, split="background", image_size=12)
    assert calls == [1] and c.n_classes == 6


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_omniglot(tmp_path / "nowhere", split="evaluation")
    msg = str(e.value)
    assert "nowhere" in msg and "FEWSHOT_DATA" in msg and "download=True" in msg


def test_download_uses_torchvision(tmp_path, monkeypatch):
    """download=True goes through torchvision's Omniglot downloader (faked: no network)."""
    import torchvision.datasets

    seen = []

    class FakeOmniglot:
        def __init__(self, root, background, download):
            seen.append((root, background, download))
            name = "images_background" if background else "images_evaluation"
            make_tiny_omniglot(tmp_path / "omniglot-py", name=name, as_zip=False)

    monkeypatch.setattr(torchvision.datasets, "Omniglot", FakeOmniglot)
    d = load_omniglot(tmp_path, split="evaluation", image_size=12, download=True)
    assert d.n_classes == 6 and seen and all(s[2] for s in seen)


def test_corrupt_zip_gives_clear_error_and_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache))
    (tmp_path / "images_background.zip").write_bytes(b"this is not a zip" * 100)
    with pytest.raises(ValueError, match="not a readable zip"):
        load_omniglot(tmp_path, split="background")
    assert not cache.exists() or not any(cache.iterdir())


def test_truncated_zip_gives_clear_error_and_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache))
    path = make_tiny_omniglot(tmp_path / "src")
    data = path.read_bytes()
    (tmp_path / "images_background.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        load_omniglot(tmp_path, split="background", image_size=12)
    assert not cache.exists() or not any(cache.iterdir())


def test_foreign_zip_is_rejected(tmp_path):
    with zipfile.ZipFile(tmp_path / "images_background.zip", "w") as zf:
        zf.writestr("cats/tabby.png", b"x")
    with pytest.raises(ValueError, match="official Omniglot layout"):
        load_omniglot(tmp_path, split="background")


@pytest.mark.parametrize("kwargs,match", [({"split": "train"}, "unknown split"),
                                          ({"image_size": 0}, "image_size")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_omniglot(tmp_path, **kwargs)


def test_default_root_reads_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path))
    assert om.default_root() == tmp_path
    monkeypatch.delenv("FEWSHOT_DATA")
    assert "fewshot_tutorial" in str(om.default_root())


def test_shipped_split_files():
    for split, n in SPLIT_SIZES.items():
        if split.startswith("vinyals/"):
            names = om.split_names(split)
            assert len(names) == n
            assert {n.rsplit("/", 1)[1] for n in names} == {"rot000", "rot090", "rot180", "rot270"}
    train, val, test = (set(om.split_names(f"vinyals/{s}")) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val == set(om.split_names("vinyals/trainval"))


def test_image_folder_loader(tmp_path):
    from fewshot_tutorial.data import load_image_folder
    from PIL import Image

    for c, n in (("cat", 4), ("dog", 5)):
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.fromarray(np.full((20, 30), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    d = load_image_folder(tmp_path, image_size=8)
    assert d.images.shape == (2, 4, 1, 8, 8) and d.class_names == ["cat", "dog"]
    assert torch.allclose(d.images[0, 1], torch.full((1, 8, 8), 40 / 255), atol=1e-6)
    rgb = load_image_folder(tmp_path, image_size=8, grayscale=False, n_per_class=2)
    assert rgb.images.shape == (2, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="n_per_class=5"):
        load_image_folder(tmp_path, n_per_class=5)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing")
