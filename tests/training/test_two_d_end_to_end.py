"""A 2-D model end to end on real files: NW-UCLA 3-D source → MSR Action3D with depth dropped (a
task file with ``target.channels: xy``), prepared, trained for one epoch per stage, exported; then
``codt-cluster`` on 2-D arrays with the exported model, and its refusal of 3-D files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from codt_deploy import cli  # noqa: E402
from codt_deploy.models import resolve_model  # noqa: E402
from codt_deploy.readers import read_poses  # noqa: E402
from training.prepare import main as prepare_main  # noqa: E402
from training.run import main as train_main  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = ["data.source_limit=12", "data.target_train_limit=12", "data.target_eval_limit=12",
        "model.num_clusters=4", "optim.epochs_stage1=1", "optim.epochs_stage2=1",
        "optim.batch_source=4", "optim.batch_target=6", "eval.kmeans_seeds=1",
        "runtime.device=cpu", "runtime.threads=1", "runtime.progress=false"]


@pytest.fixture(scope="module")
def two_d_model(shared_data, tmp_path_factory):
    """(exported .onnx, its folder): a tiny xy model trained on the real 2-D task."""
    root = tmp_path_factory.mktemp("two_d")
    task_file = root / "ucla2msr2d-tiny.yaml"
    task_file.write_text(
        f"source: {{dataset: ucla, path: {shared_data / 'nw_ucla'}, layout: kinect20}}\n"
        f"target: {{dataset: msr, path: {shared_data / 'msr_action3d'}, layout: msr20,\n"
        f"         channels: xy}}\n"
        "shared: kinect20\nspecific: msr20\npersons: 1\n", encoding="utf-8")
    assert prepare_main([str(task_file), "--out", str(root / "prepared"), "--limit", "12",
                         "--quiet"]) == 0
    sets = [f"data.prepared_dir={root / 'prepared' / task_file.stem}", *TINY]
    argv = ["--task", str(task_file), "--run-dir", str(root / "run"),
            "--export-dir", str(root / "exported"), "-q"]
    assert train_main(argv + [a for s in sets for a in ("--set", s)]) == 0
    return root / "exported" / "ucla2msr2d-tiny.onnx"


def _msr_files(shared_data, n=4):
    return sorted((shared_data / "msr_action3d").glob("a0[1-4]_s01_e01_skeleton3D.txt"))[:n]


def test_the_exported_model_says_it_reads_x_y(two_d_model):
    manifest = resolve_model(two_d_model).manifest
    assert manifest.channels == ("x", "y") and manifest.preprocess.channels == "xy"
    assert manifest.input.shape == ("N", 2, 50, 20, 1) and manifest.layout == "msr20"
    info = json.loads(two_d_model.with_suffix(".json").read_text())
    assert info["channels"] == ["x", "y"] and info["preprocess"]["channels"] == "xy"


def test_codt_cluster_clusters_2d_arrays_and_refuses_3d_files(two_d_model, shared_data, tmp_path,
                                                             capsys):
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    files = _msr_files(shared_data)
    for path in files:  # what a 2-D camera gives: the recorded x, y without depth
        np.save(arrays / path.name.replace("_skeleton3D.txt", ".npy"),
                read_poses(path)[0].data[:, 0, :, :2])  # (T, V, 2)
    out = tmp_path / "clusters.csv"
    status = cli.main([str(arrays), "-o", str(out), "--model", str(two_d_model), "--layout",
                       "msr20", "--axes", "TVC", "--quiet"])
    err = capsys.readouterr().err
    assert status == 0, err
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(files)
    assert all(0 <= int(r["cluster"]) < 4 and 0 < float(r["confidence"]) <= 1 for r in rows)

    # 3-D files for the 2-D model: each is refused by name with the fix, the rest still clusters.
    mixed = [*map(str, files[:2]), str(arrays / files[2].name.replace("_skeleton3D.txt", ".npy"))]
    out3 = tmp_path / "mixed.csv"
    status = cli.main([*mixed, "-o", str(out3), "--model", str(two_d_model), "--layout", "msr20",
                       "--axes", "TVC", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    with open(out3, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1
    for path in files[:2]:
        line = next(line for line in err.splitlines() if path.name in line)
        assert "FAILED" in line and "has channels ('x', 'y', 'z') (3-D poses" in line
        assert "the model expects ('x', 'y') (2-D poses (x, y), channels='xy')" in line
        assert "drop the depth (z) before clustering" in line
