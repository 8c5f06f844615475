"""Per-sample memory bank (METHOD.md §5 "Memory banks", D13, D14)."""

from __future__ import annotations

import pytest
import torch

from training.memory import MemoryBank


def test_write_read_and_filled_tracking():
    bank = MemoryBank(5, 3)
    assert bank.num_filled == 0 and not bank.is_full
    bank.write(torch.tensor([1, 3]), torch.tensor([[1.0, 1, 1], [3, 3, 3]]))
    assert bank.num_filled == 2
    assert bank.filled.tolist() == [False, True, False, True, False]
    with pytest.raises(RuntimeError, match="3 of 5 slots never written"):
        bank.read()
    partial = bank.read(allow_partial=True)
    assert partial[3].tolist() == [3, 3, 3] and partial[0].tolist() == [0, 0, 0]
    bank.write(torch.tensor([0, 2, 4, 3]), torch.arange(12.0).view(4, 3))
    assert bank.is_full
    features = bank.read()
    assert features[3].tolist() == [9, 10, 11]  # slot 3 overwritten
    assert features[1].tolist() == [1, 1, 1]  # slot 1 kept


def test_written_features_are_detached():
    bank = MemoryBank(2, 2)
    feats = torch.ones(2, 2, requires_grad=True)
    bank.write(torch.tensor([0, 1]), feats * 2)
    assert not bank.read().requires_grad


def test_gather_hook_writes_the_global_batch():
    bank = MemoryBank(6, 2)
    calls = []

    def fake_all_gather(ids, feats):  # two "ranks": this one and another with ids + 3
        calls.append(ids.clone())
        return torch.cat([ids, ids + 3]), torch.cat([feats, -feats])

    bank.gather = fake_all_gather
    bank.write(torch.tensor([0, 2]), torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert len(calls) == 1
    assert bank.filled.tolist() == [True, False, True, True, False, True]
    assert bank.read(allow_partial=True)[5].tolist() == [-2, -2]


def test_bad_writes_are_errors():
    bank = MemoryBank(4, 2)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        bank.write(torch.tensor([4]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"features must be \(1, 2\)"):
        bank.write(torch.tensor([0]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="1-D integer"):
        bank.write(torch.tensor([0.0]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="num_samples"):
        MemoryBank(0, 2)


def test_state_dict_and_random_start():
    bank = MemoryBank(3, 2)
    bank.randomize_(torch.Generator().manual_seed(0))
    assert bank.num_filled == 0 and bank.read(allow_partial=True).abs().sum() > 0
    again = MemoryBank(3, 2)
    again.randomize_(torch.Generator().manual_seed(0))
    assert torch.equal(again.features, bank.features)
    bank.write(torch.tensor([1]), torch.ones(1, 2))
    restored = MemoryBank(3, 2)
    restored.load_state_dict(bank.state_dict(), strict=True)
    assert torch.equal(restored.features, bank.features)
    assert torch.equal(restored.filled, bank.filled)
