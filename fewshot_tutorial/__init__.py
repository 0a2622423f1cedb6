"""fewshot_tutorial: few-shot learning and meta-learning, derived and tested.

The package behind the *fewshot-tutorial* book. Quick start::

    from fewshot_tutorial import load_omniglot, EpisodeSampler
    data = load_omniglot(split="evaluation")           # FEWSHOT_DATA or the user cache
    episode = EpisodeSampler(data, n_way=5, n_shot=1, n_query=15, seed=0).sample()
"""

from .backbones import Conv4
from .baselines import pixel_nearest_neighbour
from .checkpoints import load_checkpoint, save_checkpoint
from .data import (
    Episode,
    EpisodeSampler,
    FewShotDataset,
    load_image_folder,
    load_omniglot,
)
from .device import Profile, get_device, get_profile, seed_everything
from .evaluation import EvalResult, confidence_interval, evaluate
from .training import History, train

__version__ = "0.1.0"

__all__ = [
    "Conv4",
    "Episode",
    "EpisodeSampler",
    "EvalResult",
    "FewShotDataset",
    "History",
    "Profile",
    "confidence_interval",
    "evaluate",
    "get_device",
    "get_profile",
    "load_checkpoint",
    "load_image_folder",
    "load_omniglot",
    "pixel_nearest_neighbour",
    "save_checkpoint",
    "seed_everything",
    "train",
]
