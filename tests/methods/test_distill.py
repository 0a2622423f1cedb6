"""Distill: a student trained on a frozen teacher's soft targets; the checkpoint holds the student alone."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import (
    Baseline,
    BaselinePP,
    Distill,
    FewShotDataset,
    fit,
    load_model,
    save_model,
)
from fewshot_tutorial.distillation import kd_loss


def _data(n_classes: int = 5) -> FewShotDataset:
    return FewShotDataset(torch.rand(n_classes, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0)),
                          [f"c{i}" for i in range(n_classes)])


def _teacher(cls=Baseline) -> Baseline:
    torch.manual_seed(0)
    teacher = cls(hidden=8, image_size=16, n_classes=5, batch_size=8)
    fit(teacher, _data(), n_steps=3, progress=False)
    return teacher


def test_the_teacher_stays_frozen_in_eval_mode_and_gets_no_gradient():
    teacher = _teacher()
    teacher.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # running statistics included
    student = Distill.from_teacher(teacher, batch_size=8)
    assert not any(k.startswith("_teacher") or "teacher" in k for k in student.state_dict())
    assert {id(p) for p in student.parameters()}.isdisjoint(id(p) for p in teacher.parameters())
    hist = fit(student, _data(), n_steps=3, progress=False)
    assert hist.steps == 3 and not teacher.training and student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_the_loss_is_kd_loss_against_the_teacher_logits():
    teacher = _teacher()
    student = Distill.from_teacher(teacher, temperature=3.0, soft_weight=0.6).eval()
    x, y = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, _ = student.loss((x, y))
    with torch.no_grad():
        want = kd_loss(student.logits(x), teacher.eval().logits(x), y, 3.0, 0.6)
    torch.testing.assert_close(loss.detach(), want)


def test_from_teacher_copies_the_architecture():
    teacher = _teacher(BaselinePP)
    student = Distill.from_teacher(teacher)
    assert student.classifier_kind == "cosine" and student.config.hidden == 8 and student.config.n_classes == 5
    assert type(student.classifier) is type(teacher.classifier)
    with pytest.raises(ValueError, match="same training classes"):
        Distill(teacher=teacher, n_classes=6)
    with pytest.raises(TypeError, match="must be a trained Baseline"):
        Distill(teacher=torch.nn.Linear(2, 2))


def test_the_checkpoint_holds_the_student_alone_and_a_teacher_checkpoint_trains_it(tmp_path):
    teacher_path = save_model(tmp_path / "teacher.pt", _teacher())
    student = Distill(hidden=8, image_size=16, n_classes=5, batch_size=8,
                      teacher_checkpoint=str(teacher_path))
    fit(student, _data(), n_steps=2, progress=False)  # the teacher is read from its checkpoint here
    assert student.teacher is not None
    back, config = load_model(save_model(tmp_path / "student.pt", student))
    assert type(back) is Distill and back.teacher is None and config.teacher_checkpoint == str(teacher_path)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in student.state_dict().items())
    with pytest.raises(ValueError, match="Distill needs a teacher"):
        fit(Distill(hidden=8, image_size=16, n_classes=5, batch_size=8), _data(), n_steps=1, progress=False)


def test_the_teacher_follows_the_student_to_another_device():
    teacher = _teacher()
    student = Distill.from_teacher(teacher).to(torch.device("meta"))
    assert all(p.device.type == "meta" for p in student.parameters())
    assert all(p.device.type == "meta" for p in student.parameters())
    assert all(p.device.type == "meta" for p in teacher.parameters())
