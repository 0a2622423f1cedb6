"""Lake et al.'s one-shot classification challenge: 20 runs of 20-way 1-shot.

Lake, Salakhutdinov & Tenenbaum (2015, Science 350:1332) fixed 20 runs, each
20 characters of one evaluation alphabet: one drawing of each to learn from
(``runNN/training/classKK.png``) and 20 drawings by other people to classify
(``runNN/test/itemMM.png``), with the answers in ``runNN/class_labels.txt``, one line
``runNN/test/itemMM.png runNN/training/classKK.png`` per test item. The official file is
``all_runs.zip`` of the Omniglot repository (:data:`LAKE_URL`), which this module reads
as a zip or as an extracted folder (with or without a top folder around the runs).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .episodes import Episode, as_int
from .folder import IMAGE_ERRORS, describe
from .omniglot import _decode, _to_float, default_root
from .sources import _ZIP_READ_ERRORS, check_member_path, open_zip

LAKE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/one-shot-classification/all_runs.zip"
LAKE_MD5 = "e8996daecdf12afeeb4a53a179f06b19"
LAKE_FILE = "all_runs.zip"
_RUN = re.compile(r"^(?:(.+)/)?(run\d+)/(class_labels\.txt|training/class\d+\.png|test/item\d+\.png)$")


@dataclass(frozen=True)
class LakeRuns:
    """Lake et al.'s runs as episodes, with the file behind every image.

    Attributes:
        episodes: one :class:`Episode` per run: ``support_x: [n_way, 1, H, W]`` (the
            training drawings, labels ``0..n_way-1`` in ``classKK`` order) and
            ``query_x: [n_items, 1, H, W]`` (the test items in ``itemMM`` order) with
            their true labels ``query_y`` from ``class_labels.txt``.
        run_names: ``("run01", ..., "run20")``.
        support_files, query_files: per run, the images' paths inside the runs
            (e.g. ``"run01/training/class08.png"``), in the episodes' order.
        source: the zip or folder they were read from.
        image_size: side of the images.
    """

    episodes: tuple[Episode, ...]
    run_names: tuple[str, ...]
    support_files: tuple[tuple[str, ...], ...]
    query_files: tuple[tuple[str, ...], ...]
    source: Path
    image_size: int

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self):
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]


def find_lake_runs(root: Path) -> Path | None:
    """The zip or folder holding the runs at ``root`` (itself, ``all_runs[.zip]`` or ``lake_runs/...``)."""
    if root.is_file():
        return root
    for d in (root, root / "lake_runs"):
        if d.is_dir() and any(d.glob("run[0-9]*/class_labels.txt")):
            return d
        for cand in (d / LAKE_FILE, d / "all_runs"):
            if cand.is_file() or (cand.is_dir() and any(cand.iterdir())):
                return cand
    return None


def _read_files(source: Path) -> dict[str, tuple[str, bytes]]:
    """``{"runNN/...": (where, bytes)}`` for every run file of a zip or folder (top folder dropped)."""
    if source.is_file():
        with open_zip(source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            for n in names:
                check_member_path(source, n)
            items = [(n, f"{n} in {source}", lambda n=n: zf.read(n)) for n in names]
            return _keep_runs(source, items)
    items = [(p.relative_to(source).as_posix(), str(p), p.read_bytes)
             for p in sorted(source.rglob("*")) if p.is_file()]
    return _keep_runs(source, items)


def _keep_runs(source: Path, items: list) -> dict[str, tuple[str, bytes]]:
    out, tops = {}, set()
    for name, where, read in items:
        m = _RUN.match(name)
        if m:
            tops.add(m.group(1))
            try:
                out[name if m.group(1) is None else name[len(m.group(1)) + 1:]] = (where, read())
            except _ZIP_READ_ERRORS as e:
                raise ValueError(f"cannot read {where} ({describe(e)}); re-extract or re-download {LAKE_FILE}.") from e
    if not out:
        raise ValueError(f"{source} holds no 'runNN/class_labels.txt', 'runNN/training/classKK.png' or "
                         f"'runNN/test/itemMM.png' files; point at Lake's {LAKE_FILE} (from {LAKE_URL}).")
    if len(tops) > 1:
        raise ValueError(f"{source} holds runs under several top folders {sorted(map(str, tops))}; keep one.")
    return out


def _labels(run: str, files: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """``{test item: training class}`` from ``run/class_labels.txt``, every name checked."""
    key = f"{run}/class_labels.txt"
    if key not in files:
        raise ValueError(f"{run}/class_labels.txt is missing; without it the run's answers are unknown. "
                         "Re-extract or re-download all_runs.zip.")
    where, data = files[key]
    answers = {}
    for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{where}, line {i}: expected 'runNN/test/itemMM.png runNN/training/classKK.png', "
                             f"got {line.strip()!r}")
        item, cls = parts
        for name in (item, cls):
            if name not in files:
                raise ValueError(f"{where}, line {i} names {name}, which is not in the runs; "
                                 "re-extract or re-download all_runs.zip.")
        if not (item.startswith(f"{run}/test/") and cls.startswith(f"{run}/training/")):
            raise ValueError(f"{where}, line {i}: {line.strip()!r} does not pair a {run}/test item "
                             f"with a {run}/training class")
        answers[item] = cls
    return answers


def _decode_file(where: str, data: bytes, image_size: int) -> np.ndarray:
    try:
        return _decode(data, image_size)
    except IMAGE_ERRORS as e:
        raise ValueError(f"cannot decode {where} ({describe(e)}); re-extract or re-download all_runs.zip.") from e


def _run_episode(run: str, files: dict, image_size: int) -> tuple[Episode, tuple[str, ...], tuple[str, ...]]:
    classes = sorted(k for k in files if k.startswith(f"{run}/training/"))
    items = sorted(k for k in files if k.startswith(f"{run}/test/"))
    answers = _labels(run, files)
    unlabelled = [k for k in items if k not in answers]
    if not classes or unlabelled:
        missing = "no training/classKK.png" if not classes else f"no line for {unlabelled[0]}"
        raise ValueError(f"{files[f'{run}/class_labels.txt'][0]} has {missing}; "
                         "re-extract or re-download all_runs.zip.")
    decode = lambda k: _decode_file(files[k][0], files[k][1], image_size)
    support = _to_float(torch.from_numpy(np.stack([decode(k) for k in classes]))[None])[0]
    query = _to_float(torch.from_numpy(np.stack([decode(k) for k in items]))[None])[0]
    y = torch.tensor([classes.index(answers[k]) for k in items])
    episode = Episode(support, torch.arange(len(classes)), query, y, n_way=len(classes))
    return episode, tuple(classes), tuple(items)


def _download(folder: Path) -> Path:
    """Fetch :data:`LAKE_URL` into ``folder`` with torchvision's downloader (md5-checked)."""
    from torchvision.datasets.utils import download_url

    download_url(LAKE_URL, str(folder), filename=LAKE_FILE, md5=LAKE_MD5)
    return folder / LAKE_FILE


