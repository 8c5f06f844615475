"""Self-describing checkpoints: round trip, strict and weights-only loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from training import checkpoint as ckpt
from training.config import TrainConfig, from_dict, to_dict
from training.model import build_model


def _model(num_clusters: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(shared_layout="kinect20", specific_layout="msr20", in_channels=3,
                       num_source_classes=4, num_clusters=num_clusters, dropout=0.5)


def _save(path, model, *, banks=None, epoch=3, stage=1):
    optimizer = torch.optim.SGD(model.student_parameters(), lr=0.1, momentum=0.9)
    for p in model.student_parameters():  # give the optimizer some momentum state
        p.grad = torch.ones_like(p)
    optimizer.step()
    banks = banks if banks is not None else {"shared": torch.randn(7, 256), "specific": torch.randn(7, 256)}
    return ckpt.save_checkpoint(path, config=to_dict(TrainConfig()), model=model, optimizer=optimizer,
                                epoch=epoch, stage=stage, metrics={"specific/kmeans/acc": 12.5},
                                banks=banks), optimizer, banks


def test_round_trip_restores_everything(tmp_path):
    model = _model()
    path, optimizer, banks = _save(tmp_path / "checkpoints" / "last.pt", model, epoch=3, stage=1)
    assert not list(path.parent.glob("*.tmp"))  # written atomically
    payload = ckpt.load_checkpoint(path)
    assert payload["schema"] == ckpt.SCHEMA and payload["epoch"] == 3 and payload["stage"] == 1
    assert payload["metrics"] == {"specific/kmeans/acc": 12.5}
    assert from_dict(payload["config"]) == TrainConfig()
    assert isinstance(payload["git_sha"], str) and payload["git_sha"]

    fresh = _model(seed=1)
    fresh_optimizer = torch.optim.SGD(fresh.student_parameters(), lr=0.5, momentum=0.9)
    fresh_banks = {"shared": torch.zeros(7, 256), "specific": torch.zeros(7, 256)}
    ckpt.restore(payload, model=fresh, optimizer=fresh_optimizer, banks=fresh_banks)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert fresh_optimizer.state_dict()["param_groups"][0]["lr"] == 0.1
    assert all(torch.equal(fresh_banks[k], banks[k]) for k in banks)
    assert ckpt.latest_checkpoint(tmp_path) == path


def test_strict_load_rejects_another_model(tmp_path):
    path, _, _ = _save(tmp_path / "a.pt", _model(num_clusters=5))
    with pytest.raises(ckpt.CheckpointError, match="do not fit this model"):
        ckpt.restore(ckpt.load_checkpoint(path), model=_model(num_clusters=6))


def test_bank_of_another_target_set_is_rejected(tmp_path):
    path, _, _ = _save(tmp_path / "a.pt", _model())
    with pytest.raises(ckpt.CheckpointError, match="another target set"):
        ckpt.restore(ckpt.load_checkpoint(path), model=_model(),
                     banks={"shared": torch.zeros(9, 256), "specific": torch.zeros(9, 256)})


def test_schema_and_missing_keys_are_named(tmp_path):
    path, _, _ = _save(tmp_path / "a.pt", _model())
    payload = torch.load(path, weights_only=True)
    payload["schema"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ckpt.CheckpointError, match="schema 99 is not supported"):
        ckpt.load_checkpoint(tmp_path / "future.pt")
    del payload["optimizer"]
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"missing keys \['optimizer'\]"):
        ckpt.load_checkpoint(tmp_path / "partial.pt")


class _Arbitrary:
    """An object a weights-only load must refuse to unpickle."""


def test_loading_is_weights_only(tmp_path):
    torch.save({"schema": 1, "payload": _Arbitrary()}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot read the checkpoint"):
        ckpt.load_checkpoint(tmp_path / "evil.pt")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load_checkpoint(tmp_path / "garbage.pt")
    assert ckpt.latest_checkpoint(tmp_path) is None
