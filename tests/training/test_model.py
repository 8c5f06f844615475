"""CoDT branches, teachers and the deployable ClusterNet (METHOD.md §5, §9, §10, §13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codt_deploy.layouts import get_layout
from training.augment import STRONG, WEAK, augment
from training.clustering import sinkhorn
from training.losses import (
    ccm_loss,
    contrastive_loss,
    ocm_loss,
    reconstruction_loss,
    reconstruction_target,
    supervised_loss,
)
from training.memory import MemoryBank
from training.model import Branch, ClusterNet, CoDTModel, build_model

K, SOURCE_CLASSES, T = 4, 6, 16


@pytest.fixture()
def model() -> CoDTModel:
    torch.manual_seed(0)
    return build_model(shared_layout="shared15", specific_layout="body25", in_channels=3,
                       num_source_classes=SOURCE_CLASSES, num_clusters=K)


def _poses(n: int, layout: str, seed: int) -> torch.Tensor:
    v = get_layout(layout).num_joints
    return torch.randn(n, 3, T, v, 2, generator=torch.Generator().manual_seed(seed))


def test_teachers_hold_exactly_the_ema_parts(model):
    shared_teacher = {name.split(".")[0] for name, _ in model.shared_teacher.named_parameters()}
    specific_teacher = {name.split(".")[0] for name, _ in model.specific_teacher.named_parameters()}
    assert shared_teacher == {"encoder", "cluster_head"}
    assert specific_teacher == {"encoder", "projector", "cluster_head"}
    student = {name.split(".")[0] for name, _ in model.shared_student.named_parameters()}
    assert student == {"encoder", "source_head", "decoder", "cluster_head"}
    assert not any(p.requires_grad for p in model.shared_teacher.parameters())
    assert not any(p.requires_grad for p in model.specific_teacher.parameters())
    assert all(p.requires_grad for p in model.student_parameters())


def test_teachers_start_as_copies_of_students(model):
    for branch, teacher in model.teachers().items():
        student_state = model.students()[branch].state_dict()
        for name, value in teacher.state_dict().items():
            torch.testing.assert_close(value, student_state[name], rtol=0, atol=0)
            assert value.data_ptr() != student_state[name].data_ptr()


def test_output_shapes(model):
    source = model.forward_source(_poses(3, "shared15", 0))
    assert source.feature.shape == (3, 256) and source.source_logits.shape == (3, SOURCE_CLASSES)
    assert source.reconstruction.shape == (3, 2, 4, 15 * 3)  # (N, M, T', V·C)
    target = model.forward_target(_poses(3, "shared15", 1), _poses(3, "body25", 2))
    assert target.shared.cluster_logits.shape == (3, K)
    assert target.shared.reconstruction.shape == (3, 2, 4, 45)
    assert target.specific.feature.shape == (3, 256)
    torch.testing.assert_close(target.specific.query.norm(dim=1), torch.ones(3))
    teacher = model.forward_teachers(_poses(3, "shared15", 1), _poses(3, "body25", 2))
    assert teacher.shared_feature.shape == (3, 256) and teacher.key.shape == (3, 128)
    assert not teacher.key.requires_grad
    assert model.teacher_bank_keys(torch.randn(7, 256)).shape == (7, 128)
    assert model.teacher_cluster_logits(torch.randn(7, 256), "shared").shape == (7, K)


def _stage_two_loss(model: CoDTModel) -> torch.Tensor:
    """One stage-2 iteration's L_all (METHOD §13) on tiny random data."""
    generator = torch.Generator().manual_seed(0)
    shared_parts, specific_parts = get_layout("shared15").parts, get_layout("body25").parts
    ids = torch.tensor([0, 2, 3, 5])
    x_source = _poses(4, "shared15", 10)
    x_shared, x_specific = _poses(4, "shared15", 11), _poses(4, "body25", 12)
    source = model.forward_source(augment(x_source, WEAK, shared_parts, generator))
    target = model.forward_target(augment(x_shared, STRONG, shared_parts, generator),
                                  augment(x_specific, STRONG, specific_parts, generator))
    model.update_teachers(0.999)
    teacher = model.forward_teachers(augment(x_shared, WEAK, shared_parts, generator),
                                     augment(x_specific, WEAK, specific_parts, generator))
    branches: tuple[Branch, ...] = ("shared", "specific")
    banks = {b: MemoryBank(8, 256) for b in branches}
    for bank in banks.values():
        bank.write(torch.arange(8), torch.randn(8, 256, generator=generator))
    contrastive = contrastive_loss(target.specific.query, teacher.key,
                                   model.teacher_bank_keys(banks["specific"].read()), ids)
    banks["specific"].write(ids, teacher.specific_feature)
    banks["shared"].write(ids, teacher.shared_feature)
    labels = {b: sinkhorn(model.teacher_cluster_logits(banks[b].read(), b))[1][ids]
              for b in banks}
    steps = source.reconstruction.shape[2]
    decoder = (reconstruction_loss(source.reconstruction, reconstruction_target(x_source, steps))
               + reconstruction_loss(target.shared.reconstruction,
                                     reconstruction_target(x_shared, steps)))
    ocm = (ocm_loss(target.shared.cluster_logits, labels["shared"])
           + ocm_loss(target.specific.cluster_logits, labels["specific"]))
    ccm = ccm_loss(target.shared.cluster_logits.softmax(1),
                   target.specific.cluster_logits.softmax(1), labels["shared"], labels["specific"])
    sup = supervised_loss(source.source_logits, torch.tensor([0, 1, 2, 5]))
    return sup + 20 * decoder + contrastive + 5 * ocm + 10 * ccm


