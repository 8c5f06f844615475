"""The CoDT networks: two branches, each a student and an EMA teacher (METHOD.md §5, §13).

- ``SharedBranch`` (B0, domain-shared): ``encoder`` F_0, ``source_head`` C_0^s, ``decoder`` D_0,
  ``cluster_head`` C_0^t.
- ``SpecificBranch`` (B1, target-specific): ``encoder`` F_1, ``projector`` W_q (L2-normalised
  output), ``cluster_head`` C_1^t.

Teachers. A teacher is the same class as its student with the student-only parts removed
(``SharedBranch.STUDENT_ONLY = ("source_head", "decoder")``; B1 has none), built by
``make_teacher(student)``: a deep copy (METHOD D2: teacher = student at construction), with those
submodules set to ``None`` and every parameter frozen. So a teacher holds exactly the EMA'd parts
(F̂_0 + Ĉ_0^t; F̂_1 + W_k + Ĉ_1^t), its parameter names are a subset of its student's, and
``training.ema.ema_update`` pairs them by name.

Every tensor is ``(N, C, T, V, M)`` in and named tuples out; no method switches on ``None`` inputs.
"""

from __future__ import annotations

import copy
from typing import Literal, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from codt_deploy.layouts import Layout, get_layout
from training.ema import ema_update
from training.stgcn import FEATURE_DIM, STGCN, init_weights

PROJECTION_DIM = 128
DECODER_DROPOUT = 0.5
Branch = Literal["shared", "specific"]


class SourceOutput(NamedTuple):
    feature: torch.Tensor  # (N, 256) f_0
    source_logits: torch.Tensor  # (N, #source classes) C_0^s(f_0)
    reconstruction: torch.Tensor  # (N, M, T', C·V) D_0 per time step, coordinates ordered (V, C)


class SharedTargetOutput(NamedTuple):
    feature: torch.Tensor  # (N, 256) f_0
    cluster_logits: torch.Tensor  # (N, K) C_0^t(f_0)
    reconstruction: torch.Tensor  # (N, M, T', C·V)


class SpecificTargetOutput(NamedTuple):
    feature: torch.Tensor  # (N, 256) f_1, pre-projection (what the memory bank stores)
    query: torch.Tensor  # (N, 128) q = norm(W_q f_1)
    cluster_logits: torch.Tensor  # (N, K) C_1^t(f_1)


class TargetOutput(NamedTuple):
    shared: SharedTargetOutput
    specific: SpecificTargetOutput


class TeacherOutput(NamedTuple):
    shared_feature: torch.Tensor  # (N, 256) f̂_0, written to the B0 bank
    specific_feature: torch.Tensor  # (N, 256) f̂_1, written to the B1 bank
    key: torch.Tensor  # (N, 128) k = norm(W_k f̂_1)


class Decoder(nn.Module):
    """D_0, per time step: Linear(256,256) → ReLU → Dropout 0.5 → Linear(256, C·V) (METHOD §5)."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(inplace=True),
            nn.Dropout(DECODER_DROPOUT), nn.Linear(FEATURE_DIM, out_features))

    def forward(self, temporal: torch.Tensor) -> torch.Tensor:
        """temporal (N, M, 256, T') → reconstruction (N, M, T', C·V)."""
        return self.layers(temporal.transpose(2, 3))  # Linear over 256 on (N, M, T', 256)


def make_cluster_head(num_clusters: int) -> nn.Linear:
    """C_b^t: Linear(256, K) (METHOD §5)."""
    head = nn.Linear(FEATURE_DIM, num_clusters)
    init_weights(head)
    return head


class _Branch(nn.Module):
    """What both branches share: an encoder, a cluster head, and the student/teacher switch."""

    STUDENT_ONLY: tuple[str, ...] = ()

    def __init__(self, layout: str | Layout, in_channels: int, num_clusters: int,
                 dropout: float) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.encoder = STGCN(self.layout, in_channels, dropout)
        self.cluster_head = make_cluster_head(num_clusters)
        self.is_teacher = False

    @property
    def num_clusters(self) -> int:
        return self.cluster_head.out_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, T, V, M) → f (N, 256). Call in eval mode for k-means and evaluation (§9)."""
        return self.encoder.embed(x)

    def _require_student(self, what: str) -> None:
        if self.is_teacher:
            raise RuntimeError(f"{type(self).__name__}.{what} needs the student-only parts "
                               f"{self.STUDENT_ONLY}; this module is a teacher")


