"""Penn Action .mat (synthetic, uint16 nframes) and pyskl pickles (generated from real samples).

scipy is used here only to write and cross-check .mat files; the reader itself does not use it."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses

from .conftest import NTU_NAMES

scipy_io = pytest.importorskip("scipy.io")


def _mat_bytes(fields: dict) -> bytes:
    buffer = io.BytesIO()
    scipy_io.savemat(buffer, fields)
    return buffer.getvalue()


def test_penn_fixture(fixtures_dir: Path) -> None:
    path = fixtures_dir / "penn" / "0001.mat"
    mat = scipy_io.loadmat(path)
    assert mat["nframes"].dtype == np.uint16  # the fixture really exercises the uint16 case
    [seq] = read_poses(path)
    assert seq.data.shape == (5, 1, 13, 3) and seq.layout == "penn13"
    assert (seq.label, seq.label_name, seq.name) == (14, "tennis_serve", "0001")
    np.testing.assert_allclose(seq.data[:, 0, :, 0], mat["x"] / 640, atol=1e-6)
    np.testing.assert_allclose(seq.data[:, 0, :, 1], mat["y"] / 480, atol=1e-6)
    np.testing.assert_array_equal(seq.data[:, 0, :, 2], mat["visibility"])
    assert seq.meta["train"] == 1 and seq.meta["image_size"] == (640.0, 480.0)


def _penn_fields(frames: int, nframes_dtype: type = np.uint8) -> dict:
    return {"action": "squat", "pose": "front", "x": np.ones((frames, 13)) * 32,
            "y": np.ones((frames, 13)) * 24, "visibility": np.ones((frames, 13), np.uint8),
            "dimensions": np.array([[240, 320, frames]]),
            "nframes": np.array([[frames]], nframes_dtype)}


def test_penn_uint8_nframes_from_bytes() -> None:
    [seq] = read_bytes("0002.mat", _mat_bytes(_penn_fields(3)))
    assert seq.data.shape == (3, 1, 13, 3) and seq.label == 11
    np.testing.assert_allclose(seq.data[0, 0, 0], [0.1, 0.1, 1.0], atol=1e-6)


@pytest.mark.parametrize("change, problem", [
    ({"nframes": np.array([[4]], np.uint8)}, r"expected \(nframes=4, 13\)"),
    ({"dimensions": np.array([[0, 320, 3]])}, "expected positive"),
    ({"nframes": np.array([[0]], np.uint8)}, "zero frames"),
])
def test_penn_errors(change: dict, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem):
        read_bytes("0003.mat", _mat_bytes({**_penn_fields(3), **change}))


def test_penn_missing_field_and_garbage() -> None:
    fields = _penn_fields(3)
    del fields["visibility"]
    with pytest.raises(PoseFormatError, match="missing field.*visibility"):
        read_bytes("0004.mat", _mat_bytes(fields))
    with pytest.raises(PoseFormatError, match="not a MATLAB v5 .mat file"):
        read_bytes("0005.mat", b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4)


def test_pyskl_needs_trust_and_is_never_read_from_bytes(pyskl_pickles: dict) -> None:
    with pytest.raises(PoseFormatError, match="refusing to unpickle"):
        read_poses(pyskl_pickles["ntu"])
    with pytest.raises(PoseFormatError, match="never unpickled"):
        read_bytes("ntu_pyskl.pkl", pyskl_pickles["ntu"].read_bytes())
    with pytest.raises(PoseFormatError, match="unknown option"):
        read_bytes("ntu_pyskl.pkl", pyskl_pickles["ntu"].read_bytes(), trust_pickle=True)


def test_pyskl_3d_from_ntu(pyskl_pickles: dict, ntu_dir: Path) -> None:
    sequences = read_poses(pyskl_pickles["ntu"], trust_pickle=True)
    assert [s.name for s in sequences] == list(NTU_NAMES)
    for seq in sequences:
        [original] = read_poses(ntu_dir / f"{seq.name}.skeleton")
        assert (seq.layout, seq.channels, seq.label) == ("ntu25", ("x", "y", "z"), original.label)
        np.testing.assert_array_equal(seq.data, original.data)
    assert sequences[0].meta["splits"] == ["xsub_val"] and sequences[4].meta["splits"] == []


def test_pyskl_2d_with_scores_from_kinetics(pyskl_pickles: dict, shared_data: Path) -> None:
    sequences = read_poses(pyskl_pickles["kinetics"], trust_pickle=True)
    assert len(sequences) == 7
    clip = shared_data / "kinetics_skeleton_samples" / "kinetics_val" / f"{sequences[0].name}.json"
    [kinetics] = read_poses(clip)
    seq = sequences[0]
    assert (seq.layout, seq.channels, seq.meta["img_shape"]) == ("coco18", ("x", "y", "score"),
                                                                 (256, 340))
    np.testing.assert_allclose(seq.data[..., 2], kinetics.data[..., 2], atol=1e-6)
    scored = kinetics.data[..., 2] > 0
    np.testing.assert_allclose(seq.data[..., 0][scored],
                               (kinetics.data[..., 0][scored] + 0.5) * 340, rtol=1e-5)


def test_pyskl_refuses_non_numpy_globals_and_kpfile_annotations(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"annotations": [{"keypoint": Path("x")}]}))
    with pytest.raises(PoseFormatError, match="refusing to load pathlib"):
        read_poses(path, trust_pickle=True)
    path.write_bytes(pickle.dumps({"annotations": [{"frame_dir": "v", "raw_file": "k.pkl",
                                                    "frame_inds": np.arange(3)}]}))
    with pytest.raises(PoseFormatError, match="kpfile-based annotations are not supported"):
        read_poses(path, trust_pickle=True)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(PoseFormatError, match="not a readable pickle"):
        read_poses(path, trust_pickle=True)
