"""Random affine distortions of training images (Koch et al. 2015, section 3.3).

Koch et al. trained their Siamese network on pairs whose images were each distorted by
a small random affine map: a rotation, a shear, a scaling and a translation. Strokes
stay strokes and a character stays the same character, but the network no longer sees
the very same pixels twice, which is most of what separates an error of 8 % on Lake et
al.'s one-shot runs from one twice as large. :class:`RandomAffine` draws one such map
per image, on the images' own device; ``fit(..., augment=RandomAffine())`` applies it to
every training batch (:func:`augment_batch`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .data.episodes import Episode
from .data.sequences import SequenceEpisode


def affine_matrices(angle: torch.Tensor, shear: torch.Tensor, scale: torch.Tensor,
                    shift: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 3]`` maps ``R(angle) @ Shear(shear) @ diag(scale)`` plus ``shift``.

    Args:
        angle: ``[B]`` rotation, radians.
        shear: ``[B, 2]`` shear factors (x by y, y by x).
        scale: ``[B, 2]`` scale of x and y.
        shift: ``[B, 2]`` translation in ``affine_grid``'s units (the image spans -1..1).
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [B, 2, 2]
    one = torch.ones_like(angle)
    sh = torch.stack([torch.stack([one, shear[:, 0]], -1), torch.stack([shear[:, 1], one], -1)], -2)
    linear = rot @ sh @ torch.diag_embed(scale)
    return torch.cat([linear, shift.unsqueeze(-1)], -1)


@dataclass(frozen=True)
class RandomAffine:
    """One random affine distortion per image: ``images [B, C, H, W] -> [B, C, H, W]``.

    Each parameter is drawn uniformly: rotation within ``±degrees``, shear factors within
    ``±shear``, scales within ``1 ± scale``, translation within ``±translate`` of the
    image's side. Ink is 1 and paper 0, so the border is filled with paper.

    Attributes:
        degrees, shear, scale, translate: the ranges (Koch et al.: 10 degrees, 0.3, 0.2,
            and 2 of 105 pixels; the defaults translate by up to a tenth of the side).
        seed: seed of the draws (a generator on the CPU, so the same seed gives the same
            distortions on every device).
    """

    degrees: float = 10.0
    shear: float = 0.3
    scale: float = 0.2
    translate: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("degrees", "shear", "scale", "translate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"RandomAffine: {name} must be a finite number >= 0, got {v!r}")
        if self.scale >= 1:
            raise ValueError(f"RandomAffine: scale must be < 1 (scales within 1 ± scale), got {self.scale}")
        object.__setattr__(self, "_generator", torch.Generator().manual_seed(self.seed))

    def draw(self, n: int) -> torch.Tensor:
        """The next ``n`` maps, ``[n, 2, 3]`` float32 on the CPU."""
        u = torch.rand(n, 7, generator=self._generator) * 2 - 1  # uniform in [-1, 1]
        return affine_matrices(u[:, 0] * math.radians(self.degrees), u[:, 1:3] * self.shear,
                               1 + u[:, 3:5] * self.scale, u[:, 5:7] * 2 * self.translate)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"RandomAffine expects images [B, C, H, W], got shape {tuple(images.shape)}")
        theta = self.draw(len(images)).to(images.device)
        x = images.float()
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        fmt = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) and \
            not images.is_contiguous() else torch.contiguous_format
        return out.to(images.dtype).contiguous(memory_format=fmt)


def _images(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point()


def augment_batch(batch: Any, augment: RandomAffine) -> Any:
    """``batch`` with every training image distorted by ``augment`` (each image its own map).

    An :class:`~fewshot_tutorial.data.Episode` has its support and query images
    distorted, a :class:`~fewshot_tutorial.data.SequenceEpisode` its images; a tuple or list (``(images, labels)``, a Siamese ``(x1, x2, same)`` pair
    batch, a list of episodes) every item that is a batch of images ``[B, C, H, W]`` or
    an episode.

    Raises:
        TypeError: a batch with no images to distort (distort your own batches before ``fit``).
    """
    if isinstance(batch, Episode):
        return dataclasses.replace(batch, support_x=augment(batch.support_x), query_x=augment(batch.query_x))
    if isinstance(batch, SequenceEpisode):  # x: [(B,) T, C, H, W]
        flat = batch.x.reshape(-1, *batch.x.shape[-3:])
        return dataclasses.replace(batch, x=augment(flat).reshape(batch.x.shape))
    if isinstance(batch, (tuple, list)) and any(_images(b) or isinstance(b, Episode) for b in batch):
        return type(batch)([augment_batch(b, augment) if _images(b) or isinstance(b, Episode) else b
                            for b in batch])
    if _images(batch):
        return augment(batch)
    raise TypeError(f"augment applies to episodes and batches of images [B, C, H, W], not "
                    f"{type(batch).__name__}; distort the images of your own batches before fit")


def tta_predict(method: Any, n_copies: int, device: torch.device | str | None = None,
                augment: RandomAffine | None = None, precision: str | None = None):
    """``episode -> logits [n_query, n_way]`` (float32) with test-time augmentation.

    Every support and query image is embedded as it is and as ``n_copies`` distorted
    copies (each its own map); the ``n_copies + 1`` embeddings are averaged in float32,
    and the method's head classifies the queries from the averages. It runs as
    :func:`~fewshot_tutorial.evaluation.make_predict` does: the method in eval mode on
    ``device`` (channels-last where the method uses it), under ``no_grad`` and the
    method's autocast precision, so ``n_copies=0`` is the method's own prediction (up to
    embedding support and queries in two calls instead of one).

    Args:
        method: a metric-learning method with ``embed(x [B, C, H, W]) -> [B, D]`` and
            ``head(support_z, support_y, query_z, n_way) -> logits`` (ProtoNet and its
            variants).
        n_copies: distorted copies per image, ``>= 0``.
        device: where to run (default: where the method's parameters are).
        augment: the distortions (default ``RandomAffine(seed=1)``). It is shared by all
            calls and its draws go on, so the same episode scored twice gets other copies.
        precision: autocast precision (default: the method's own, as in ``make_predict``).

    Raises:
        TypeError: the method has no ``embed`` and ``head`` to average between.
        ValueError: ``n_copies`` is negative.
    """
    from .device import autocast
    from .evaluation import prepare_for_inference

    if not (callable(getattr(method, "embed", None)) and callable(getattr(method, "head", None))):
        raise TypeError(f"tta_predict averages embeddings, so it needs a method with embed and head "
                        f"(ProtoNet and its variants); {type(method).__name__} has not both")
    if not isinstance(n_copies, int) or n_copies < 0:
        raise ValueError(f"tta_predict: n_copies must be an integer >= 0, got {n_copies!r}")
    augment = RandomAffine(seed=1) if augment is None else augment
    device = next(method.parameters()).device if device is None else torch.device(device)
    cl, dtype = prepare_for_inference(method, device, precision)

    def embed(x: torch.Tensor) -> torch.Tensor:
        views = [method.embed(x)] + [method.embed(augment(x)) for _ in range(n_copies)]
        return torch.stack([v.float() for v in views]).mean(0)

    def predict(episode: Episode) -> torch.Tensor:
        episode = episode.to(device, channels_last=cl)
        with torch.no_grad(), autocast(device, dtype):
            return method.head(embed(episode.support_x), episode.support_y, embed(episode.query_x),
                               episode.n_way).float()

    return predict
