"""The one interface every method fills in.

A method is an ``nn.Module`` built from a JSON-able :class:`Config` (what a checkpoint
stores and what the command line's flags are made from). It says

* what it trains on: :meth:`Method.batches` (episodes, pairs, meta-batches of tasks);
* what it minimises: :meth:`Method.loss` (or :meth:`Method.backward`, to run its own
  backward pass: one per task, truncated back-propagation through time, ...);
* how it classifies a new task: :meth:`Method.predict`, or :meth:`Method.embed` plus
  :meth:`Method.head` (then an evaluation embeds every image once, for free);
* what the optimiser updates: :meth:`Method.param_groups` (a frozen teacher is left
  out, learnable loss weights are put in).

The engine (:func:`fewshot_tutorial.training.fit` and
:func:`fewshot_tutorial.evaluation.evaluate`) does everything else: devices, eval
mode, ``no_grad``, autocast, the optimiser, schedules, budgets and progress bars.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..data import Episode, FewShotDataset

LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]


@dataclasses.dataclass
class Config:
    """What every method is built from. Subclasses add their own fields (with defaults).

    Attributes:
        in_channels, hidden, image_size: the Conv4 backbone and its input.
        lr: the optimiser's learning rate.
        steps: the training budget when :func:`~fewshot_tutorial.training.fit` gets none.
    """

    in_channels: int = 1
    hidden: int = 64
    image_size: int = 28
    lr: float = 1e-3
    steps: int = 1000

    #: allowed values of string fields, checked on construction and offered by the CLI
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: one-line help of fields for the command line
    help: ClassVar[dict[str, str]] = {}
    #: a check of a field's value (raises ``ValueError`` saying what to do), run on construction
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, hint = getattr(self, f.name), hints[f.name]
            if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{type(self).__name__}.{f.name} must be an int, got {value!r}")
            if hint is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
                raise TypeError(f"{type(self).__name__}.{f.name} must be a finite number, got {value!r}")
            if f.name in self.choices and value not in self.choices[f.name]:
                raise ValueError(f"{f.name} must be one of {self.choices[f.name]}, got {value!r}")
            if f.name in self.checks:
                self.checks[f.name](value)
        for name in ("in_channels", "hidden", "image_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}: Conv4 halves the image four times")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Config":
        """The config ``values`` describe; unknown keys are an error (a different method's config)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"a config must be a dict, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__qualname__} has no field(s) {unknown}; is this another method's config?")
        return cls(**values)


@dataclasses.dataclass
class EpisodicConfig(Config):
    """A config for methods trained on N-way K-shot episodes (the *training* task shape)."""

    train_way: int = 5
    train_shot: int = 1
    train_query: int = 15


class Method(nn.Module):
    """Base class of every method; see the module docstring.

    Args:
        config: a :attr:`Config` instance (default: its defaults).
        **overrides: fields to change, e.g. ``ProtoNet(train_way=20)``.
    """

    #: the name under which :data:`fewshot_tutorial.methods.METHODS` knows the method
    name: ClassVar[str] = ""
    Config: ClassVar[type[Config]] = Config
    #: learning-rate schedule over the budget when ``fit`` is given none
    lr_schedule: ClassVar[str] = "constant"
    #: precision when ``fit`` / ``evaluate`` get ``"auto"``: ``"auto"`` lets the hardware choose
    precision: ClassVar[str] = "auto"
    #: channels-last memory for the images (``"auto"``: where convolutions prefer it)
    channels_last: ClassVar[bool | str] = "auto"
    #: ``predict`` takes gradient steps (fine-tuning on the support set)
    grad_at_test: ClassVar[bool] = False

    def __init__(self, config: Config | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = self.Config(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__qualname__}, got {type(config).__name__}")
        self.config = config

    # ------------------------------------------------------------------ training
    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[Any]:
        """The endless, seeded stream of training batches drawn from ``dataset``."""
        raise NotImplementedError(f"{type(self).__name__} must define batches(dataset, seed)")

    def loss(self, batch: Any) -> LossOutput:
        """The training loss of one batch: a scalar, or ``(scalar, {"accuracy": ...})``."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch) or backward(batch)")

    def backward(self, batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Compute the gradients of one batch; returns ``(loss, metrics)``.

        The default back-propagates :meth:`loss` once, after checking it is finite
        (so a diverged step never reaches the weights). Override it for another
        backward: one per task, truncated through time, several losses.
        """
        out = self.loss(batch)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        check_finite(loss)
        loss.backward()
        return loss.detach(), metrics

    def param_groups(self) -> list[dict[str, Any]]:
        """What the optimiser updates: every parameter that requires a gradient, one group."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The outer optimiser (Adam by default) over :meth:`param_groups`."""
        return torch.optim.Adam(self.param_groups(), lr=lr)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """A ``torch.optim`` scheduler stepped once per step, or ``None`` (the default)."""
        return None

    # ------------------------------------------------------------------ prediction
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, D]``; define it (with :meth:`head`) to get the embedding cache."""
        raise NotImplementedError

    def head(self, support_z: torch.Tensor, support_y: torch.Tensor, query_z: torch.Tensor,
             n_way: int) -> torch.Tensor:
        """Logits ``[Q, n_way]`` from embeddings ``support_z [S, D]``, ``support_y [S]``, ``query_z [Q, D]``."""
        raise NotImplementedError

    def predict(self, episode: Episode) -> torch.Tensor:
        """Logits ``[n_way * n_query, n_way]`` of the episode's queries.

        The default embeds support and query in one call and applies :meth:`head`.
        """
        n = len(episode.support_x)
        z = self.embed(torch.cat([episode.support_x, episode.query_x]))
        return self.head(z[:n], episode.support_y, z[n:], episode.n_way)

    def forward(self, episode: Episode) -> torch.Tensor:
        """``method(episode)`` is :meth:`predict` (in whatever mode the module is in)."""
        return self.predict(episode)

    @property
    def has_embedding(self) -> bool:
        """True when the method defines :meth:`embed` and :meth:`head` (embedding cache)."""
        cls = type(self)
        return cls.embed is not Method.embed and cls.head is not Method.head

    def extra_repr(self) -> str:
        return f"method={self.name!r}, config={self.config}"


def check_finite(loss: torch.Tensor) -> None:
    """Raise ``FloatingPointError`` if the loss is NaN or infinite (skipped on the meta device)."""
    if loss.device.type == "meta":
        return
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss became {value}; the weights were not updated with it. "
                                 "Lower the learning rate or try precision='float32'.")
