"""Fixtures for the app tests: the real MSR Action3D examples and a tiny random-weight ONNX model.

The model is a real ONNX file with a real manifest, loaded by the real ``ClusterModel``: a linear
embedding of the flattened preprocessed poses and a softmax cluster head (random weights, seeded).
It is built with ``onnx.helper`` so the app tests do not depend on the training code.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from codt_deploy.layouts import get_layout
from codt_deploy.sequence import PoseSequence

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "msr_action3d"
TINY_LAYOUT = "kinect20"  # MSR Action3D's msr20 maps onto it by joint name
TINY_CLUSTERS = 4
TINY_NAMES = ("reach", "step", "bend", "wave")


def read_msr_by_hand(path: Path, name: str | None = None) -> PoseSequence:
    """An MSR Action3D ``*_skeleton3D.txt`` file (rows ``x y z c``, 20 per frame) as a sequence.

    Used to test the app's plotting and upload handling independently of ``codt_deploy.readers``.
    """
    rows = np.loadtxt(path, dtype=np.float32).reshape(-1, 20, 4)  # (T, V, 4)
    data = np.ascontiguousarray(rows[:, None, :, :3])  # (T, M=1, V, C=3)
    label = int(path.name[1:3]) - 1
    return PoseSequence(data=data, layout="msr20", source=name or path.name, name=path.stem,
                        label=label)


def msr_reader(name: str, data: bytes) -> list[PoseSequence]:
    """A ``Reader`` for :func:`app.uploads.parse_uploads` that reads MSR text from bytes."""
    from codt_deploy.errors import PoseFormatError

    try:
        values = np.array(data.decode("ascii").split(), dtype=np.float32)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoseFormatError(name, f"not MSR Action3D text: {exc}") from None
    if values.size == 0 or values.size % 80:
        raise PoseFormatError(name, f"{values.size} numbers is not a whole number of 20x4 frames")
    frames = values.reshape(-1, 1, 20, 4)[..., :3]  # (T, M=1, V, C=3)
    return [PoseSequence(data=np.ascontiguousarray(frames), layout="msr20", source=name,
                         name=name.rsplit("/", 1)[-1])]


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    if not any(EXAMPLES.glob("*_skeleton3D.txt")):
        pytest.skip(f"example pose files not found in {EXAMPLES}")
    return EXAMPLES


@pytest.fixture(scope="session")
def example_files(examples_dir: Path) -> list[Path]:
    """Six real MSR Action3D files of three actions (two subjects each)."""
    return [examples_dir / f"a{a:02d}_s{s:02d}_e01_skeleton3D.txt"
            for a in (1, 2, 3) for s in (2, 6)]


def _calibration(config) -> tuple[np.ndarray, np.ndarray]:
    """Per (channel, joint) mean and std of the preprocessed examples, shaped (1, C, 1, V, M).

    Plays the part of the real network's input BatchNorm (``data_bn``), so that a random network
    sees the differences between actions rather than the body shape they all share. MSR clips have
    one person, so the second person slot (all zeros) is left as it is.
    """
    from codt_deploy.preprocess import preprocess_batch

    c, _, v, m = config.output_shape
    mean, std = np.zeros((1, c, 1, v, m), np.float32), np.ones((1, c, 1, v, m), np.float32)
    files = sorted(EXAMPLES.glob("*_skeleton3D.txt"))
    if files:
        batch = preprocess_batch([read_msr_by_hand(f) for f in files], config)  # (N, C, T, V, M)
        person0 = batch[..., 0]  # (N, C, T, V)
        mean[0, :, 0, :, 0] = person0.mean(axis=(0, 2))  # (C, V)
        std[0, :, 0, :, 0] = person0.std(axis=(0, 2)) + 1e-3  # (C, V)
    return mean, std


def _tiny_onnx(path: Path, config) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    channels, frames, joints, persons = config.output_shape
    rng = np.random.default_rng(0)
    mean, std = _calibration(config)
    flat = channels * frames * joints * persons
    w_embed = (rng.standard_normal((flat, 256)) / np.sqrt(flat)).astype(np.float32)
    w_head = (rng.standard_normal((256, TINY_CLUSTERS)) * 2.0).astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["poses", "mean"], ["centred"]),  # (N, C, T, V, M)
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Reshape", ["normalised", "flat_shape"], ["flat"]),  # (N, C*T*V*M)
        helper.make_node("MatMul", ["flat", "w_embed"], ["hidden"]),  # (N, 256)
        helper.make_node("Tanh", ["hidden"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "w_head"], ["logits"]),  # (N, K)
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cluster_net",
        [helper.make_tensor_value_info("poses", TensorProto.FLOAT,
                                       ["N", channels, frames, joints, persons])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", TINY_CLUSTERS]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 256])],
        initializer=[numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std"),
                     numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
                     numpy_helper.from_array(w_embed, "w_embed"),
                     numpy_helper.from_array(w_head, "w_head")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to ``tiny.onnx`` (with ``tiny.json``): layout kinect20, K = 4, random weights."""
    pytest.importorskip("onnx")
    from codt_deploy.models import Manifest, TensorSpec, sha256_file
    from codt_deploy.preprocess import PreprocessConfig

    folder = tmp_path_factory.mktemp("tiny_model")
    onnx_path = folder / "tiny.onnx"
    config = PreprocessConfig(layout=TINY_LAYOUT)
    c, t, v, m = config.output_shape
    _tiny_onnx(onnx_path, config)
    manifest = Manifest(
        name="tiny", task="test", layout=TINY_LAYOUT, joints=get_layout(TINY_LAYOUT).joints,
        input=TensorSpec(name="poses", shape=("N", c, t, v, m)),
        outputs=(TensorSpec(name="probabilities", shape=("N", TINY_CLUSTERS)),
                 TensorSpec(name="embedding", shape=("N", 256))),
        preprocess=config, num_clusters=TINY_CLUSTERS,
        eval_cluster_names=TINY_NAMES, nearest_source_classes=TINY_NAMES, opset=17,
        created=datetime.now(timezone.utc).isoformat(),
        onnx_sha256=sha256_file(onnx_path))
    onnx_path.with_suffix(".json").write_text(manifest.to_json(), encoding="utf-8")
    return onnx_path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def hand_read():
    """:func:`read_msr_by_hand` (a test-only MSR reader, independent of codt_deploy.readers)."""
    return read_msr_by_hand


@pytest.fixture(scope="session")
def hand_reader():
    """:func:`msr_reader`, a ``Reader`` for ``parse_uploads(..., reader=...)``."""
    return msr_reader


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def app_url(tiny_model):
    """The app, served on a free local port for the whole session, with the tiny model."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.model_store import ModelStore
    from app.ui import build_app, find_examples

    demo = build_app(ModelStore(str(tiny_model)), examples=find_examples(REPO_ROOT))
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True, show_error=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
