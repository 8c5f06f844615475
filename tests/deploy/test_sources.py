"""Input expansion: files, folders, globs, zip and tar archives streamed with safety limits."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from codt_deploy.sources import ArchiveLimits, iter_inputs, safe_member_name


def _write(path, text="1 2 3 1\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _tar(path, members, mode="w:gz"):
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_folders_are_walked_recursively_in_order_without_hidden_files(tmp_path):
    for rel in ("b/2.txt", "a/1.txt", "a/.hidden.txt", ".git/x.txt", "c.txt"):
        _write(tmp_path / rel)
    items = list(iter_inputs([str(tmp_path)]))
    names = [it.path.relative_to(tmp_path).as_posix() for it in items]
    assert names == ["c.txt", "a/1.txt", "b/2.txt"]
    assert not any(it.explicit for it in items)


def test_explicit_file_glob_and_missing_inputs(tmp_path):
    one = _write(tmp_path / "x" / "one.txt")
    _write(tmp_path / "x" / "two.txt")
    _write(tmp_path / "x" / "deep" / "three.txt")
    items = list(iter_inputs([str(one), str(tmp_path / "x" / "**" / "t*.txt"),
                              str(tmp_path / "nope.txt"), str(tmp_path / "*.none")]))
    assert items[0].explicit and items[0].path == one and items[0].error is None
    assert [it.path.name for it in items[1:3]] == ["three.txt", "two.txt"]
    assert items[3].error == "no such file or directory"
    assert items[4].error == "no files match this pattern"


def test_zip_members_stream_into_memory_and_keys_name_the_member(tmp_path):
    path = tmp_path / "poses.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dir/a.txt", b"aaa")
        archive.writestr("b.txt", b"bb")
        archive.writestr("inner.zip", b"PK")
    items = list(iter_inputs([str(path)]))
    assert [(it.member, it.data) for it in items[:2]] == [("dir/a.txt", b"aaa"), ("b.txt", b"bb")]
    assert items[0].key == f"{path}::dir/a.txt" and items[0].path is None
    assert items[2].skip and "nested archive" in items[2].skip


def test_tar_gz_streams_members_and_refuses_links_and_traversal(tmp_path):
    path = _tar(tmp_path / "poses.tar.gz", {"ok.txt": b"1 2 3", "../escape.txt": b"x",
                                             "/abs.txt": b"y"})
    with tarfile.open(tmp_path / "links.tar", "w") as t:
        link = tarfile.TarInfo("link.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        t.addfile(link)
    items = list(iter_inputs([str(path), str(tmp_path / "links.tar")]))
    assert items[0].member == "ok.txt" and items[0].data == b"1 2 3"
    assert "unsafe member path" in items[1].error and "unsafe member path" in items[2].error
    assert items[1].data is None
    assert "link" in items[3].error


def test_zip_traversal_names_are_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../etc/cron.d/x", b"boom")
        archive.writestr("C:/windows/x.txt", b"boom")
        archive.writestr("fine.txt", b"fine")
    items = list(iter_inputs([str(path)]))
    assert [bool(it.error) for it in items] == [True, True, False]
    assert all("unsafe" in it.error for it in items[:2])
    assert not list(tmp_path.glob("**/cron.d"))  # nothing was written anywhere


@pytest.mark.parametrize("name,ok", [("a/b.txt", True), ("a\\b.txt", True), ("../a", False),
                                     ("a/../../b", False), ("/etc/x", False), ("c:\\x", False)])
def test_safe_member_name(name, ok):
    assert (safe_member_name(name) is not None) == ok


def test_zip_bomb_member_is_refused_by_ratio_and_others_still_read(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"\0" * (8 << 20))  # ~1000:1
        archive.writestr("after.txt", b"1 2 3")
    limits = ArchiveLimits(max_ratio=100.0, ratio_floor_bytes=1 << 20)
    items = list(iter_inputs([str(path)], limits))
    assert "compression ratio" in items[0].error and items[0].data is None
    assert items[1].data == b"1 2 3"


def test_member_and_total_size_limits(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(5):
            archive.writestr(f"m{i}.txt", b"x" * 1000)
        archive.writestr("huge.txt", b"y" * 5000)
    items = list(iter_inputs([str(path)], ArchiveLimits(max_member_bytes=2000,
                                                        max_total_bytes=10**6)))
    assert "huge.txt" == items[5].member and "limit" in items[5].error
    items = list(iter_inputs([str(path)], ArchiveLimits(max_total_bytes=2500)))
    assert [it.member for it in items[:2]] == ["m0.txt", "m1.txt"]
    assert items[2].member == "" and "total uncompressed size" in items[2].error


def test_tar_gz_bomb_stops_the_archive(tmp_path):
    path = _tar(tmp_path / "bomb.tar.gz", {"zeros.bin": b"\0" * (8 << 20), "later.txt": b"1"})
    items = list(iter_inputs([str(path)], ArchiveLimits(max_ratio=50.0)))
    assert len(items) == 1 and "compression ratio" in items[0].error


def test_corrupt_archive_is_an_error_item(tmp_path):
    bad = _write(tmp_path / "broken.zip", "not a zip at all")
    items = list(iter_inputs([str(bad)]))
    assert len(items) == 1 and "cannot read archive" in items[0].error


def test_openpose_frame_folders_are_one_input(tmp_path):
    for i in range(3):
        _write(tmp_path / "clips" / "v1" / f"v1_{i:012d}_keypoints.json", "{}")
    _write(tmp_path / "clips" / "other.txt")
    items = list(iter_inputs([str(tmp_path / "clips")]))
    assert [it.path.name for it in items] == ["other.txt", "v1"]
    assert items[1].path.is_dir()
