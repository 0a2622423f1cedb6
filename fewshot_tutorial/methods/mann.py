"""Memory-augmented neural networks (Santoro et al. 2016) and their LSTM baseline.

Both read a sequence episode (:class:`~fewshot_tutorial.data.sequences.SequenceSampler`)
one step at a time: the input at step ``t`` is the image ``x_t`` with the one-hot true
label of step ``t - 1``, and the output is ``N`` logits for ``y_t``. The loss is the
cross-entropy over all steps. Labels are reshuffled in every episode, so the weights
can only learn *how to bind* an image to the label that follows it, not the labels.

* :class:`LSTMLearner`: an LSTM must hold the bindings in its state (the
  "meta-recurrent" baseline of the paper);
* :class:`MANN`: an LSTM controller plus an external memory, read by cosine similarity
  and written by least-recently-used access (:mod:`fewshot_tutorial.memory`); the
  output reads ``[h_t, r_t]``.

Compared with the paper: images go through Conv4 (``encoder="conv4"``) by default; the
paper fed the raw pixels of 20x20 images to the controller (``encoder="pixels"``).
Labels are one-hot (the paper also tried 5-character string labels for 15 classes);
the written vector is the key ``k_t`` (``add_vector=True``: a separate ``a_t``, as many
re-implementations do); the ``h``-th read head writes to the ``h``-th least used slot
(:func:`~fewshot_tutorial.memory.least_used_per_head`; with one head this is the
paper's rule). Memory, usage, previous reads and read weights start at zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import memory as lrua
from ..backbones import Conv4
from ..data import Episode, FewShotDataset
from ..data.sequences import SequenceEpisode, SequenceSampler, instance_numbers
from ..data.tasks import batched
from ..metrics import with_accuracy
from .base import Config, Method

if TYPE_CHECKING:
    from ..evaluation import EvalResult

ENCODERS = ("conv4", "pixels")
QUERY_LABELS = ("last_support", "zero")
State = tuple[torch.Tensor, ...]


def _at_least(name: str, minimum: int) -> Any:
    def check(value: int) -> None:
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return check


def _gamma_in_unit_interval(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"gamma (the usage decay) must be in [0, 1], got {value}")


@dataclasses.dataclass
class SequenceConfig(Config):
    """Sequence episodes and the recurrent learner that reads them.

    ``n_classes`` is ``N``, the labels of a training episode and the width of the
    output; a trained model can be evaluated on episodes with ``n_way <= n_classes``.
    ``query_label`` is the label input of a query in :meth:`SequenceMethod.predict`.
    """

    n_classes: int = 5
    seq_length: int = 50
    batch_size: int = 16
    controller_size: int = 200
    encoder: str = "conv4"
    query_label: str = "last_support"
    steps: int = 2000

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"encoder": ENCODERS, "query_label": QUERY_LABELS}
    help: ClassVar[dict[str, str]] = {
        "n_classes": "labels per sequence episode (and outputs)",
        "seq_length": "images per sequence episode",
        "batch_size": "sequence episodes per step",
        "controller_size": "units of the LSTM",
        "encoder": "image features: Conv4, or the raw pixels as in the paper",
        "query_label": "label input of a query at test time: the last support label (as in training), or zeros",
    }
    checks: ClassVar[dict[str, Any]] = {name: _at_least(name, minimum) for name, minimum in
                                        (("n_classes", 2), ("seq_length", 1), ("batch_size", 1),
                                         ("controller_size", 1))}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_length < self.n_classes:
            raise ValueError(f"seq_length={self.seq_length} is shorter than n_classes={self.n_classes}; "
                             "every class must appear at least once")


@dataclasses.dataclass
class LSTMLearnerConfig(SequenceConfig):
    """The LSTM baseline (its ``controller_size`` is the LSTM's width)."""


@dataclasses.dataclass
class MANNConfig(SequenceConfig):
    """A MANN: the paper's Omniglot setting is 128 x 40 memory, 4 read heads, a 200-unit LSTM.

    ``read_to_controller``: the controller's input is ``[z_t, y_{t-1}, r_{t-1}]`` (the paper:
    the reads are "an additional input for the next controller state"), else ``[z_t, y_{t-1}]``.
    ``add_vector``: write a separate ``a_t = tanh(W_a h_t)`` instead of the key ``k_t``.
    """

    memory_slots: int = 128
    memory_size: int = 40
    n_reads: int = 4
    gamma: float = 0.95
    read_to_controller: bool = True
    add_vector: bool = False

    help: ClassVar[dict[str, str]] = {**SequenceConfig.help, "memory_slots": "rows of the memory",
                                      "memory_size": "width of a memory row", "n_reads": "read heads",
                                      "gamma": "decay of the usage weights",
                                      "read_to_controller": "feed the previous reads r_{t-1} to the controller, "
                                                            "as the paper does",
                                      "add_vector": "write a separate vector a_t instead of the key k_t"}
    checks: ClassVar[dict[str, Any]] = {**SequenceConfig.checks, "memory_size": _at_least("memory_size", 1),
                                        "n_reads": _at_least("n_reads", 1), "gamma": _gamma_in_unit_interval}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory_slots < self.n_reads:
            raise ValueError(f"memory_slots={self.memory_slots} must be >= n_reads={self.n_reads}: "
                             "each head writes to its own least used slot")


def image_encoder(config: SequenceConfig) -> tuple[nn.Module, int]:
    """``(module, D)``: ``[B, C, H, W] -> [B, D]`` image features, Conv4 or flattened pixels."""
    if config.encoder == "conv4":
        net = Conv4(config.in_channels, config.hidden)
        return net, net.out_features(config.image_size)
    return nn.Flatten(), config.in_channels * config.image_size**2


def support_order(y: torch.Tensor) -> torch.Tensor:
    """``[S]`` an order of a support set ``y [S]`` that shows each class once before any class twice.

    Training sequences interleave the classes; a class-major support set (all shots of
    class 0, then of class 1, ...) would be a sequence the model never saw. On the CPU
    the order is 1st shots (in support order), 2nd shots, ...; labels off the CPU keep
    their order (reading them would stall the device).
    """
    if y.device.type != "cpu":
        return torch.arange(len(y), device=y.device)
    return instance_numbers(y, int(y.max()) + 1).argsort(stable=True)


class SequenceMethod(Method):
    """What both learners share: sequence batches, the loss over all steps, and ``predict``.

    A subclass defines :meth:`initial_state` and :meth:`step`.
    """

    Config = SequenceConfig
    precision = "float32"  # cosine similarities and softmax addressing are not bf16 material
    channels_last = False

    def __init__(self, config: SequenceConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.encoder, self.feature_size = image_encoder(self.config)

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterator[SequenceEpisode]:
        c = self.config
        sampler = SequenceSampler(dataset, c.n_classes, c.seq_length, seed=seed)
        return (SequenceEpisode.collate(group) for group in batched(sampler, c.batch_size))

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        """The state before the first step, on ``like``'s device and dtype."""
        raise NotImplementedError

    def step(self, z: torch.Tensor, prev_label: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step: ``z [B, D]``, ``prev_label [B, N]`` -> ``(logits [B, N], new state)``."""
        raise NotImplementedError

    def run(self, x: torch.Tensor, prev_label: torch.Tensor,
            state: State | None = None) -> tuple[torch.Tensor, State]:
        """Read a batch of sequences from ``state`` (default: :meth:`initial_state`).

        ``x [B, T, C, H, W]``, ``prev_label [B, T, N]`` -> ``(logits [B, T, N], final state)``.
        """
        b, t = x.shape[:2]
        z = self.encoder(x.flatten(0, 1)).reshape(b, t, -1)  # every image in one call: [B, T, D]
        state = self.initial_state(b, z) if state is None else state
        logits = []
        for i in range(t):
            out, state = self.step(z[:, i], prev_label[:, i].to(z.dtype), state)
            logits.append(out)
        return torch.stack(logits, 1), state

    def loss(self, batch: SequenceEpisode) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of ``y_t`` at every step of every sequence of the batch."""
        logits, _ = self.run(batch.x, batch.prev_label)
        logits, y = logits.flatten(0, 1), batch.y.flatten()
        return with_accuracy(F.cross_entropy(logits, y), logits, y)

    def predict(self, episode: Episode) -> torch.Tensor:
        """Logits ``[Q, n_way]``: the support set read as a labelled sequence, then each query alone.

        The support set is shown in :func:`support_order`; every query is then one more
        step from the state after the support set (so queries do not see each other),
        with the last support label as its label input (``query_label="last_support"``,
        as at that step in training) or zeros (``"zero"``); its own label is never shown.

        Raises:
            ValueError: more classes than the model has outputs.
        """
        n, c = episode.n_way, self.config
        if n > c.n_classes:
            raise ValueError(f"this model has {c.n_classes} outputs; evaluate it on episodes of at most "
                             f"{c.n_classes} classes, not {n}")
        order = support_order(episode.support_y)
        sx, sy = episode.support_x[order], episode.support_y[order]
        onehot = torch.eye(c.n_classes, device=sy.device)[sy]  # [S, N]
        prev = torch.cat([torch.zeros_like(onehot[:1]), onehot[:-1]])
        _, state = self.run(sx[None], prev[None])
        q = len(episode.query_x)
        last = onehot[-1:] if c.query_label == "last_support" else torch.zeros_like(onehot[:1])
        state = tuple(s.expand(q, *s.shape[1:]) for s in state)  # one copy of the state per query
        logits, _ = self.run(episode.query_x[:, None], last.expand(q, -1)[:, None], state)
        return logits[:, 0, :n]


class LSTMLearner(SequenceMethod):
    """The meta-recurrent baseline: image features and the previous label into an LSTM, ``N`` logits out."""

    name = "lstm"
    Config = LSTMLearnerConfig

    def __init__(self, config: LSTMLearnerConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.lstm = nn.LSTMCell(self.feature_size + c.n_classes, c.controller_size)
        self.out = nn.Linear(c.controller_size, c.n_classes)

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        h = like.new_zeros(batch_size, self.config.controller_size)
        return h, h

    def step(self, z: torch.Tensor, prev_label: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = self.lstm(torch.cat([z, prev_label], -1), state)
        return self.out(h), (h, c)


class MANN(SequenceMethod):
    """An LSTM controller with an external memory under LRUA addressing; the output reads ``[h_t, r_t]``.

    The state is ``(h, c, memory [B, n_slots, W], usage [B, n_slots], read_w [B, R, n_slots],
    r [B, R * W])``; every step writes, then reads, then updates the usage, as the paper does.
    """

    name = "mann"
    Config = MANNConfig

    def __init__(self, config: MANNConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        reads = c.n_reads * c.memory_size
        self.controller = nn.LSTMCell(self.feature_size + c.n_classes + (reads if c.read_to_controller else 0),
                                      c.controller_size)
        self.key = nn.Linear(c.controller_size, reads)  # k_t, one per head
        self.add = nn.Linear(c.controller_size, reads) if c.add_vector else None  # a_t, one per head
        self.alpha = nn.Linear(c.controller_size, c.n_reads)  # the write gate's logit, one per head
        self.out = nn.Linear(c.controller_size + reads, c.n_classes)

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        c, zeros = self.config, like.new_zeros
        h = zeros(batch_size, c.controller_size)
        return (h, h, zeros(batch_size, c.memory_slots, c.memory_size), zeros(batch_size, c.memory_slots),
                zeros(batch_size, c.n_reads, c.memory_slots), zeros(batch_size, c.n_reads * c.memory_size))

    def step(self, z: torch.Tensor, prev_label: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Controller, then write (to the previous read rows or the least used), read, usage update.

        Implements {eq}`eq-mann-write-weights`, {eq}`eq-mann-write`, {eq}`eq-mann-read-weights`,
        {eq}`eq-mann-read` and {eq}`eq-mann-usage` in that order.
        """
        cfg, (h, c, memory, usage, read_w, r) = self.config, state
        inputs = [z, prev_label, r] if cfg.read_to_controller else [z, prev_label]
        h, c = self.controller(torch.cat(inputs, -1), (h, c))
        keys = torch.tanh(self.key(h)).view(len(h), cfg.n_reads, cfg.memory_size)  # [B, R, W]
        values = keys if self.add is None else torch.tanh(self.add(h)).view_as(keys)
        write_w = lrua.write_weights(self.alpha(h), read_w, lrua.least_used_per_head(usage, cfg.n_reads))
        memory = lrua.write(lrua.zero_least_used(memory, usage), write_w, values)
        read_w = lrua.read_weights(keys, memory)
        r = lrua.read(read_w, memory).flatten(1)  # [B, R * W]
        usage = lrua.update_usage(usage, read_w, write_w, cfg.gamma)
        return self.out(torch.cat([h, r], -1)), (h, c, memory, usage, read_w, r)


def accuracy_by_instance(model: SequenceMethod, dataset: FewShotDataset, n_episodes: int = 100, seed: int = 0,
                         device: torch.device | str = "cpu", max_instance: int = 10) -> dict[int, EvalResult]:
    """Accuracy at the 1st, 2nd, ... appearance of a class in a sequence episode (the paper's Table 1).

    Sequences are drawn as in training (``model.config``'s ``n_classes`` and ``seq_length``);
    the accuracy of instance ``i`` in one episode is the fraction of its classes whose
    ``i``-th image was labelled correctly, averaged over the episodes that have one.

    Args:
        model: a trained :class:`LSTMLearner` or :class:`MANN` (put in eval mode on ``device``).
        dataset: the classes to test on.
        n_episodes: sequence episodes to score; seed: their seed.
        max_instance: the last instance reported.

    Returns:
        ``{instance: EvalResult}`` for ``1..max_instance`` (instances no episode reaches are left out).
    """
    from ..device import for_inference
    from ..evaluation import confidence_interval

    c = model.config
    for_inference(model, device, channels_last=False)
    per_instance: dict[int, list[float]] = {i: [] for i in range(1, max_instance + 1)}
    sampler = SequenceSampler(dataset, c.n_classes, c.seq_length, seed=seed, n_episodes=n_episodes)
    episodes = list(sampler)
    with torch.no_grad():
        for start in range(0, n_episodes, c.batch_size):
            batch = SequenceEpisode.collate(episodes[start : start + c.batch_size]).to(device)
            logits, _ = model.run(batch.x, batch.prev_label)
            correct, instance = (logits.argmax(-1) == batch.y).cpu(), batch.instance.cpu()
            for ok, inst in zip(correct, instance):
                for i, accuracies in per_instance.items():
                    if (inst == i).any():
                        accuracies.append(ok[inst == i].float().mean().item())
    return {i: confidence_interval(a) for i, a in per_instance.items() if a}
