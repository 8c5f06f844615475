"""NTU RGB+D .skeleton reader: real samples, tracking, 0-body frames, bytes vs path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codt_deploy.readers import read_bytes, read_poses

from .conftest import NTU_NAMES

EXPECTED = {  # name: (frames, bodies, label = AXXX - 1)
    "S001C001P001R001A011": (82, 1, 10),
    "S001C003P008R002A058": (70, 2, 57),
    "S002C001P003R001A003": (100, 1, 2),
    "S003C001P015R001A034": (71, 1, 33),
    "S004C002P003R001A017": (124, 1, 16),
}


def naive_bodies(path: Path) -> dict[str, dict[int, np.ndarray]]:
    """Independent line-by-line reading: {bodyID: {frame: (25, 3) xyz}}."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    bodies: dict[str, dict[int, np.ndarray]] = {}
    i = 1
    for frame in range(int(lines[0])):
        count = int(lines[i])
        i += 1
        for _ in range(count):
            body_id = lines[i].split()[0]
            joints = [[float(v) for v in lines[i + 2 + j].split()[:3]] for j in range(25)]
            bodies.setdefault(body_id, {})[frame] = np.array(joints)
            i += 27
    return bodies


@pytest.mark.parametrize("name", NTU_NAMES)
def test_real_samples(ntu_dir: Path, name: str) -> None:
    path = ntu_dir / f"{name}.skeleton"
    assert b"\r\n" in path.read_bytes()[:8]  # the real files are CRLF
    [seq] = read_poses(path)
    frames, bodies, label = EXPECTED[name]
    assert seq.data.shape == (frames, bodies, 25, 3)
    assert seq.data.dtype == np.float32
    assert (seq.layout, seq.channels, seq.fps) == ("ntu25", ("x", "y", "z"), 30.0)
    assert (seq.name, seq.label, seq.source) == (name, label, str(path))
    reference = naive_bodies(path)
    assert sorted(seq.meta["body_ids"]) == sorted(reference)
    for person, body_id in enumerate(seq.meta["body_ids"]):
        for frame, xyz in reference[body_id].items():
            np.testing.assert_allclose(seq.data[frame, person], xyz, rtol=0, atol=1e-6)


def test_two_body_file_is_ordered_by_motion_energy(ntu_dir: Path) -> None:
    [seq] = read_poses(ntu_dir / "S001C003P008R002A058.skeleton")
    energy = [float(seq.data[:, m].var(axis=0).sum()) * 70 for m in range(seq.num_persons)]
    assert energy == pytest.approx(seq.meta["motion_energy"], rel=1e-5)
    assert energy[0] > energy[1]
    assert seq.meta["frames_present"] == [70, 70]


def test_synthetic_zero_body_frames_and_tracking(fixtures_dir: Path) -> None:
    [seq] = read_poses(fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton")
    assert seq.data.shape == (8, 2, 25, 3) and seq.label == 4
    present = np.any(seq.data, axis=(2, 3))  # (T, M)
    # body ...002 moves more, so it is person 0 although it appears later
    assert seq.meta["body_ids"] == ["72057594037900002", "72057594037900001"]
    assert present[:, 0].tolist() == [False, False, False, True, True, True, True, False]
    assert present[:, 1].tolist() == [False, False, True, True, True, False, False, False]
    assert seq.meta["motion_energy"][0] > seq.meta["motion_energy"][1]


def test_real_file_trimmed_with_zero_body_frames(ntu_with_empty_frames: Path,
                                                  ntu_dir: Path) -> None:
    [trimmed] = read_poses(ntu_with_empty_frames)
    [full] = read_poses(ntu_dir / f"{NTU_NAMES[0]}.skeleton")
    assert trimmed.data.shape == (13, 1, 25, 3)
    empty = [t for t in range(13) if not trimmed.data[t].any()]
    assert empty == [0, 4, 11]
    kept = [t for t in range(13) if t not in empty]
    np.testing.assert_array_equal(trimmed.data[kept], full.data[:10])


def test_bytes_and_path_agree(ntu_dir: Path) -> None:
    path = ntu_dir / "S001C003P008R002A058.skeleton"
    [from_path] = read_poses(path)
    [from_bytes] = read_bytes("upload.zip::S001C003P008R002A058.skeleton", path.read_bytes())
    np.testing.assert_array_equal(from_path.data, from_bytes.data)
    assert from_bytes.name == "S001C003P008R002A058"
    assert from_bytes.source == "upload.zip::S001C003P008R002A058.skeleton"


def test_lf_line_endings_and_one_frame_file(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton").read_bytes()
    lines = text.split(b"\r\n")
    one_frame = b"\n".join([b"1", b"1", *lines[4:4 + 27]]) + b"\n"  # frame 2: one body, LF
    [seq] = read_bytes("x.skeleton", one_frame)
    assert seq.data.shape == (1, 1, 25, 3)
    assert seq.label is None  # not an NTU sample name


def test_duplicate_body_in_one_frame_is_refused(fixtures_dir: Path) -> None:
    from codt_deploy.errors import PoseFormatError

    lines = (fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton").read_bytes().split(b"\r\n")
    body = lines[4:4 + 27]
    text = b"\r\n".join([b"1", b"2", *body, *body])
    with pytest.raises(PoseFormatError, match="appears twice"):
        read_bytes("dup.skeleton", text)


def test_still_bodies_rank_by_presence_then_order(fixtures_dir: Path) -> None:
    lines = (fixtures_dir / "ntu" / "S999C001P001R001A005.skeleton").read_bytes().split(b"\r\n")
    body = lines[4:4 + 27]  # one body record; repeated unchanged, so its motion energy is 0
    other = [b"72057594037999999" + body[0][17:], *body[1:]]
    frames = [[b"1", *other], [b"2", *other, *body], [b"1", *body], [b"1", *body]]
    text = b"\r\n".join([b"4", *[line for frame in frames for line in frame]])
    [seq] = read_bytes("still.skeleton", text)
    assert seq.meta["motion_energy"] == [0.0, 0.0]
    assert seq.meta["body_ids"][0] == body[0].split()[0].decode()  # 3 frames beats 2
    assert seq.meta["frames_present"] == [3, 2]