class SharedBranch(_Branch):
    """B0: sees the source and the target (METHOD §5)."""

    STUDENT_ONLY = ("source_head", "decoder")

    def __init__(self, layout: str | Layout, in_channels: int, num_source_classes: int,
                 num_clusters: int, dropout: float = 0.5) -> None:
        super().__init__(layout, in_channels, num_clusters, dropout)
        self.source_head = nn.Linear(FEATURE_DIM, num_source_classes)
        self.decoder = Decoder(in_channels * self.layout.num_joints)
        init_weights(self.source_head)
        init_weights(self.decoder)

    def forward_source(self, x: torch.Tensor) -> SourceOutput:
        """Source poses (N, C, T, V, M) → f_0, C_0^s logits, D_0 reconstruction (L_sup, L_dec)."""
        self._require_student("forward_source")
        feature, temporal = self.encoder(x)
        return SourceOutput(feature, self.source_head(feature), self.decoder(temporal))

    def forward_target(self, x: torch.Tensor) -> SharedTargetOutput:
        """Target poses → f_0, C_0^t logits, D_0 reconstruction (L_dec, L_ocm, L_ccm)."""
        self._require_student("forward_target")
        feature, temporal = self.encoder(x)
        return SharedTargetOutput(feature, self.cluster_head(feature), self.decoder(temporal))


class SpecificBranch(_Branch):
    """B1: sees the target only, in its full layout (METHOD §5)."""

    def __init__(self, layout: str | Layout, in_channels: int, num_clusters: int,
                 dropout: float = 0.5) -> None:
        super().__init__(layout, in_channels, num_clusters, dropout)
        self.projector = nn.Linear(FEATURE_DIM, PROJECTION_DIM)
        init_weights(self.projector)

    def project(self, feature: torch.Tensor) -> torch.Tensor:
        """(N, 256) → (N, 128), L2-normalised: W_q on a student, W_k on a teacher."""
        return F.normalize(self.projector(feature), dim=1)

    def forward_target(self, x: torch.Tensor) -> SpecificTargetOutput:
        """Target poses → f_1, q = norm(W_q f_1), C_1^t logits (L_cont, L_ocm, L_ccm)."""
        feature = self.encoder.embed(x)
        return SpecificTargetOutput(feature, self.project(feature), self.cluster_head(feature))


BranchT = TypeVar("BranchT", bound=_Branch)


def make_teacher(student: BranchT) -> BranchT:
    """A frozen copy of ``student`` without its student-only parts (METHOD §5, D2)."""
    teacher = copy.deepcopy(student)
    for name in student.STUDENT_ONLY:
        setattr(teacher, name, None)
    teacher.is_teacher = True
    teacher.requires_grad_(False)
    return teacher


