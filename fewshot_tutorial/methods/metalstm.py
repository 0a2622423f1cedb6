"""Meta-LSTM (Ravi & Larochelle 2017): the learner's weights are an LSTM's cell state.

Gradient descent ``theta_t = theta_{t-1} - alpha g_t`` is an LSTM cell update with the
forget gate at 1 and the input gate at ``alpha`` and ``-g_t`` as the candidate:
``c_t = f_t ⊙ c_{t-1} + i_t ⊙ (-g_t)``, {eq}`eq-metalstm-cell`. Meta-LSTM *learns* the
gates, {eq}`eq-metalstm-gates`, so that every weight gets its own rate (``i_t``) and
shrinkage (``f_t``) at every step, computed from the gradient, the loss and the weight
itself. The cell state starts at ``c_0 = theta``, the learner's initialisation,
meta-learned as in MAML. Everything is coordinate-wise: one small network shared by all
the learner's weights, which are its batch dimension.

Compared with the paper: as there, the first layer is an ``nn.LSTMCell`` of 20 units
over the preprocessed gradient and loss (4 inputs a coordinate) and the gates of the
second layer read that layer's output, the weight ``c_{t-1}`` and their own previous
value, {eq}`eq-metalstm-gates`. Simplified: every inner step uses the whole support
set (the paper steps through it in mini-batches); ``c_{t-1}`` enters the gates raw
(unscaled); the previous gates start at zero; batch norm is MAML's
(``MAMLConfig.transductive``: the batch's own statistics, also over the query set at
test time), where the paper collects running statistics on each episode's support set
at meta-test time (``transductive=False``, each query normalised with the support set,
is the closer setting).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..inner_loop import Params, flatten, unflatten
from ..learned_optimizers import preprocess_gradient
from .maml import MAML, MAMLConfig


def lstm_cell_update(
    c: torch.Tensor,
    grad: torch.Tensor,
    f: torch.Tensor | float,
    i: torch.Tensor | float,
) -> torch.Tensor:
    """``c_t = f ⊙ c_{t-1} + i ⊙ (-grad)``: one SGD step if ``f = 1`` and ``i = alpha``.

    Implements {eq}`eq-metalstm-cell`. ``c``, ``grad``, ``f``, ``i``: ``[P]`` (or
    broadcastable).
    """
    return f * c + i * (-grad)


def lstm_cell(
    cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cell(x, (h, c))`` written out, so that it also runs under ``vmap``
    (``aten::lstm_cell`` has no batching rule). ``x: [P, in]``, ``h, c: [P, hidden]``.
    """
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class MetaLSTMUpdate(nn.Module):
    """The meta-learner, a :class:`~fewshot_tutorial.inner_loop.StatefulUpdateRule`.

    State per coordinate of the flattened learner ``[P]``: the first layer's ``(h, c)``
    ``[P, hidden]`` and the previous gates ``i_{t-1}``, ``f_{t-1}`` ``[P]`` (zeros at
    the start, as in the authors' code).

    Args:
        hidden: units of the first LSTM layer (20 in the paper).
        inner_lr: the initial input gate: ``b_I = logit(inner_lr)``, the gates' weights
            small, so training starts close to SGD at rate ``inner_lr``.
        forget_bias: the initial ``b_F`` (large: ``f`` close to 1, no shrinkage).
        p: the preprocessing exponent of {eq}`eq-grad-preprocess`.
    """

    def __init__(
        self,
        hidden: int = 20,
        inner_lr: float = 0.1,
        forget_bias: float = 5.0,
        p: float = 10.0,
    ) -> None:
        super().__init__()
        self.p = p
        self.lstm = nn.LSTMCell(4, hidden)
        self.input_gate = nn.Linear(
            hidden + 2, 1
        )  # W_I, b_I over [h_t, c_{t-1}, i_{t-1}]
        self.forget_gate = nn.Linear(
            hidden + 2, 1
        )  # W_F, b_F over [h_t, c_{t-1}, f_{t-1}]
        with torch.no_grad():
            for gate, bias in (
                (self.input_gate, math.log(inner_lr / (1 - inner_lr))),
                (self.forget_gate, forget_bias),
            ):
                gate.weight.uniform_(-0.01, 0.01)
                gate.bias.fill_(bias)

    def init_state(
        self, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """``(h [P, hidden], c [P, hidden], i [P], f [P])``, all zeros."""
        c = flatten({k: p.detach() for k, p in params.items()})
        n, k = c.numel(), self.lstm.hidden_size
        return c.new_zeros(n, k), c.new_zeros(n, k), c.new_zeros(n), c.new_zeros(n)

    def gates(
        self,
        grad: torch.Tensor,
        loss: torch.Tensor,
        c: torch.Tensor,
        state: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """The gates {eq}`eq-metalstm-gates`: ``(i_t [P], f_t [P], new state)``.

        From ``grad [P]``, ``loss []`` and ``c = c_{t-1} [P]``.
        """
        h, hc, i_prev, f_prev = state
        x = torch.cat(
            [
                preprocess_gradient(grad, self.p),
                preprocess_gradient(loss, self.p).expand(len(grad), 2),
            ],
            dim=-1,
        )  # [P, 4]
        h, hc = lstm_cell(self.lstm, x, h, hc)
        i = torch.sigmoid(
            self.input_gate(torch.cat([h, c[:, None], i_prev[:, None]], -1))
        ).squeeze(-1)
        f = torch.sigmoid(
            self.forget_gate(torch.cat([h, c[:, None], f_prev[:, None]], -1))
        ).squeeze(-1)
        return i, f, (h, hc, i, f)

    def step(
        self,
        params: Params,
        grads: Params,
        loss: torch.Tensor,
        step: int,
        state: tuple[torch.Tensor, ...],
    ) -> tuple[Params, tuple[torch.Tensor, ...]]:
        """One inner step: the gates, then {eq}`eq-metalstm-cell` on the learner."""
        c, g = flatten(params), flatten(grads)
        i, f, state = self.gates(g, loss, c, state)
        return unflatten(lstm_cell_update(c, g, f, i), params), state


class Frozen:
    """A stateful rule run without building a graph to its weights (at test time)."""

    def __init__(self, rule: MetaLSTMUpdate) -> None:
        self.rule = rule

    def init_state(
        self, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        return self.rule.init_state(params)

    def step(
        self,
        params: Params,
        grads: Params,
        loss: torch.Tensor,
        step: int,
        state: tuple[torch.Tensor, ...],
    ) -> tuple[Params, tuple[torch.Tensor, ...]]:
        with torch.no_grad():
            return self.rule.step(params, grads, loss, step, state)


@dataclasses.dataclass
class MetaLSTMConfig(MAMLConfig):
    """Meta-LSTM: ``inner_lr`` is the *initial* input gate (the LSTM learns the rates).

    ``first_order`` (default ``True``, as in the paper) treats the learner's gradients
    and loss as constants with respect to ``c``. ``test_inner_lr`` is not used. The
    same number of steps in training and at test time is the natural choice: the LSTM
    learns the schedule of a ``inner_steps``-step descent.
    """

    inner_lr: float = 0.1
    inner_steps: int = 5
    test_steps: int = 5
    first_order: bool = True
    lstm_hidden: int = 20
    forget_bias: float = 5.0

    help: ClassVar[dict[str, str]] = {
        **MAMLConfig.help,
        "inner_lr": "initial input gate i (sigmoid of b_I): the starting rate",
        "first_order": "treat the learner's gradient and loss as constants (paper)",
        "lstm_hidden": "units of the meta-learner's first LSTM layer",
        "forget_bias": "initial b_F (large: forget gate near 1)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.inner_lr < 1:
            raise ValueError(
                f"inner_lr={self.inner_lr} is the initial input gate, a sigmoid: "
                "give 0 < inner_lr < 1"
            )
        if self.lstm_hidden < 1:
            raise ValueError(f"lstm_hidden must be >= 1, got {self.lstm_hidden}")


class MetaLSTM(MAML):
    """Conv4 learner whose weights are the cell state of a learned LSTM update."""

    name = "metalstm"
    Config = MetaLSTMConfig

    def __init__(self, config: MetaLSTMConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.update_rule = MetaLSTMUpdate(c.lstm_hidden, c.inner_lr, c.forget_bias)

    def inner_rule(self, test: bool = False) -> dict[str, Any]:
        """The LSTM rule for ``inner_steps`` (``test_steps`` at test time, no graph)."""
        c = self.config
        if test:
            return {"update": Frozen(self.update_rule), "n_steps": c.test_steps}
        return {"update": self.update_rule, "n_steps": c.inner_steps}
