"""Data: Omniglot, Lake's one-shot runs, handwritten digits and image folders as few-shot datasets, episodes and their sampler."""

from .class_batches import ClassBatchSampler
from .dataset import FewShotDataset
from .digits import load_digits
from .episodes import Episode, EpisodeSampler
from .folder import load_image, load_image_folder
from .lake import LakeRuns, load_lake_runs
from .sequences import SequenceEpisode, SequenceSampler
from .within_alphabet import WithinAlphabetSampler
from .omniglot import SPLITS, IncompleteDataWarning, default_root, load_omniglot, rotate

__all__ = [
    "SPLITS",
    "ClassBatchSampler",
    "Episode",
    "EpisodeSampler",
    "FewShotDataset",
    "IncompleteDataWarning",
    "LakeRuns",
    "SequenceEpisode",
    "SequenceSampler",
    "WithinAlphabetSampler",
    "default_root",
    "load_digits",
    "load_image",
    "load_image_folder",
    "load_lake_runs",
    "load_omniglot",
    "rotate",
]