class CoDTModel(nn.Module):
    """Both branches, each a student and its teacher (METHOD §5, §13).

    ``train()``/``eval()`` switch all four; METHOD §5 runs teachers in train mode (batch-statistics
    BN, dropout on) during training. Teachers have ``requires_grad=False``; optimise
    ``student_parameters()``. Memory banks live outside (``training.memory.MemoryBank``).
    """

    def __init__(self, shared_student: SharedBranch, specific_student: SpecificBranch) -> None:
        super().__init__()
        if shared_student.num_clusters != specific_student.num_clusters:
            raise ValueError(f"both branches need the same K, got {shared_student.num_clusters} "
                             f"(shared) and {specific_student.num_clusters} (specific)")
        self.shared_student = shared_student
        self.specific_student = specific_student
        self.shared_teacher = make_teacher(shared_student)
        self.specific_teacher = make_teacher(specific_student)

    @property
    def num_clusters(self) -> int:
        return self.shared_student.num_clusters

    def student_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: both students (teachers only move by EMA)."""
        return [*self.shared_student.parameters(), *self.specific_student.parameters()]

    def students(self) -> dict[str, _Branch]:
        return {"shared": self.shared_student, "specific": self.specific_student}

    def teachers(self) -> dict[str, _Branch]:
        return {"shared": self.shared_teacher, "specific": self.specific_teacher}

    def forward_source(self, x: torch.Tensor) -> SourceOutput:
        """Source view (N, C, T, V_shared, M) through the B0 student (§13 step 2)."""
        return self.shared_student.forward_source(x)

    def forward_target(self, x_shared: torch.Tensor, x_specific: torch.Tensor) -> TargetOutput:
        """Student target views, B0 layout and B1 layout (§13 steps 3–4)."""
        return TargetOutput(self.shared_student.forward_target(x_shared),
                            self.specific_student.forward_target(x_specific))

    @torch.no_grad()
    def forward_teachers(self, x_shared: torch.Tensor, x_specific: torch.Tensor) -> TeacherOutput:
        """Teachers on the weak views, no graph (§13 step 5; call ``update_teachers`` first)."""
        specific_feature = self.specific_teacher.embed(x_specific)
        return TeacherOutput(self.shared_teacher.embed(x_shared), specific_feature,
                             self.specific_teacher.project(specific_feature))

    @torch.no_grad()
    def teacher_bank_keys(self, specific_bank: torch.Tensor) -> torch.Tensor:
        """B1 bank (S, 256) → negatives norm(W_k m_j) (S, 128), re-projected each step (§6)."""
        return self.specific_teacher.project(specific_bank)

    @torch.no_grad()
    def teacher_cluster_logits(self, bank: torch.Tensor, branch: Branch) -> torch.Tensor:
        """Ĉ_b^t over a bank (S, 256) → (S, K): the Sinkhorn input of the OCM (§7)."""
        return self.teachers()[_check_branch(branch)].cluster_head(bank)

    def update_teachers(self, momentum: float) -> None:
        """θ̂ ← α θ̂ + (1−α) θ for every teacher parameter (§5); buffers are left alone."""
        ema_update(self.shared_teacher, self.shared_student, momentum)
        ema_update(self.specific_teacher, self.specific_student, momentum)

    @torch.no_grad()
    def copy_students_to_teachers(self) -> None:
        """Teacher := student (parameters and BN buffers) for the parts a teacher has (D2)."""
        for branch, teacher in self.teachers().items():
            student_state = self.students()[branch].state_dict()
            teacher.load_state_dict({k: student_state[k] for k in teacher.state_dict()})

    @torch.no_grad()
    def init_cluster_heads(self, branch: Branch, centroids: torch.Tensor) -> None:
        """§9 step 4: k-means centroids (K, 256) into C_b^t and Ĉ_b^t, biases 0."""
        expected = (self.num_clusters, FEATURE_DIM)
        if tuple(centroids.shape) != expected:
            raise ValueError(f"centroids must be {expected}, got {tuple(centroids.shape)}")
        for module in (self.students()[_check_branch(branch)], self.teachers()[branch]):
            module.cluster_head.weight.copy_(centroids)
            if module.cluster_head.bias is not None:
                module.cluster_head.bias.zero_()

    def embed(self, x: torch.Tensor, branch: Branch = "specific") -> torch.Tensor:
        """Student feature f_b (N, 256); call in eval mode for k-means and evaluation (§9, §10)."""
        return self.students()[_check_branch(branch)].embed(x)


def _check_branch(branch: str) -> str:
    if branch not in ("shared", "specific"):
        raise ValueError(f"unknown branch {branch!r}; expected 'shared' or 'specific'")
    return branch


def build_model(*, shared_layout: str | Layout, specific_layout: str | Layout, in_channels: int,
                num_source_classes: int, num_clusters: int, dropout: float = 0.5) -> CoDTModel:
    """Build students (METHOD §3 init, global torch RNG) and their teacher copies (D2)."""
    for name, value in (("in_channels", in_channels), ("num_source_classes", num_source_classes),
                        ("num_clusters", num_clusters)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    shared = SharedBranch(shared_layout, in_channels, num_source_classes, num_clusters, dropout)
    specific = SpecificBranch(specific_layout, in_channels, num_clusters, dropout)
    return CoDTModel(shared, specific)


class FastDropout(nn.Module):
    """Inverted dropout with a ``rand >= p`` mask: the same distribution as ``nn.Dropout`` but
    3–5× faster on CPU, where ``bernoulli_`` took 16 % of an encoder's forward+backward
    (benchmarks/README.md). Identity in eval mode; no parameters, so checkpoints are unchanged."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p  # same shape as x
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` in ``model`` for :class:`FastDropout`; returns how many."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p))
                swapped += 1
    return swapped


class ClusterNet(nn.Module):
    """The deployable network F_b → C_b^t (METHOD §10 "Inference"): what ONNX export wraps.

    ``forward(poses (N, C, T, V, M)) -> (probabilities (N, K) softmax, embedding (N, 256))``.
    """

    def __init__(self, encoder: STGCN, cluster_head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.cluster_head = cluster_head

    @property
    def layout(self) -> Layout:
        return self.encoder.layout

    def forward(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.encoder.embed(poses)  # (N, 256)
        probabilities = torch.softmax(self.cluster_head(embedding), dim=1)  # (N, K)
        return probabilities, embedding

    @classmethod
    def from_codt(cls, model: CoDTModel, branch: Branch = "specific") -> ClusterNet:
        """Copy a student's encoder and cluster head (CoDT-B1 by default), in eval mode."""
        student = model.students()[_check_branch(branch)]
        net = cls(copy.deepcopy(student.encoder), copy.deepcopy(student.cluster_head))
        return net.eval().requires_grad_(False)
