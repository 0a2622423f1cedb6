"""Data: Omniglot and image folders as few-shot datasets, episodes and their sampler."""

from .dataset import FewShotDataset
from .episodes import Episode, EpisodeSampler
from .folder import load_image, load_image_folder
from .omniglot import SPLITS, IncompleteDataWarning, default_root, load_omniglot, rotate

__all__ = [
    "SPLITS",
    "Episode",
    "EpisodeSampler",
    "FewShotDataset",
    "IncompleteDataWarning",
    "default_root",
    "load_image",
    "load_image_folder",
    "load_omniglot",
    "rotate",
]
