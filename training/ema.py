"""The one EMA routine that moves every CoDT teacher (METHOD.md §5 "Teachers").

``θ̂ ← α θ̂ + (1 − α) θ`` for each teacher *parameter*, every iteration, before the teacher forward,
with ``α = 0.999``. Parameters are paired by name, so a teacher may hold a subset of its student's
parts (``training.model.make_teacher`` drops the source head and decoder of B0).

BN-buffer policy: buffers (BN running mean/var, ``num_batches_tracked``) are **not** averaged or
copied. Teachers run in train mode (METHOD §5), so their BatchNorms normalise with batch statistics
and the running statistics are only tracked by the teacher's own forwards; nothing reads them
during training. ``CoDTModel.copy_students_to_teachers`` copies buffers too when a full
re-synchronisation is wanted (construction, after k-means).
"""

from __future__ import annotations

import torch
from torch import nn


def _paired_parameters(teacher: nn.Module, student: nn.Module
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(teacher, student) parameters matched by name; raises ValueError on any mismatch."""
    student_params = dict(student.named_parameters())
    teacher_list: list[torch.Tensor] = []
    student_list: list[torch.Tensor] = []
    for name, teacher_param in teacher.named_parameters():
        student_param = student_params.get(name)
        if student_param is None:
            raise ValueError(f"teacher parameter {name!r} has no student counterpart")
        if student_param.shape != teacher_param.shape:
            raise ValueError(f"teacher parameter {name!r} has shape {tuple(teacher_param.shape)}, "
                             f"the student's {tuple(student_param.shape)}")
        teacher_list.append(teacher_param)
        student_list.append(student_param.detach())
    return teacher_list, student_list


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place, for every teacher parameter: ``teacher = momentum·teacher + (1−momentum)·student``.

    ``momentum`` is α in [0, 1] (1 freezes the teacher, 0 copies the student). The teacher's
    parameters are switched to ``requires_grad=False``; buffers are left alone (module docstring).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    teacher_params, student_params = _paired_parameters(teacher, student)
    for param in teacher_params:
        param.requires_grad_(False)
    if teacher_params:
        torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)
