"""Layouts of one's own: layout files and inline mappings (codt_deploy.layouts.load_layout), their
errors, and that a loaded layout behaves like a built-in one (maps, preprocessing, the ST-GCN graph).
README.md, "Layout files"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.errors import LayoutError
from codt_deploy.layouts import (
    can_map,
    get_layout,
    is_builtin,
    joint_map,
    layout_argument,
    layout_spec,
    load_layout,
    shared_joints,
)
from codt_deploy.preprocess import PreprocessConfig, preprocess
from codt_deploy.readers import read_poses
from codt_deploy.sequence import PoseSequence
from tests.conftest import REPO_ROOT, example_paths, permuted_layout_spec

SBU15 = REPO_ROOT / "examples" / "layouts" / "sbu15.yaml"


def _write(tmp_path: Path, spec: dict, name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture()
def perm(layout_registry, tmp_path):
    """(layout file of the msr20 joints shuffled, the order) -- loaded by the test itself."""
    spec, order = permuted_layout_spec("msr20", "msr20_shuffled")
    return _write(tmp_path, spec), order


# ------------------------------------------------------------------------- loading it

def test_a_layout_file_loads_and_is_known_by_name(perm):
    path, order = perm
    with pytest.raises(LayoutError, match="unknown skeleton layout 'msr20_shuffled'"):
        get_layout("msr20_shuffled")
    layout = load_layout(path)
    assert get_layout("MSR20_shuffled") is layout and not is_builtin(layout)
    msr = get_layout("msr20")
    assert layout.joints == tuple(msr.joints[i] for i in order)
    named = {frozenset((layout.joints[a], layout.joints[b])) for a, b in layout.edges}
    assert named == {frozenset((msr.joints[a], msr.joints[b])) for a, b in msr.edges}
    assert layout.joints[layout.center[0]] == "spine_shoulder"
    assert [layout.joints[j] for j in layout.shoulders] == ["r_shoulder", "l_shoulder"]
    assert len(layout.parts) == 5
    assert load_layout(path) is layout  # the same definition again: nothing changes
    assert layout_spec(layout) == layout_spec(load_layout(layout_spec(layout).model_dump()))


def test_the_readme_example_is_the_committed_file_and_loads(layout_registry):
    text = SBU15.read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert text.strip() in readme
    pytest.importorskip("yaml")
    layout = layout_argument(str(SBU15))
    assert layout.name == "sbu15" and layout.num_joints == 15
    # as README says: kinect20 (NW-UCLA) supplies every joint, the neck from spine_shoulder, but
    # hands are no wrists, so sbu15 cannot supply shared15
    assert joint_map("kinect20", "sbu15").sources[1] == (get_layout("kinect20").index("spine_shoulder"),)
    assert can_map("kinect20", "sbu15") and not can_map("sbu15", "shared15")


def test_docs_layouts_lists_the_whole_vocabulary():
    from codt_deploy.layouts import CANONICAL_JOINTS

    table = (REPO_ROOT / "docs" / "LAYOUTS.md").read_text()
    assert len(CANONICAL_JOINTS) > 30 and "other" not in CANONICAL_JOINTS
    assert [j for j in CANONICAL_JOINTS if f"| {j} |" not in table] == []


def test_yaml_without_pyyaml_says_to_install_it_or_use_json(layout_registry, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError("no yaml")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    with pytest.raises(LayoutError, match=r"sbu15.yaml: reading a YAML layout file needs PyYAML.*JSON"):
        load_layout(SBU15)


def _spec(**changes) -> dict:
    spec, _ = permuted_layout_spec("msr20", "mine")
    spec.update(changes)
    return spec


@pytest.mark.parametrize(("changes", "message"), [
    ({"joints": ["hed" if j == "head" else j for j in _spec()["joints"]]},
     r"joints\[\d+\]: 'hed' is not a canonical joint name; did you mean 'head'\?"),
    ({"joints": ["l_hip" if j == "r_hip" else j for j in _spec()["joints"]]},
     r"joints\[\d+\]: 'l_hip' is listed twice"),
    ({"bones": [*_spec()["bones"], ["head", "r_thumb"]]},
     r"bones\[19\]: 'r_thumb' is not a joint of this layout"),
    ({"bones": [b for b in _spec()["bones"] if "head" not in b]},
     r"bones: the skeleton is not connected: no bones join head to the centre 'spine_shoulder'"),
    ({"bones": [*_spec()["bones"], ["head", "head"]]}, r"bones\[19\]: joins 'head' to itself"),
    ({"bones": [*_spec()["bones"], ["spine_shoulder", "head"]]}, r"bones\[19\]: .* listed twice"),
    ({"center": "nek"}, r"center\[0\]: 'nek' is not a joint of this layout"),
    ({"shoulders": {"right": "r_shoulder", "left": "r_shoulder"}}, r"shoulders: right and left"),
    ({"shoulders": ["r_shoulder", "l_shoulder"]}, r"invalid layout: shoulders: Input should be"),
    ({"parts": [["head", "r_shoulderr"]]},
     r"parts\[0\]\[1\]: 'r_shoulderr' is not a joint .*did you mean 'r_shoulder'"),
    ({"name": "msr20"}, r"name: 'msr20' is a built-in layout name"),
    ({"name": "My Layout"}, r"invalid layout: name: String should match pattern"),
    ({"bone": [["head", "neck"]]}, r"invalid layout: bone: Extra inputs are not permitted"),
])
def test_bad_layout_files_name_the_file_the_key_and_the_problem(layout_registry, tmp_path, changes,
                                                                message):
    path = _write(tmp_path, _spec(**changes), "bad.json")
    with pytest.raises(LayoutError, match=re.escape(str(path)) + ": .*" + message):
        load_layout(path)
    assert "mine" not in layout_registry.available_layouts()


def test_missing_keys_missing_files_and_non_mappings(layout_registry, tmp_path):
    with pytest.raises(LayoutError, match=r"shoulders: Field required"):
        load_layout({k: v for k, v in _spec().items() if k != "shoulders"}, origin="task.yaml")
    with pytest.raises(LayoutError, match=r"nothing.json: layout file not found"):
        layout_argument("nothing.json", base=tmp_path)
    with pytest.raises(LayoutError, match=r"expected a mapping of layout keys"):
        load_layout(_write(tmp_path, [1, 2], "list.json"))
    with pytest.raises(LayoutError, match=r"broken.json \(line 1\): invalid JSON"):
        (tmp_path / "broken.json").write_text("{")
        load_layout(tmp_path / "broken.json")


def test_another_definition_under_a_loaded_name_is_refused(perm, tmp_path):
    path, _ = perm
    load_layout(path)
    other, _ = permuted_layout_spec("msr20", "msr20_shuffled", seed=1)
    with pytest.raises(LayoutError, match="a different layout named 'msr20_shuffled' is already"):
        load_layout(_write(tmp_path, other, "other.json"))


def test_other_joints_map_to_nothing_but_themselves(layout_registry):
    def chin(names):
        return ["other:chin" if j == "head" else j for j in names]

    spec = _spec()
    spec.update(bones=[chin(b) for b in spec["bones"]], parts=[chin(p) for p in spec["parts"]],
                joints=["other" if j == "head" else j for j in spec["joints"]])
    position = spec["joints"].index("other")
    with pytest.raises(LayoutError, match=r"bones\[\d+\]: 'other:chin' is not a joint of this"):
        load_layout(dict(spec))  # a bare "other" is named other:<its position>
    spec["joints"] = chin(_spec()["joints"])
    layout = load_layout(spec)
    assert layout.joints[position] == "other:chin"
    assert joint_map(layout, layout).sources[position] == (position,)  # its own data: as is
    # it stands in for no canonical joint, and no other layout supplies it
    with pytest.raises(LayoutError, match="cannot supply the joints of 'shared15': missing nose"):
        joint_map(layout, "shared15")
    with pytest.raises(LayoutError, match="cannot supply the joints of 'mine': missing other:chin"):
        joint_map("kinect20", layout)
    assert shared_joints(layout, "msr20") == [j for j in layout.joints if j != "other:chin"]


# --------------------------------------------------- behaving like the built-in layout

def _msr_sequences() -> list[PoseSequence]:
    return [seq for path in example_paths()[:6] for seq in read_poses(path)]


def test_permuted_layout_preprocesses_exactly_like_the_builtin_one(perm):
    path, order = perm
    layout = load_layout(path)
    for seq in _msr_sequences():
        shuffled = PoseSequence(data=np.ascontiguousarray(seq.data[:, :, order]), layout=layout.name,
                                source=seq.source, channels=seq.channels)  # (T, M, V, C)
        for persons in (1, 2):
            msr_cfg = PreprocessConfig(layout="msr20", persons=persons)
            own_cfg = PreprocessConfig(layout=layout.name, persons=persons)
            expected = preprocess(seq, msr_cfg)  # (C, T, V, M)
            # mapped onto msr20 by name: the same array, bit for bit
            np.testing.assert_array_equal(preprocess(shuffled, msr_cfg), expected)
            # in its own order (centre and shoulders found by name): the same values, permuted
            np.testing.assert_array_equal(preprocess(shuffled, own_cfg), expected[:, :, order])


def test_permuted_layout_gives_the_permuted_stgcn_graph(perm):
    pytest.importorskip("torch")
    from training.graph import spatial_adjacency

    path, order = perm
    layout = load_layout(path)
    msr = spatial_adjacency("msr20")  # (3, V, V)
    np.testing.assert_array_equal(spatial_adjacency(layout.name), msr[:, order][:, :, order])
