"""Distillation of a pre-trained Baseline into a student of the same architecture (Hinton et al. 2015).

The student is a :class:`~fewshot_tutorial.methods.baseline.Baseline` (same backbone,
classifier over the same training classes, same test-time heads) trained on class
batches with :func:`~fewshot_tutorial.distillation.kd_loss` against a frozen teacher,
{eq}`eq-kd-loss`. With a teacher of the same architecture this is a "born-again"
network (Furlanello et al. 2018), the self-distillation step of Tian et al. (2020).

The teacher is needed for training only: it is not a submodule, so it is neither in
the student's ``state_dict`` (a checkpoint holds the student alone) nor in its
parameters (the optimiser never sees it). It follows the student's device and stays
in eval mode; its logits are computed under ``no_grad``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from ..data import FewShotDataset
from ..data.class_batches import ClassBatch
from ..distillation import kd_loss
from ..metrics import with_accuracy
from .baseline import Baseline, BaselinePPConfig, _check, _positive

CLASSIFIERS = ("linear", "cosine")
ARCHITECTURE = ("in_channels", "hidden", "image_size", "n_classes", "scale", "learn_scale")


@dataclasses.dataclass
class DistillConfig(BaselinePPConfig):
    """A student: its architecture (a Baseline's or a Baseline++'s), ``T``, ``soft_weight`` and its teacher.

    ``teacher_checkpoint`` is the path of a trained baseline's checkpoint, read when training starts,
    unless a teacher module is given to the constructor. Defaults ``T = 4``,
    ``soft_weight = 0.9`` are common choices, not Hinton et al.'s (they vary ``T``).
    """

    classifier: str = "linear"
    temperature: float = 4.0
    soft_weight: float = 0.9
    teacher_checkpoint: str = ""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {**BaselinePPConfig.choices, "classifier": CLASSIFIERS}
    help: ClassVar[dict[str, str]] = {**BaselinePPConfig.help, "classifier": "the student's (and teacher's) classifier",
                                      "temperature": "softmax temperature T of the soft targets",
                                      "soft_weight": "weight of the soft (distillation) term",
                                      "teacher_checkpoint": "checkpoint of the trained baseline to distil"}
    checks: ClassVar[dict[str, Callable[[Any], None]]] = {
        **BaselinePPConfig.checks, "temperature": _positive("temperature"),
        "soft_weight": _check("soft_weight", lambda v: 0 <= v <= 1, "in [0, 1]")}


class Distill(Baseline):
    """A student Baseline trained on a frozen teacher's soft targets and the true labels.

    Args:
        config, overrides: the student's :class:`DistillConfig`.
        teacher: a trained :class:`Baseline` (or ``BaselinePP``, or a ``Distill``), in
            place of ``config.teacher_checkpoint``. It is moved with the student and kept in eval mode.
    """

    name = "distill"
    Config = DistillConfig

    def __init__(self, config: DistillConfig | None = None, teacher: Baseline | None = None,
                 **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._teacher: tuple[Baseline, ...] = ()  # a tuple: not registered as a submodule
        if teacher is not None:
            self.set_teacher(teacher)

    @classmethod
    def from_teacher(cls, teacher: Baseline, **overrides: Any) -> Distill:
        """A student with ``teacher``'s architecture (backbone, classes, classifier)."""
        arch = {k: getattr(teacher.config, k) for k in ARCHITECTURE if hasattr(teacher.config, k)}
        return cls(teacher=teacher, **{**arch, "classifier": teacher.classifier_kind, **overrides})

    @property
    def classifier_kind(self) -> str:
        return self.config.classifier

    @property
    def teacher(self) -> Baseline | None:
        return self._teacher[0] if self._teacher else None

    def set_teacher(self, teacher: Baseline) -> None:
        """Use ``teacher`` (frozen, eval mode, on the student's device) for training."""
        if not isinstance(teacher, Baseline):
            raise TypeError(f"the teacher must be a trained Baseline, BaselinePP or Distill, got "
                            f"{type(teacher).__name__}")
        if teacher.config.n_classes != self.config.n_classes:
            raise ValueError(f"the teacher has {teacher.config.n_classes} classes, the student "
                             f"n_classes={self.config.n_classes}; they must be the same training classes")
        device = next(self.parameters()).device
        self._teacher = (teacher.to(device).eval(),)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> Distill:
        super()._apply(fn, recurse)  # .to(), .float(), ...: the teacher follows the student
        if self._teacher:
            self._teacher[0]._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> Distill:
        super().train(mode)
        if self._teacher:
            self._teacher[0].eval()  # the teacher's batch norm uses its running statistics
        return self

    def batches(self, dataset: FewShotDataset, seed: int) -> Iterable[ClassBatch]:
        if self.teacher is None:
            if not self.config.teacher_checkpoint:
                raise ValueError("Distill needs a teacher to train: Distill.from_teacher(model), "
                                 "Distill(teacher=model), or teacher_checkpoint='runs/baseline.pt' (--teacher-checkpoint)")
            from ..checkpoints import load_model

            self.set_teacher(load_model(self.config.teacher_checkpoint)[0])
        return super().batches(dataset, seed)

    def loss(self, batch: ClassBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """{eq}`eq-kd-loss` on a class batch; the teacher's logits carry no gradient."""
        if self.teacher is None:
            raise ValueError("Distill needs a teacher to train: set_teacher(model) or "
                             "teacher_checkpoint=<path>")
        x, y = batch
        with torch.no_grad():
            teacher_logits = self.teacher.logits(x)
        logits = self.logits(x)
        c = self.config
        loss = kd_loss(logits, teacher_logits, y, c.temperature, c.soft_weight)
        return with_accuracy(loss, logits, y)