def test_every_student_parameter_gets_a_gradient_and_no_teacher_does(model):
    loss = _stage_two_loss(model)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.student_parameters())
    assert all(p.grad is None for t in model.teachers().values() for p in t.parameters())


def test_a_teacher_cannot_run_the_student_only_paths(model):
    with pytest.raises(RuntimeError, match="teacher"):
        model.shared_teacher.forward_source(_poses(2, "shared15", 0))
    with pytest.raises(ValueError, match="unknown branch"):
        model.embed(_poses(2, "shared15", 0), branch="source")


def test_copy_students_to_teachers(model):
    with torch.no_grad():
        for p in model.student_parameters():
            p.add_(1.0)
        model.shared_student.encoder.data_bn.running_mean.fill_(3.0)
    model.copy_students_to_teachers()
    torch.testing.assert_close(model.shared_teacher.encoder.data_bn.running_mean,
                               torch.full((45,), 3.0))
    for name, p in model.specific_teacher.named_parameters():
        torch.testing.assert_close(p, dict(model.specific_student.named_parameters())[name])
    assert not any(p.requires_grad for p in model.specific_teacher.parameters())


def test_init_cluster_heads_sets_student_and_teacher(model):
    centroids = torch.nn.functional.normalize(torch.randn(K, 256), dim=1)
    model.init_cluster_heads("shared", centroids)
    for module in (model.shared_student, model.shared_teacher):
        torch.testing.assert_close(module.cluster_head.weight, centroids)
        assert (module.cluster_head.bias == 0).all()
    assert not torch.equal(model.specific_student.cluster_head.weight, centroids)
    with pytest.raises(ValueError, match="centroids must be"):
        model.init_cluster_heads("specific", torch.randn(K + 1, 256))


def test_state_dict_round_trip_is_strict(model):
    torch.manual_seed(1)
    fresh = build_model(shared_layout="shared15", specific_layout="body25", in_channels=3,
                        num_source_classes=SOURCE_CLASSES, num_clusters=K)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = _poses(2, "body25", 3)
    torch.testing.assert_close(fresh.eval().embed(x), model.eval().embed(x))


def test_build_model_validates():
    with pytest.raises(ValueError, match="num_clusters"):
        build_model(shared_layout="shared15", specific_layout="body25", in_channels=3,
                    num_source_classes=6, num_clusters=0)


def test_cluster_net_is_the_eval_student(model):
    net = ClusterNet.from_codt(model, "specific")
    assert not net.training and net.layout.name == "body25"
    x = _poses(3, "body25", 4)
    probabilities, embedding = net(x)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
    model.eval()
    torch.testing.assert_close(embedding, model.embed(x, "specific"))
    logits = model.specific_student.cluster_head(embedding)
    torch.testing.assert_close(probabilities, logits.softmax(dim=1))
    with torch.no_grad():  # an independent copy: later training does not move the export
        model.specific_student.cluster_head.weight.add_(1.0)
    torch.testing.assert_close(net(x)[0], probabilities)


def _calibrated_cluster_net() -> ClusterNet:
    """A ClusterNet with O(1) activations: larger weights, BN statistics from data."""
    torch.manual_seed(0)
    model = build_model(shared_layout="shared15", specific_layout="shared15", in_channels=3,
                        num_source_classes=3, num_clusters=5)
    branch = model.specific_student
    with torch.no_grad():
        for name, p in branch.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.normal_(0.0, (1.0 / p[0].numel()) ** 0.5)
        branch.train()
        for seed in range(3):  # calibrate running statistics
            branch.embed(_poses(8, "shared15", seed) * 0.5)
    return ClusterNet.from_codt(model, "specific")


@pytest.mark.slow
def test_onnx_export_parity_with_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = _calibrated_cluster_net()
    example = _poses(2, "shared15", 20)
    path = tmp_path / "cluster_net.onnx"
    # The dynamo exporter (torch.onnx's default since 2.9) with a dynamic batch axis.
    torch.onnx.export(net, (example,), str(path), dynamo=True, input_names=["poses"],
                      output_names=["probabilities", "embedding"],
                      dynamic_shapes=({0: torch.export.Dim("N")},), verbose=False)
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "N"
    for batch in (1, 5):
        x = _poses(batch, "shared15", 30 + batch)
        probabilities, embedding = session.run(None, {"poses": x.numpy()})
        with torch.no_grad():
            expected_probabilities, expected_embedding = net(x)
        assert embedding.shape == (batch, 256) and probabilities.shape == (batch, 5)
        assert float(expected_embedding.abs().mean()) > 0.05  # a non-trivial comparison
        np.testing.assert_allclose(embedding, expected_embedding.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(probabilities, expected_probabilities.numpy(), atol=1e-5)
        assert (probabilities.argmax(1) == expected_probabilities.numpy().argmax(1)).all()
