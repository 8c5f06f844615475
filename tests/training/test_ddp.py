"""Two-process training on CPU with the gloo backend, launched by torchrun.

Each rank trains on its own shard of every target epoch; the memory banks (written with
all-gathered ids and features) and the students (averaged gradients) must agree across ranks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import REPO_ROOT

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from training import distributed as ddp
    from training.config import from_dict
    from training.data import TrainBatches, load_task_data
    from training.engine import fill_banks, kmeans_init, train_one_epoch
    from training.run import build

    task_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    ctx = ddp.init_from_env("cpu", timeout_s=120)
    config = from_dict({
        "data": {"task": "ucla2msr", "prepared_dir": str(task_dir)}, "model": {"num_clusters": 4},
        "optim": {"epochs_stage1": 1, "epochs_stage2": 1, "batch_source": 4, "batch_target": 8},
        "runtime": {"device": "cpu", "progress": False}})
    cpu = torch.device("cpu")
    data = load_task_data(task_dir, config)
    model, optimizer, banks = build(config, data, cpu, ctx)
    fill_banks(model, banks, data, config, cpu, ctx)
    filled = {name: bank.features.clone() for name, bank in banks.items()}
    train_one_epoch(model, optimizer, banks, data, config, epoch=1, device=cpu, ctx=ctx)
    ddp.broadcast_buffers(ctx, model)
    kmeans_init(model, data, config, cpu)
    record = train_one_epoch(model, optimizer, banks, data, config, epoch=2, device=cpu, ctx=ctx)
    ids = [torch.cat([b.ids for b in TrainBatches(data, config, epoch=e, stage=config.stage_of(e),
                                                   rank=ctx.rank, world_size=ctx.world_size)])
           for e in (1, 2)]
    torch.save({"rank": ctx.rank, "world_size": ctx.world_size, "filled": filled,
                "banks": {name: bank.features for name, bank in banks.items()},
                "students": torch.cat([p.detach().reshape(-1) for p in model.student_parameters()]),
                "teachers": torch.cat([p.reshape(-1) for p in model.specific_teacher.parameters()]),
                "ids": ids, "steps": record["steps"], "ocm": record["loss/ocm"]},
               out / f"rank{ctx.rank}.pt")
    ddp.shutdown(ctx)
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.ddp
def test_two_gloo_ranks_keep_banks_and_students_in_sync(any_task_dir, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script),
               str(any_task_dir), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1",
                                 "PYTHONPATH": os.pathsep.join(filter(None, (
                                     str(REPO_ROOT), os.environ.get("PYTHONPATH"))))})
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (rank0["world_size"], rank1["world_size"]) == (2, 2)
    n = len(rank0["banks"]["shared"])
    for name in ("shared", "specific"):
        # the bank fill was sharded, then gathered: every slot written, identical on both ranks
        assert torch.equal(rank0["filled"][name], rank1["filled"][name])
        assert bool((rank0["filled"][name].abs().sum(dim=1) > 0).all())
        assert torch.equal(rank0["banks"][name], rank1["banks"][name])
        assert not torch.equal(rank0["banks"][name], rank0["filled"][name])  # training wrote it
    # in every epoch each rank trains on its own, disjoint shard of the target samples
    for epoch_ids0, epoch_ids1 in zip(rank0["ids"], rank1["ids"]):
        assert len(epoch_ids0) == len(epoch_ids1) == 4 * ((n // 2) // 4)
        assert not set(epoch_ids0.tolist()) & set(epoch_ids1.tolist())
    assert rank0["steps"] == rank1["steps"] == (n // 2) // 4
    # averaged gradients keep the students (and so the EMA teachers) identical
    assert torch.equal(rank0["students"], rank1["students"])
    assert torch.equal(rank0["teachers"], rank1["teachers"])
