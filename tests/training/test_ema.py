"""The EMA routine (METHOD.md §5 "Teachers"; docs/ARCHITECTURE.md, convention 5)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from training.ema import ema_update
from training.model import SharedBranch, make_teacher


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.normal_()
    return teacher, student


@pytest.mark.parametrize("momentum", [0.999, 0.9, 0.5])
def test_teacher_moves_by_exactly_one_minus_alpha(momentum):
    teacher, student = _pair()
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, momentum)
    for old, new, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new - old, (1 - momentum) * (s - old), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(new, momentum * old + (1 - momentum) * s, rtol=1e-6, atol=1e-7)


def test_momentum_one_freezes_and_zero_copies():
    teacher, student = _pair()
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters()))


def test_teacher_gets_no_gradient():
    teacher, student = _pair()
    ema_update(teacher, student, 0.99)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    x = torch.randn(5, 4)
    (student(x).sum() + teacher(x).sum()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_buffers_are_left_alone():
    teacher, student = _pair()
    student[1].running_mean.fill_(5.0)
    teacher_buffers = [b.clone() for b in teacher.buffers()]
    ema_update(teacher, student, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(teacher_buffers, teacher.buffers()))


def test_teacher_with_a_subset_of_the_students_parts():
    torch.manual_seed(0)
    student = SharedBranch("shared15", 3, num_source_classes=5, num_clusters=4)
    teacher = make_teacher(student)
    with torch.no_grad():
        student.cluster_head.weight.add_(1.0)
        student.source_head.weight.add_(1.0)
    old = teacher.cluster_head.weight.clone()
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.cluster_head.weight,
                               0.9 * old + 0.1 * student.cluster_head.weight)
    assert teacher.source_head is None


def test_mismatches_are_errors():
    teacher, student = _pair()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema_update(teacher, student, 1.5)
    with pytest.raises(ValueError, match="no student counterpart"):
        ema_update(teacher, nn.Sequential(nn.Linear(4, 3)), 0.9)
    with pytest.raises(ValueError, match="shape"):
        ema_update(nn.Sequential(nn.Linear(4, 5)), nn.Sequential(nn.Linear(4, 3)), 0.9)
