"""Bad input to the loaders (issue 14, part 2): each gives a message that says what to
do, or works with a warning; none loses work or gives a wrong answer silently."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_tutorial.cli import main
from fewshot_tutorial.data import IncompleteDataWarning, load_image, load_image_folder, load_omniglot
from fewshot_tutorial.data import cache as cache_mod
from fewshot_tutorial.data import omniglot as om
from tests.conftest import make_tiny_omniglot, needs_data

pytestmark = pytest.mark.filterwarnings("ignore:.*holds \\d+ characters, but the official:UserWarning")


def tiny_zip(folder, members: dict[str, bytes], name="images_background", compression=zipfile.ZIP_STORED):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w", compression) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def drawing(value=255, size=12, ink=(0, 0), compress_level=6) -> bytes:
    img = np.full((size, size), value, np.uint8)
    img[ink] = 255 - value
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def one_class(n=20, prefix="images_background/A/character01", **kw) -> dict[str, bytes]:
    return {f"{prefix}/{i:02d}.png": drawing(**kw) for i in range(n)}


# ------------------------------------------------------------------- unwritable cache
@pytest.mark.parametrize("how", ["under_a_file", "permission_denied", "read_only_dir"])
def test_unwritable_cache_warns_once_and_returns_the_data(tmp_path, monkeypatch, how):
    make_tiny_omniglot(tmp_path / "data", n_chars=2)
    make_tiny_omniglot(tmp_path / "data", name="images_evaluation", n_chars=1)
    if how == "under_a_file":
        (tmp_path / "a_file").write_text("not a folder")
        cache = tmp_path / "a_file" / "cache"
    elif how == "permission_denied":
        cache = tmp_path / "cache"

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(cache))

        monkeypatch.setattr(cache_mod.tempfile, "mkstemp", refuse)
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write to a read-only folder")
        cache = tmp_path / "cache"
        cache.mkdir()
        cache.chmod(0o500)
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache))
    with pytest.warns(UserWarning, match="cannot write the decoded-image cache") as record:
        bg = load_omniglot(tmp_path / "data", split="background", image_size=12)
        ev = load_omniglot(tmp_path / "data", split="evaluation", image_size=12)
    assert bg.images.shape == (4, 20, 1, 12, 12) and ev.images.shape == (2, 20, 1, 12, 12)
    assert sum("decoded-image cache" in str(w.message) for w in record) == 1  # once
    assert "FEWSHOT_CACHE" in str(record[0].message)
    assert not cache.is_dir() or not list(cache.iterdir())  # no temporary file left behind


# ------------------------------------------------------- partial folder beside the zip
def test_partly_extracted_folder_loses_to_the_complete_zip(tmp_path):
    make_tiny_omniglot(tmp_path, n_chars=3)  # the zip: 6 characters
    folder = make_tiny_omniglot(tmp_path / "partial", as_zip=False, n_alphabets=1, n_chars=1)
    folder.rename(tmp_path / "images_background")  # 1 character extracted so far
    with pytest.warns(IncompleteDataWarning, match="using the zip"):
        d = load_omniglot(tmp_path, split="background", image_size=12)
    assert d.n_classes == 6


def test_complete_folder_still_wins_over_the_zip(tmp_path):
    make_tiny_omniglot(tmp_path, n_chars=2)
    make_tiny_omniglot(tmp_path, as_zip=False, n_chars=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteDataWarning)
        assert om.find_source(tmp_path, "images_background") == tmp_path / "images_background"


def test_a_split_with_an_unknown_number_of_characters_warns(tmp_path):
    make_tiny_omniglot(tmp_path, name="images_evaluation")
    with pytest.warns(IncompleteDataWarning, match="6 characters, but the official images_evaluation has 659"):
        load_omniglot(tmp_path, split="evaluation", image_size=12)


@needs_data
def test_the_official_splits_do_not_warn(data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteDataWarning)
        for split in ("background", "evaluation"):
            load_omniglot(data_root, split=split)


# ---------------------------------------------------------------- unsafe zip members
@pytest.mark.parametrize("member", [
    "images_background/../../evil.png",
    "images_background/A/../evil.png",
    "/images_background/A/character01/evil.png",
    "images_background/./character01/evil.png",
    "images_background//character01/evil.png",
    "C:/images_background/A/evil.png",
])
def test_zip_members_that_climb_out_are_refused(tmp_path, member):
    path = tiny_zip(tmp_path, {**one_class(), member: drawing()})
    with pytest.raises(ValueError) as e:
        load_omniglot(tmp_path, split="background", image_size=12)
    assert member in str(e.value) and str(path) in str(e.value) and "download it again" in str(e.value)


def test_cli_reports_an_unsafe_zip_as_an_error(tmp_path, capsys):
    tiny_zip(tmp_path, {**one_class(), "images_background/../../evil.png": drawing()})
    assert main(["data", "--root", str(tmp_path), "--image-size", "12", "--splits", "background"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "evil.png" in err and "Traceback" not in err


# ------------------------------------------------------------ cache key and temp files
def test_cache_notices_a_zip_rewritten_with_same_size_and_mtime(tmp_path):
    """Uncompressed PNGs in a stored zip: other ink, same byte count, same mtime."""
    path = tiny_zip(tmp_path, one_class(compress_level=0, ink=(0, 0)))
    st = path.stat()
    a = load_omniglot(tmp_path, split="background", image_size=12)
    tiny_zip(tmp_path, one_class(compress_level=0, ink=(5, 5)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    b = load_omniglot(tmp_path, split="background", image_size=12)
    assert a.images[0, 0, 0, 0, 0] == 1 and b.images[0, 0, 0, 5, 5] == 1 and b.images[0, 0, 0, 0, 0] == 0


def test_stale_temporary_cache_files_are_removed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    killed = cache / f"images_background-12-0123~{dead}@{host}~x1.tmp.npz"
    live = cache / f"images_background-12-0123~{os.getpid()}@{host}~x2.tmp.npz"
    old = cache / "tmpabc.tmp.npz"  # the first cache version's name: no writer recorded
    young = cache / "tmpdef.tmp.npz"
    for p in (killed, live, old, young):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * cache_mod.STALE_SECONDS,) * 2)
    make_tiny_omniglot(tmp_path / "data", n_chars=1)
    load_omniglot(tmp_path / "data", split="background", image_size=12)
    assert not killed.exists() and not old.exists()
    assert live.exists() and young.exists()  # a writer may still be at work
    assert len(list(cache.glob("*.npz"))) == 3  # the two kept + the new cache file


# ------------------------------------------------------- messages instead of tracebacks
def _corrupt_first_member(path):
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 2, start + info.compress_size - 2):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return info.filename


def test_corrupt_deflated_member_names_the_member(tmp_path):
    path = tiny_zip(tmp_path, one_class(), compression=zipfile.ZIP_DEFLATED)
    member = _corrupt_first_member(path)
    with pytest.raises(ValueError) as e:
        load_omniglot(tmp_path, split="background", image_size=12)
    msg = str(e.value)
    assert f"{member} in {path}" in msg and "download it again" in msg


@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_decompression_bomb_names_the_file(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # a 12x12 drawing is then a "bomb"
    make_tiny_omniglot(tmp_path, n_chars=1, as_zip=layout == "zip")
    with pytest.raises(ValueError, match="DecompressionBombError") as e:
        load_omniglot(tmp_path, split="background", image_size=12)
    assert "Alphabet_0/character01/00_01.png" in str(e.value)


@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_unreadable_drawing_names_its_file_not_its_class(tmp_path, layout):
    members = {**one_class(19), "images_background/A/character01/19.png": b"\x89PNG garbage"}
    if layout == "zip":
        path = tiny_zip(tmp_path, members)
        where, fix = f"images_background/A/character01/19.png in {path}", "download it again"
    else:
        for k, v in members.items():
            (tmp_path / k).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / k).write_bytes(v)
        where, fix = str(tmp_path / "images_background/A/character01/19.png"), "remove or replace"
    with pytest.raises(ValueError) as e:
        load_omniglot(tmp_path, split="background", image_size=12)
    assert where in str(e.value) and fix in str(e.value)


def test_folder_named_like_a_drawing_is_reported(tmp_path):
    folder = make_tiny_omniglot(tmp_path, as_zip=False, n_chars=1)
    (folder / "Alphabet_0" / "character01" / "x.png").mkdir()
    with pytest.raises(ValueError, match="x.png is a folder, not a drawing; move or remove it"):
        load_omniglot(tmp_path, split="background", image_size=12)


# --------------------------------------------------------------- root is the zip itself
def test_root_may_be_the_zip_itself(tmp_path, capsys):
    path = make_tiny_omniglot(tmp_path, n_chars=2)
    d = load_omniglot(path, split="background", image_size=12)
    assert d.n_classes == 4
    assert main(["data", "--root", str(path), "--image-size", "12", "--splits", "background"]) == 0


def test_root_may_be_the_extracted_folder_itself(tmp_path):
    folder = make_tiny_omniglot(tmp_path, n_chars=2, as_zip=False)
    assert load_omniglot(folder, split="background", image_size=12).n_classes == 4


@pytest.mark.parametrize("as_zip", [True, False])
@pytest.mark.parametrize("split", ["evaluation", "vinyals/test"])
def test_root_as_another_split_says_to_pass_its_folder(tmp_path, split, as_zip):
    path = make_tiny_omniglot(tmp_path, as_zip=as_zip)
    what = "a file" if as_zip else "the images_background folder"
    folder = re.escape(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"is {what}.*pass the folder that contains.*root={folder}"):
        load_omniglot(path, split=split, image_size=12, download=True)  # and no download into it


# ------------------------------------------------------------------- image folders
def _class_folders(root, value, size=(20, 30)):
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            img = np.full(size, value, np.uint8)
            img[i, : 2 + i] = 255 - value  # a stroke
            Image.fromarray(img).save(root / c / f"{i}.png")


@pytest.mark.parametrize("invert,grayscale", [(False, True), (True, True), (False, False)])
def test_load_image_is_exactly_the_folder_preprocessing(tmp_path, invert, grayscale):
    _class_folders(tmp_path, value=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inverted on purpose here
        d = load_image_folder(tmp_path, image_size=8, grayscale=grayscale, invert=invert)
    x = load_image(tmp_path / "dog" / "2.png", 8, invert, grayscale=grayscale)
    assert x.shape == d.images.shape[2:] and x.dtype == torch.float32
    assert torch.equal(x, d.images[1, 2])


def test_inverted_looking_images_warn(tmp_path):
    _class_folders(tmp_path, value=250)  # dark strokes on white paper
    with pytest.warns(UserWarning, match="look inverted.*pass invert=True"):
        load_image_folder(tmp_path, image_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = load_image_folder(tmp_path, image_size=8, invert=True)
    assert d.images.mean() < 0.5


@pytest.mark.parametrize("bad", ["folder", "garbage", "bomb"])
def test_image_folder_errors_name_the_file(tmp_path, monkeypatch, bad):
    _class_folders(tmp_path, value=20)
    target = tmp_path / "cat" / "0.png"
    if bad == "folder":
        target.unlink()
        target.mkdir()
        match = "0.png is a folder, not an image; move or remove it"
    elif bad == "garbage":
        target.write_bytes(b"not an image")
        match = "cannot read .*0.png .*remove or replace it"
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        match = "cannot read .*0.png \\(PIL.Image.DecompressionBombError: "
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, image_size=8)
    with pytest.raises(ValueError, match=match):
        load_image(target)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_image_size_is_checked_before_any_file_is_read(tmp_path):
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        load_image(tmp_path / "any.png", 0)
    with pytest.raises(TypeError, match="image_size must be an int, got float"):
        load_image_folder(tmp_path, image_size=28.0)
    with pytest.raises(TypeError, match="image_size must be an int, got the bool"):
        load_omniglot(tmp_path, image_size=True)
    make_tiny_omniglot(tmp_path, n_chars=1)
    assert load_omniglot(tmp_path, image_size=np.int64(12)).image_shape == (1, 12, 12)
