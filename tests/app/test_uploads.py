"""Upload handling: archives, limits, refused pickles, and bad files that do not stop the batch."""

from __future__ import annotations

import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from app.uploads import PICKLE_REFUSAL, UploadLimitError, UploadLimits, parse_uploads


class _Recorder:
    """Wraps a reader and records the names it was asked to read."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.names: list[str] = []

    def __call__(self, name: str, data: bytes):
        self.names.append(name)
        return self.reader(name, data)


def _copy(files, folder: Path) -> list[Path]:
    return [Path(shutil.copy(f, folder / f.name)) for f in files]


def test_plain_files_become_sequences(example_files, hand_reader, tmp_path):
    parsed = parse_uploads(_copy(example_files[:3], tmp_path), reader=hand_reader)
    assert [s.source for s in parsed.sequences] == [f.name for f in example_files[:3]]
    assert parsed.problems == []


def test_pickles_are_refused_without_being_read(example_files, hand_reader, tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a pickle from an upload was loaded",))

    for suffix in (".pkl", ".pickle", ".JOBLIB"):
        (tmp_path / f"evil{suffix}").write_bytes(pickle.dumps(Boom()))
    recorder = _Recorder(hand_reader)
    paths = sorted(tmp_path.glob("evil*")) + _copy(example_files[:1], tmp_path)
    parsed = parse_uploads(paths, reader=recorder)
    assert recorder.names == [example_files[0].name]
    assert len(parsed.sequences) == 1
    assert {p.file for p in parsed.problems} == {"evil.pkl", "evil.pickle", "evil.JOBLIB"}
    assert all(p.reason == PICKLE_REFUSAL for p in parsed.problems)
    assert "convert" in PICKLE_REFUSAL and ".npz" in PICKLE_REFUSAL


def test_zip_members_are_read_and_bad_members_listed(example_files, hand_reader, tmp_path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in example_files[:2]:
            zf.write(f, f"msr/{f.name}")
        zf.writestr("msr/broken_skeleton3D.txt", "1 2 3\nnot numbers\n")
        zf.writestr("msr/model.pkl", pickle.dumps([1, 2]))
        zf.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        zf.writestr("__MACOSX/msr/._a01.txt", b"\0\1")
        zf.writestr("msr/.DS_Store", b"\0")
    recorder = _Recorder(hand_reader)
    parsed = parse_uploads([archive], reader=recorder)
    assert [s.source for s in parsed.sequences] == [f"batch.zip::msr/{f.name}"
                                                    for f in example_files[:2]]
    problems = {p.file: p.reason for p in parsed.problems}
    assert set(problems) == {"batch.zip::msr/broken_skeleton3D.txt", "batch.zip::msr/model.pkl",
                             "batch.zip::inner.zip"}
    assert "not MSR Action3D text" in problems["batch.zip::msr/broken_skeleton3D.txt"]
    assert problems["batch.zip::msr/model.pkl"] == PICKLE_REFUSAL
    assert "nested archive" in problems["batch.zip::inner.zip"]
    assert all("pkl" not in n and "inner" not in n for n in recorder.names)


def test_tar_archives_are_read(example_files, hand_reader, tmp_path):
    archive = tmp_path / "batch.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(example_files[0], arcname=example_files[0].name)
    parsed = parse_uploads([archive], reader=hand_reader)
    assert [s.source for s in parsed.sequences] == [f"batch.tar.gz::{example_files[0].name}"]


def test_unreadable_archive_is_a_problem_not_a_crash(example_files, hand_reader, tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"this is not a zip archive")
    paths = [tmp_path / "broken.zip", *_copy(example_files[:1], tmp_path)]
    parsed = parse_uploads(paths, reader=hand_reader)
    assert len(parsed.sequences) == 1
    assert parsed.problems[0].file == "broken.zip"
    assert "cannot read archive" in parsed.problems[0].reason


def test_count_limit_rejects_the_batch_with_a_clear_message(example_files, hand_reader, tmp_path):
    paths = _copy(example_files[:3], tmp_path)
    with pytest.raises(UploadLimitError, match="more than 2 files uploaded.*limit per batch"):
        parse_uploads(paths, limits=UploadLimits(max_files=2), reader=hand_reader)


def test_count_limit_counts_archive_members(example_files, hand_reader, tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in example_files[:3]:
            zf.write(f, f.name)
    with pytest.raises(UploadLimitError, match="archive members included"):
        parse_uploads([archive], limits=UploadLimits(max_files=2), reader=hand_reader)


def test_total_size_limit(example_files, hand_reader, tmp_path):
    paths = _copy(example_files[:2], tmp_path)
    limit = paths[0].stat().st_size + paths[1].stat().st_size - 1
    with pytest.raises(UploadLimitError, match="MB of pose files"):
        parse_uploads(paths, limits=UploadLimits(max_total_bytes=limit), reader=hand_reader)


def test_per_file_size_limit_lists_only_that_file(example_files, hand_reader, tmp_path):
    paths = _copy(example_files[:2], tmp_path)
    big = tmp_path / "big_skeleton3D.txt"
    big.write_bytes(paths[0].read_bytes() * 3)
    limit = paths[0].stat().st_size * 2
    parsed = parse_uploads([big, *paths], limits=UploadLimits(max_file_bytes=limit),
                           reader=hand_reader)
    assert len(parsed.sequences) == 2
    assert [p.file for p in parsed.problems] == ["big_skeleton3D.txt"]
    assert "over the limit" in parsed.problems[0].reason


def test_sequence_limit(example_files, hand_reader, tmp_path):
    with pytest.raises(UploadLimitError, match="more than 2 sequences"):
        parse_uploads(_copy(example_files[:3], tmp_path), limits=UploadLimits(max_sequences=2),
                      reader=hand_reader)


def test_empty_result_is_a_problem(example_files, tmp_path):
    paths = _copy(example_files[:1], tmp_path)
    parsed = parse_uploads(paths, reader=lambda name, data: [])
    assert parsed.sequences == [] and parsed.problems[0].reason == "no skeleton sequence in this file"


def test_reader_errors_do_not_repeat_the_file_name(hand_reader, tmp_path):
    bad = tmp_path / "bad_skeleton3D.txt"
    bad.write_text("1 2 3\n")
    parsed = parse_uploads([bad], reader=hand_reader)
    assert parsed.problems[0].file == "bad_skeleton3D.txt"
    assert not parsed.problems[0].reason.startswith("bad_skeleton3D.txt")
    assert "3 numbers" in parsed.problems[0].reason


def test_limits_describe_themselves():
    text = UploadLimits(max_files=7, max_file_bytes=3 << 20, max_total_bytes=9 << 20,
                        max_sequences=11).describe()
    assert text == "up to 7 files, 3 MB each, 9 MB in all, 11 sequences"


def test_zip_bomb_member_is_refused(hand_reader, tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.txt", b"0 " * (3 << 20))
    parsed = parse_uploads([archive], limits=UploadLimits(max_file_bytes=1 << 20),
                           reader=hand_reader)
    assert parsed.sequences == []
    assert parsed.problems[0].file == "bomb.zip::zeros.txt"
    assert "refused" in parsed.problems[0].reason


def _openpose_frame(x: float, people: int = 1) -> bytes:
    """A declared-synthetic OpenPose ``--write_json`` frame: BODY_25, every joint at (x, 2x)."""
    import json

    keypoints = [v for _ in range(25) for v in (x, 2 * x, 0.9)]
    return json.dumps({"version": 1.3, "people": [{"person_id": [-1],
                                                   "pose_keypoints_2d": keypoints}] * people}
                      ).encode()


def test_openpose_frames_are_read_together_per_folder(tmp_path):
    archive = tmp_path / "openpose.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for frame in range(3):
            zf.writestr(f"run/jump_{frame:012d}_keypoints.json", _openpose_frame(10.0 + frame))
        for frame in (0, 2):  # frame 1 missing: an empty frame
            zf.writestr(f"run/wave_{frame:012d}_keypoints.json", _openpose_frame(50.0, people=2))
        zf.writestr("other/jump_000000000000_keypoints.json", _openpose_frame(99.0))
    loose = tmp_path / "solo_000000000000_keypoints.json"
    loose.write_bytes(_openpose_frame(5.0))
    parsed = parse_uploads([archive, loose])
    assert parsed.problems == []
    found = {(s.source, s.name): s for s in parsed.sequences}
    assert set(found) == {("openpose.zip::run", "jump"), ("openpose.zip::run", "wave"),
                          ("openpose.zip::other", "jump"), ("uploaded OpenPose frames", "solo")}
    jump = found[("openpose.zip::run", "jump")]
    assert jump.num_frames == 3 and jump.layout == "body25"
    assert jump.data[:, 0, 0, 0].tolist() == [10.0, 11.0, 12.0]
    wave = found[("openpose.zip::run", "wave")]
    assert wave.num_frames == 3 and not wave.data[1].any()  # the missing frame is empty


def test_a_bad_openpose_frame_names_itself_in_its_group(tmp_path):
    archive = tmp_path / "openpose.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("run/jump_000000000000_keypoints.json", _openpose_frame(1.0))
        zf.writestr("run/jump_000000000001_keypoints.json", b'{"people": [{"pose_keypoints_2d"')
    parsed = parse_uploads([archive])
    assert parsed.sequences == []
    (problem,) = parsed.problems
    assert problem.file == "openpose.zip::run"
    assert problem.reason.startswith("jump_000000000001_keypoints.json: ")
