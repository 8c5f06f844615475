"""Format registry: detection, forcing a format, options, the size limit, no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import codt_deploy.readers as readers
from codt_deploy.errors import PoseFormatError
from codt_deploy.readers import available_formats, detect_format, read_bytes, read_poses

FORMATS = ["array", "crossclr", "kinetics", "msr", "ntu", "openpose", "penn", "pku", "pyskl",
           "ucla", "utkinect", "vibe"]

REAL_FILES = [  # (path under the shared data folder, format)
    ("ntu_rgbd_samples/S001C001P001R001A011.skeleton", "ntu"),
    ("pku_mmd_sample/A10N08-L.txt", "pku"),
    ("kinetics_skeleton_samples/kinetics_val/__PYrzYbzKE.json", "kinetics"),
    ("msr_action3d/a01_s01_e01_skeleton3D.txt", "msr"),
    ("utkinect_action3d/joints_s01_e01.txt", "utkinect"),
    ("nw_ucla/a01_s01_e00_v01.json", "ucla"),
]


def test_available_formats() -> None:
    assert available_formats() == FORMATS


@pytest.mark.parametrize("relative, expected", REAL_FILES)
def test_detects_real_files_by_name_and_by_content(shared_data: Path, relative: str,
                                                   expected: str) -> None:
    path = shared_data / relative
    head = path.read_bytes()[:65536]
    assert detect_format(path.name, head) == expected
    assert detect_format("upload.dat.txt" if path.suffix != ".json" else "upload.json",
                         head) == expected  # content alone (the name carries no hint)


@pytest.mark.parametrize("name, head, expected", [
    ("clip_000000000001_keypoints.json", b'{"version":1.3,"people":[]}', "openpose"),
    ("frame.json", b'{"version": 1.3, "people": []}', "openpose"),
    ("track.json", b'{"1": {"pred_cam": [1], "joints3d": [[[0', "vibe"),
    ("empty.json", b"{}\n", "vibe"),
    ("k.json", b'{"data": [], "label": "x", "label_index": 3}', "kinetics"),
    ("train_data.npy", b"\x93NUMPY", "crossclr"),
    ("xsub_val_position.npy", b"\x93NUMPY", "crossclr"),
    ("poses.npy", b"\x93NUMPY", "array"),
    ("poses.npz", b"PK\x03\x04", "array"),
    ("0001.mat", b"MATLAB 5.0", "penn"),
    ("ntu60_3danno.pkl", b"\x80\x04", "pyskl"),
    ("a.zip::dir/S001C001P001R001A001.skeleton", b"", "ntu"),
])
def test_detect_by_name_and_head(name: str, head: bytes, expected: str) -> None:
    assert detect_format(name, head) == expected


@pytest.mark.parametrize("name, head, problem", [
    ("poses.csv", b"1,2,3", "unknown file type '.csv'"),
    ("x.json", b'{"foo": 1}', "cannot tell which JSON"),
    ("x.txt", b"1 2 3\n", "3 values"),
    ("x.txt", b"\x00\x01\x02", "binary content"),
    ("x.txt", b"", "empty file"),
    # A list of sample names (MSR Action3D's files_used_in_cvpr12_paper.txt) is not an NTU file.
    ("files_used.txt", b"a01_s01_e01\na01_s01_e02\n", "1 values"),
])
def test_undetectable_inputs_list_the_formats(name: str, head: bytes, problem: str) -> None:
    with pytest.raises(PoseFormatError, match=problem) as info:
        detect_format(name, head)
    assert "ntu" in str(info.value) and "vibe" in str(info.value) and info.value.path == name


def test_forcing_a_format(fixtures_dir: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "recording.dat"
    renamed.write_bytes((fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton").read_bytes())
    with pytest.raises(PoseFormatError, match="unknown file type"):
        read_poses(renamed)
    [seq] = read_poses(renamed, format="ntu")
    assert seq.data.shape == (8, 2, 25, 3)
    with pytest.raises(PoseFormatError, match="unknown pose format; available formats: array"):
        read_poses(renamed, format="c3d")


def test_unknown_options_missing_paths_and_folders(fixtures_dir: Path, tmp_path: Path) -> None:
    ntu = fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton"
    with pytest.raises(PoseFormatError, match="unknown option.*image_size.*accepts: none"):
        read_poses(ntu, image_size=(1, 1))
    with pytest.raises(PoseFormatError, match="no such file or folder"):
        read_poses(tmp_path / "missing.skeleton")
    with pytest.raises(PoseFormatError, match="only 'openpose' reads a folder"):
        read_poses(tmp_path, format="ntu")


def test_size_limit(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ntu = fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton"
    size = ntu.stat().st_size
    with pytest.raises(PoseFormatError, match=f"{size:,} bytes is over the 1,000-byte limit"):
        read_poses(ntu, max_bytes=1000)
    with pytest.raises(PoseFormatError, match="over the"):
        read_bytes(ntu.name, ntu.read_bytes(), max_bytes=size - 1)
    assert read_bytes(ntu.name, ntu.read_bytes(), max_bytes=size)
    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 2000)
    with pytest.raises(PoseFormatError, match="2,000-byte limit"):
        read_poses(ntu)
    with pytest.raises(PoseFormatError, match="2,000-byte limit"):  # a folder counts its files
        read_poses(fixtures_dir / "openpose" / "synthetic_body25")
    assert read_poses(ntu, max_bytes=10**6)  # per-call override wins


def test_huge_generated_file_is_refused_before_parsing(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "a01_s01_e01_skeleton3D.txt"
    with big.open("wb") as stream:  # 3 MiB of valid MSR lines
        stream.write(b"0.1 0.2 2.5 1.0\n" * (3 * 1024 * 1024 // 16))
    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 1024 * 1024)
    with pytest.raises(PoseFormatError, match="over the 1,048,576-byte limit"):
        read_poses(big)


def test_readers_do_not_import_torch_or_scipy(fixtures_dir: Path) -> None:
    code = ("import sys; from codt_deploy.readers import read_poses; "
            f"read_poses({str(fixtures_dir / 'ntu' / 'S999C001P001R001A005.skeleton')!r}); "
            "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
