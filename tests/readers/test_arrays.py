"""CrosSCLR arrays (generated from the 5 NTU files) and plain .npy/.npz arrays, save_npz."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import read_bytes, read_poses, save_npz

from .conftest import NTU_NAMES


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_crossclr_data_with_trusted_label_pickle(crossclr_arrays: dict, ntu_dir: Path) -> None:
    sequences = read_poses(crossclr_arrays["pkl"], trust_pickle=True)
    assert [s.name for s in sequences] == list(NTU_NAMES)
    assert [s.label for s in sequences] == [10, 57, 2, 33, 16]
    for seq, name in zip(sequences, NTU_NAMES):
        [original] = read_poses(ntu_dir / f"{name}.skeleton")
        assert seq.layout == "ntu25" and seq.data.shape == (original.num_frames, 2, 25, 3)
        np.testing.assert_array_equal(seq.data[:, :original.num_persons], original.data[:, :2])


def test_crossclr_label_pickle_is_not_read_without_trust(crossclr_arrays: dict,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    sequences = read_poses(crossclr_arrays["pkl"])
    assert [s.label for s in sequences] == [None] * 5
    assert sequences[0].name == "val_data[0]"
    assert "trust_pickle=True" in caplog.text


def test_crossclr_position_with_label_npy(crossclr_arrays: dict) -> None:
    sequences = read_poses(crossclr_arrays["npy"])
    assert [s.label for s in sequences] == [10, 57, 2, 33, 16]
    assert {s.num_frames for s in sequences} == {50}


def test_crossclr_upload_has_no_labels(crossclr_arrays: dict) -> None:
    sequences = read_bytes("val_data.npy", crossclr_arrays["pkl"].read_bytes())
    assert len(sequences) == 5 and sequences[0].label is None


def test_label_pickle_with_a_global_is_refused(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self):  # noqa: ANN204 - what a hostile pickle does
            return os.makedirs, (str(tmp_path / "pwned"),)

    np.save(tmp_path / "val_data.npy", np.ones((1, 3, 4, 25, 2), np.float32))
    (tmp_path / "val_label.pkl").write_bytes(pickle.dumps((["a"], [Exploit()])))
    with pytest.raises(PoseFormatError, match="refusing to load posix.makedirs|refusing to load "
                                              "os.makedirs"):
        read_poses(tmp_path / "val_data.npy", trust_pickle=True)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("axes, shape", [
    ("TVC", (7, 25, 3)), ("TMVC", (7, 2, 25, 3)), ("MTVC", (2, 7, 25, 3)),
    ("CTVM", (3, 7, 25, 2)), ("NCTVM", (2, 3, 7, 25, 2)),
])
def test_plain_npy_axes(axes: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=shape).astype(np.float32)
    sequences = read_bytes("poses.npy", _npy_bytes(array), axes=axes, skeleton="ntu25")
    to_ntmvc = {"TVC": lambda a: a[None, :, None], "TMVC": lambda a: a[None],
                "MTVC": lambda a: a.transpose(1, 0, 2, 3)[None],
                "CTVM": lambda a: a.transpose(1, 3, 2, 0)[None],
                "NCTVM": lambda a: a.transpose(0, 2, 4, 3, 1)}
    canonical = to_ntmvc[axes](array)  # -> (N, T, M, V, C)
    assert len(sequences) == canonical.shape[0]
    for seq, expected in zip(sequences, canonical):
        np.testing.assert_array_equal(seq.data, expected)
        assert seq.layout == "ntu25" and seq.channels == ("x", "y", "z")


def test_default_axes_and_layout_inference() -> None:
    array = np.ones((3, 5, 18, 2), np.float32)  # CTVM by default for 4-D, V=18 -> coco18 only
    [seq] = read_bytes("clip.npy", _npy_bytes(array))
    assert seq.layout == "coco18" and seq.data.shape == (5, 2, 18, 3)


@pytest.mark.parametrize("array, options, problem", [
    (np.ones((5, 25, 3)), {}, "needs axes"),
    (np.ones((3, 5, 25, 2)), {}, "candidates: body25, ntu25"),
    (np.ones((3, 5, 25, 2)), {"skeleton": "coco18"}, "has 18 joints"),
    (np.ones((4, 5, 25, 2)), {"skeleton": "ntu25"}, "expected 2 or 3"),
    (np.ones((3, 5, 25, 2)), {"axes": "XYZ"}, "unknown axes"),
    (np.ones((3, 0, 25, 2)), {"skeleton": "ntu25"}, "zero samples or frames"),
    (np.zeros((3, 5, 25, 2)), {"skeleton": "ntu25"}, "all zeros"),
    (np.array(["a", "b"]), {"axes": "TVC"}, "numeric"),
    (np.full((5, 25, 3), np.inf), {"axes": "TVC", "skeleton": "ntu25"}, "non-finite"),
])
def test_plain_array_errors(array: np.ndarray, options: dict, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        read_bytes("bad.npy", _npy_bytes(array), **options)
    assert info.value.path == "bad.npy"


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, data=np.array([np.ones(3), "x"], dtype=object))
    with pytest.raises(PoseFormatError, match="object arrays are refused"):
        read_poses(path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(PoseFormatError, match="object arrays are refused"):
        read_poses(tmp_path / "obj.npy", axes="TVC")


def test_save_npz_round_trip(fixtures_dir: Path, ntu_dir: Path, tmp_path: Path) -> None:
    sequences = [read_poses(ntu_dir / f"{n}.skeleton")[0] for n in NTU_NAMES]
    sequences += read_poses(fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton")
    path = save_npz(tmp_path / "ntu", sequences)
    assert path.name == "ntu.npz"
    back = read_poses(path)
    assert [s.name for s in back] == [s.name for s in sequences]
    assert [s.label for s in back] == [s.label for s in sequences]
    for original, copy in zip(sequences, back):
        last = original.data.any(axis=(1, 2, 3)).nonzero()[0][-1] + 1  # trailing zeros trimmed
        np.testing.assert_array_equal(copy.data[:, :original.num_persons], original.data[:last])
        assert copy.layout == "ntu25" and copy.channels == original.channels


def test_npz_without_data_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", poses=np.ones((3, 5, 25, 2)))
    with pytest.raises(PoseFormatError, match="needs a 'data' array"):
        read_poses(tmp_path / "x.npz")
