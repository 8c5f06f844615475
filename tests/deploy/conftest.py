"""Fixtures for the deployment tests: a tiny random-weight model exported with the real exporter.

``exported_tiny_model`` (session scope) builds a random-weight target-specific network
(``ClusterNet(STGCN("msr20"), Linear(256, 5))``) and exports it with
:func:`training.export.export_network` (checker + parity + manifest) into a temporary folder,
using the committed MSR Action3D examples as the real eval samples. It returns the
:class:`training.export.Exported` record; ``tiny_model_dir`` is its folder (for
``$CODT_MODEL_DIR``). Exporting takes a few seconds once per test session.

So that the random model is not degenerate (every sample in one cluster), its BatchNorm statistics
are calibrated on the examples and its cluster head is initialised from five of their centred,
normalised embeddings, a small version of the k-means head initialisation of METHOD.md §9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def interrupt_journal_after(monkeypatch, files: int) -> list:
    """Make codt-cluster's journal raise KeyboardInterrupt (as Ctrl-C would) when it is about to
    record file number ``files + 1``; returns the keys of the files it recorded before."""
    from codt_deploy import writers

    real_write = writers.JournalSink.write_file
    recorded: list = []

    def dying_write(self, key, rows):
        if len(recorded) == files:
            raise KeyboardInterrupt
        recorded.append(key)
        real_write(self, key, rows)

    monkeypatch.setattr(writers.JournalSink, "write_file", dying_write)
    return recorded


def load_benchmark_script(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
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


@pytest.fixture()
def tiny_model_env(tiny_model_dir, tmp_path, monkeypatch) -> Path:
    """``$CODT_MODEL_DIR`` = the tiny model's folder, and the package's own models hidden."""
    import codt_deploy.models

    monkeypatch.setenv("CODT_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setattr(codt_deploy.models, "_package_exported_dir", lambda: tmp_path / "none")
    return tiny_model_dir


@pytest.fixture()
def run(tiny_model_env, capsys):
    """``run(*args) -> (exit status, stdout, stderr)``: ``codt-cluster`` with ``--model tiny`` and
    no progress bar."""
    from codt_deploy import cli

    def _run(*args):
        status = cli.main([*map(str, args), "--model", "tiny", "--quiet"])
        out, err = capsys.readouterr()
        return status, out, err

    return _run
