"""Shared test fixtures: where the real skeleton samples live, and a tiny exported model.

The real datasets are research data that stay outside the repository, in ``../shared/data`` next to
the checkout (override with ``CODT_SHARED_DATA``). Tests that need them skip with a clear reason
when they are absent.

``exported_tiny_model`` (session scope) builds a random-weight target-specific network
(``ClusterNet(STGCN("msr20"), Linear(256, 5))``) and exports it with
:func:`training.export.export_network` (checker + parity + manifest) into a temporary folder,
using the committed MSR Action3D examples as the real eval samples. It returns the
:class:`training.export.Exported` record; ``tiny_model_dir`` is its folder (for
``$CODT_MODEL_DIR``). Exporting takes a few seconds once per test session; the deployment tests
run ``codt-cluster`` on it and the training tests check the exporter with it.

So that the random model is not degenerate (every sample in one cluster), its BatchNorm statistics
are calibrated on the examples and its cluster head is initialised from five of their centred,
normalised embeddings, a small version of the k-means head initialisation of METHOD.md §9.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CODT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real skeleton datasets; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set CODT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Small declared-synthetic fixtures committed with the tests (see tests/fixtures/README.md)."""
    return FIXTURES


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Write ``header`` and ``rows`` to the CSV file ``path``; returns ``path``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load_benchmark_script(name: str):
    """``benchmarks/<name>.py`` imported as the module ``benchmarks.<name>``."""
    import importlib

    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture()
def layout_registry():
    """The layouts loaded from files during a test are forgotten after it (and none from earlier
    tests are known during it), as in a fresh process; yields ``codt_deploy.layouts``."""
    from codt_deploy import layouts

    saved = dict(layouts._CUSTOM)
    layouts._CUSTOM.clear()
    yield layouts
    layouts._CUSTOM.clear()
    layouts._CUSTOM.update(saved)


def permuted_layout_spec(base: str, name: str, seed: int = 0) -> tuple[dict, list[int]]:
    """A layout file's mapping for the joints of built-in ``base`` in a shuffled order, and the
    order: joint ``i`` of the new layout is joint ``order[i]`` of ``base``."""
    from codt_deploy.layouts import get_layout, layout_spec

    layout = get_layout(base)
    order = [int(i) for i in np.random.default_rng(seed).permutation(layout.num_joints)]
    spec = layout_spec(base).model_dump(mode="json")
    spec.update(name=name, description=f"{base} joints, shuffled",
                joints=[layout.joints[i] for i in order])
    return spec, order


EXAMPLES = REPO_ROOT / "examples" / "msr_action3d"
TINY_LAYOUT = "msr20"
TINY_K = 5


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*_skeleton3D.txt"))


def example_poses(layout: str = TINY_LAYOUT) -> np.ndarray:
    """The committed MSR Action3D examples, read and preprocessed: (40, 3, 50, V, 2)."""
    from codt_deploy.preprocess import PreprocessConfig, preprocess_batch
    from codt_deploy.readers import read_poses

    seqs = [seq for path in example_paths() for seq in read_poses(path)]
    return preprocess_batch(seqs, PreprocessConfig(layout=layout))


def tiny_network(poses: np.ndarray, k: int = TINY_K, seed: int = 0, layout: str = TINY_LAYOUT):
    """A random-weight F_1 -> C_1^t network ``poses -> (probabilities, embedding)``, eval mode."""
    import torch

    from training.model import ClusterNet
    from training.stgcn import STGCN

    torch.manual_seed(seed)
    encoder = STGCN(layout)
    x = torch.from_numpy(poses)  # (N, C, T, V, M)
    for module in encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        encoder.train()
        encoder.embed(x)
        encoder.eval()
        embedding = encoder.embed(x)  # (N, 256)
        mean = embedding.mean(0)
        picks = torch.randperm(len(x))[:k]
        weight = 100.0 * torch.nn.functional.normalize(embedding[picks] - mean, dim=1)  # (k, 256)
        head = torch.nn.Linear(256, k)
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ mean))
    return ClusterNet(encoder, head).eval()


@pytest.fixture(scope="session")
def tiny_torch_network():
    """(network, the example poses it was calibrated on): the PyTorch side of the tiny model."""
    pytest.importorskip("torch")
    poses = example_poses()
    return tiny_network(poses), poses


@pytest.fixture(scope="session")
def exported_tiny_model(tiny_torch_network, tmp_path_factory):
    """Export a tiny random-weight model once per session; returns training.export.Exported."""
    pytest.importorskip("onnx")
    from codt_deploy.preprocess import PreprocessConfig
    from training.export import EvalSet, export_network

    net, poses = tiny_torch_network
    labels = np.arange(len(poses)) // 2 % TINY_K  # two files per action in the examples
    evalset = EvalSet(poses=poses, labels=labels,
                      class_names=[f"class {i}" for i in range(TINY_K)])
    out = tmp_path_factory.mktemp("models")
    return export_network(net, evalset, out_dir=out, name="tiny",
                          task="tiny-test", preprocess=PreprocessConfig(layout=TINY_LAYOUT),
                          checkpoint_sha256="0" * 64)


@pytest.fixture(scope="session")
def tiny_model_dir(exported_tiny_model) -> Path:
    return exported_tiny_model.onnx_path.parent
