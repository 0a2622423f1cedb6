"""Every method of the book on one interface (:class:`Method`); ``METHODS`` maps a name to its class.

Adding a method is writing one file here: a config dataclass, what it trains on,
its loss, and ``predict`` (or ``embed`` + ``head``). See the book's "Adding a method".
"""

from .base import Config, EpisodicConfig, Method
from .baseline import Baseline, BaselinePP
from .distill import Distill
from .maml import FOMAML, MAML, Reptile
from .mann import MANN, LSTMLearner
from .matching import MatchingNetwork
from .metalstm import MetaLSTM
from .metasgd import MetaSGD
from .protonet import ProtoNet
from .protonet_multitask import ProtoNetMultiTask
from .siamese import Siamese

METHODS: dict[str, type[Method]] = {m.name: m for m in (Siamese, MatchingNetwork, ProtoNet, MAML, FOMAML, Reptile,
                                                          MetaSGD, MetaLSTM, Baseline, BaselinePP, Distill,
                                                          ProtoNetMultiTask, LSTMLearner, MANN)}

__all__ = ["FOMAML", "LSTMLearner", "MAML", "MANN", "METHODS", "Baseline", "BaselinePP", "Config", "Distill", "EpisodicConfig",
           "MatchingNetwork", "MetaLSTM", "MetaSGD", "Method", "ProtoNet", "ProtoNetMultiTask", "Reptile",
           "Siamese"]
