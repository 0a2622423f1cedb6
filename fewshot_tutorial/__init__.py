"""fewshot_tutorial: few-shot learning and meta-learning, derived and tested.

The package behind the *fewshot-tutorial* book. Quick start::

    from fewshot_tutorial import load_omniglot, EpisodeSampler
    data = load_omniglot(split="evaluation")           # FEWSHOT_DATA or the user cache
    episode = EpisodeSampler(data, n_way=5, n_shot=1, n_query=15, seed=0).sample()
"""

from .backbones import Conv4
from .baselines import pixel_nearest_neighbour
from .checkpoints import load_checkpoint, load_model, save_checkpoint, save_model
from .data import (
    Episode,
    EpisodeSampler,
    FewShotDataset,
    load_image,
    load_image_folder,
    load_lake_runs,
    load_omniglot,
)
from .device import Profile, get_device, get_profile, seed_everything
from .evaluation import EvalResult, classify, confidence_interval, evaluate, paired_difference
from .inner_loop import adapt, meta_loss
from .lake import LAKE_PUBLISHED, LakeResult, score_lake
from .methods import (FOMAML, MAML, MANN, METHODS, Baseline, BaselinePP, Distill, LSTMLearner, MatchingNetwork,
                      MetaLSTM, MetaSGD, Method, ProtoNet, ProtoNetMultiTask, Reptile, Siamese)
from .training import History, fit, train

__version__ = "0.1.0"

__all__ = [
    "FOMAML",
    "Baseline",
    "BaselinePP",
    "Distill",
    "LSTMLearner",
    "MAML",
    "MANN",
    "METHODS",
    "MatchingNetwork",
    "MetaLSTM",
    "MetaSGD",
    "Method",
    "ProtoNet",
    "ProtoNetMultiTask",
    "Reptile",
    "Siamese",
    "adapt",
    "classify",
    "load_image",
    "fit",
    "load_model",
    "meta_loss",
    "paired_difference",
    "save_model",
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
    "load_lake_runs",
    "LAKE_PUBLISHED",
    "LakeResult",
    "score_lake",
    "load_omniglot",
    "pixel_nearest_neighbour",
    "save_checkpoint",
    "seed_everything",
    "train",
]
