"""``python -m training.export RUN_DIR`` on a hand-made run: strict checkpoint load, both branches."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from codt_deploy.models import resolve_model, sha256_file  # noqa: E402
from tests.conftest import example_poses  # noqa: E402

K = 4


def _prepared_task(folder, shared_poses, specific_poses):
    """A minimal prepared task folder (docs/ARCHITECTURE.md) holding only the target eval split."""
    from codt_deploy.preprocess import PreprocessConfig

    n = len(specific_poses)
    split = folder / "target_eval"
    split.mkdir(parents=True)
    np.save(split / "data_shared15.npy", shared_poses)
    np.save(split / "data_msr20.npy", specific_poses)
    np.save(split / "labels.npy", np.arange(n, dtype=np.int64) // 2 % K)
    np.save(split / "names.npy", np.array([f"s{i}" for i in range(n)]))
    task = {"schema": 1, "task": "tinytask", "layouts": {"shared": "shared15", "specific": "msr20"},
            "num_clusters": K, "channels": "xyz",
            "source": {"class_names": ["wave", "kick", "sit"]},
            "target": {"class_names": [f"action {i}" for i in range(K)]},
            "splits": {"target_eval": {"samples": n}},
            "preprocess": {lay: PreprocessConfig(layout=lay).model_dump(mode="json")
                           for lay in ("shared15", "msr20")}}
    (folder / "task.json").write_text(json.dumps(task))


@pytest.mark.slow
def test_export_run_loads_the_final_checkpoint_and_exports_both_branches(tmp_path):
    from training import export
    from training.checkpoint import FINAL, checkpoint_dir, save_checkpoint
    from training.config import from_dict, to_dict
    from training.model import build_model

    _prepared_task(tmp_path / "task", example_poses("shared15"), example_poses("msr20"))
    config = from_dict({"data": {"task": "tinytask", "prepared_dir": str(tmp_path / "task")}})
    torch.manual_seed(0)
    model = build_model(shared_layout="shared15", specific_layout="msr20", in_channels=3,
                        num_source_classes=3, num_clusters=K)
    run = tmp_path / "run"
    save_checkpoint(checkpoint_dir(run) / FINAL, config=to_dict(config), model=model,
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epoch=1, stage=2,
                    metrics={}, banks={})

    assert export.main([str(run), "--out", str(tmp_path / "out"), "--shared"]) == 0
    specific = resolve_model(tmp_path / "out" / "tinytask.onnx").manifest
    shared = resolve_model(tmp_path / "out" / "tinytask-shared.onnx").manifest
    ckpt_sha = sha256_file(checkpoint_dir(run) / FINAL)
    assert specific.checkpoint_sha256 == shared.checkpoint_sha256 == ckpt_sha
    assert (specific.branch, specific.layout, specific.input.shape) == \
        ("specific", "msr20", ("N", 3, 50, 20, 2))
    assert (shared.branch, shared.layout, shared.input.shape) == \
        ("shared", "shared15", ("N", 3, 50, 15, 2))
    assert specific.num_clusters == K and specific.task == "tinytask"
    assert len(specific.nearest_source_classes) == K
    assert set(specific.nearest_source_classes) <= {"wave", "kick", "sit", ""}
    assert specific.metrics["parity"]["argmax_agreement"] == 1.0
    assert specific.metrics["eval"]["n"] == 40


def test_export_run_without_a_final_checkpoint_fails_clearly(tmp_path, capsys):
    from training import export

    assert export.main([str(tmp_path / "nothing-here")]) == 1
    assert "final.pt: checkpoint not found" in capsys.readouterr().err