def load_lake_runs(
    root: str | os.PathLike | None = None,
    image_size: int = 28,
    download: bool = False,
) -> LakeRuns:
    """Load Lake et al.'s 20 one-shot runs as 20 episodes of 20-way 1-shot (20 queries each).

    Preprocessing: each 105x105 drawing is decoded by the very function that decodes
    Omniglot's own sources (``omniglot._decode``: grey levels, antialiased Lanczos resize
    to ``image_size``, ink = 1 on paper = 0), so a run's images are what
    :func:`~fewshot_tutorial.data.load_omniglot` gives for a 105x105 download (e.g.
    torchvision's). One caveat: the shipped ``omniglot28`` zips were resized by Pillow
    from 1-bit images, for which Pillow ignores Lanczos and samples the nearest pixel,
    so those training images are binary while these are grey at the strokes' edges.
    Same polarity and scale, slightly softer edges; we kept the package's one decoder
    rather than imitate that accident.

    Args:
        root: ``all_runs.zip``, its extracted folder (``runNN/...``, optionally inside a
            top folder), or a folder holding either directly or under ``lake_runs/``.
            Default: :func:`~fewshot_tutorial.data.default_root` (``FEWSHOT_DATA`` or the
            per-user cache).
        image_size: side of the square images (default 28, as the training images).
        download: fetch ``all_runs.zip`` from the official repository (:data:`LAKE_URL`)
            into ``root/lake_runs/`` when nothing is found.

    Returns:
        :class:`LakeRuns` with one episode per run, in run order.

    Raises:
        FileNotFoundError: no runs at ``root`` and ``download`` is False.
        ValueError: an unreadable zip or image, a run without ``class_labels.txt``, a
            label line naming a file that is not there, a test item without a label
            (the message names the file); ``image_size < 4``.
        TypeError: ``image_size`` is not an int.
    """
    image_size = as_int("image_size", image_size, minimum=4)
    root = Path(root).expanduser() if root is not None else default_root()
    source = find_lake_runs(root)
    if source is None and download:
        source = _download(root / "lake_runs")
    if source is None:
        raise FileNotFoundError(
            f"Lake's one-shot runs were not found at {root} (looked for {LAKE_FILE}, all_runs/ or runNN/ "
            f"folders there and under lake_runs/). Set FEWSHOT_DATA (or pass root=...) to a folder holding "
            f"lake_runs/{LAKE_FILE}, or pass download=True (CLI: --download) to fetch it from {LAKE_URL}."
        )
    files = _read_files(source)
    runs = sorted({k.split("/", 1)[0] for k in files})
    built = [_run_episode(run, files, image_size) for run in runs]
    return LakeRuns(tuple(b[0] for b in built), tuple(runs), tuple(b[1] for b in built),
                    tuple(b[2] for b in built), source, image_size)
