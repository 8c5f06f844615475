"""Optional Ray Data adapter: cluster pose files at cluster scale, one model per actor.

:class:`ClusterActor` is a callable class for ``Dataset.map_batches``: Ray builds one per actor,
so each actor loads the model (one ONNX Runtime session) once and then handles batch after batch.
Nothing here imports ray; only :func:`cluster_files` does, lazily. Install with
``pip install 'ray[data]'``.

One command (raw files in, one row per sequence out)::

    import ray
    from codt_deploy.ray_adapter import ClusterActor

    (ray.data.read_binary_files("poses/", include_paths=True)
        .map_batches(ClusterActor, fn_constructor_kwargs={"model": "ucla2msr"},
                     concurrency=4, num_cpus=1, batch_size=64)
        .write_csv("clusters/"))

or ``cluster_files("poses/", model="ucla2msr", concurrency=4).write_csv("clusters/")``.

Batches with a ``poses`` column (already preprocessed ``(n, C, T, V, M)`` arrays) are clustered
directly; batches with ``bytes`` (and ``path``) columns are parsed and preprocessed with the same
code as ``codt-cluster``. A file that cannot be read, or that the model refuses, gives one row with
``cluster = -1`` and the reason in ``error``; the job carries on (the same per-file isolation as
``codt-cluster``: :func:`codt_deploy.pipeline.parse_item`, :func:`codt_deploy.infer.predict_blocks`).

Assignment: each sequence gets the reference bank's vote (or the head, for a model without a
bank). Ray's batches are arbitrary slices of the dataset, so the batch step that ``codt-cluster``
runs over a whole run (METHOD.md §15.5) is not applied here; to cluster a dataset of new clips
together, run ``codt-cluster`` on it, or ``ClusterModel.cluster`` on all its preprocessed clips.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from codt_deploy.infer import ClusterModel, predict_blocks
from codt_deploy.pipeline import ParseOptions, parse_item
from codt_deploy.sources import InputItem


class ClusterActor:
    """``map_batches`` callable: ``{"path", "bytes"}`` or ``{"poses"}`` batches -> cluster rows.

    ``threads`` defaults to 1 ONNX Runtime thread per actor (scale with ``concurrency`` instead);
    ``num_cpus`` in ``map_batches`` should match it, leaving CPUs free for the reading tasks.
    """

    def __init__(self, model: str | os.PathLike = "default", *, providers: Sequence[str] | None = None,
                 threads: int | None = 1, batch_size: int = 32, pose_format: str | None = None,
                 embeddings: bool = False) -> None:
        self.model = ClusterModel(model, providers=providers, threads=threads,
                                  batch_size=batch_size)
        self.parse_options = ParseOptions(preprocess=self.model.config,
                                          pose_format=pose_format)
        self.embeddings = embeddings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "poses" in batch:
            return self._cluster_poses(batch)
        if "bytes" in batch:
            return self._cluster_files(batch)
        raise KeyError(f"ClusterActor needs a 'poses' or a 'bytes' column; got {sorted(batch)}")

    def _cluster_poses(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        poses = np.stack([np.asarray(p, np.float32) for p in batch["poses"]])  # (n, C, T, V, M)
        prediction = self.model.predict(poses)
        out = {k: v for k, v in batch.items() if k != "poses"}
        out["cluster"] = prediction.clusters
        out["confidence"] = prediction.confidence
        if self.embeddings:
            out["embedding"] = prediction.embedding  # (n, D)
        return out

    def _cluster_files(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = batch.get("path", [f"item{i}" for i in range(len(batch["bytes"]))])
        parsed = [parse_item(InputItem(source=str(path), data=bytes(data), explicit=True),
                             self.parse_options) for path, data in zip(paths, batch["bytes"])]
        readable = [(p, p.samples) for p in parsed if p.samples is not None]
        predictions = dict(zip((id(p) for p, _ in readable),
                               predict_blocks(self.model, [samples for _, samples in readable])
                               if readable else []))
        dim = self.model.manifest.embedding_dim
        rows: list[dict[str, Any]] = []
        for path, file in zip(paths, parsed):
            prediction = predictions.get(id(file), file.error or file.skip or "not read")
            if isinstance(prediction, str):
                rows.append({"path": str(path), "name": "", "segment": "", "error": prediction,
                             "cluster": -1, "confidence": 0.0, "embedding": np.zeros(dim)})
                continue
            rows += [{"path": str(path), **meta, "error": "",
                      "cluster": int(prediction.clusters[i]),
                      "confidence": float(prediction.confidence[i]),
                      "embedding": prediction.embedding[i]}
                     for i, meta in enumerate(file.meta)]
        return self._rows_to_columns(rows)

    def _rows_to_columns(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        out = {key: np.array([row[key] for row in rows], dtype=object)
               for key in ("path", "name", "segment", "error")}
        out["cluster"] = np.array([row["cluster"] for row in rows], np.int64)
        out["confidence"] = np.array([row["confidence"] for row in rows], np.float32)
        if self.embeddings:
            out["embedding"] = np.stack([np.asarray(row["embedding"], np.float32)
                                         for row in rows])  # (n, D)
        return out


def cluster_files(paths: str | Sequence[str], model: str | os.PathLike = "default", *,
                  concurrency: int = 2, batch_size: int = 64, num_cpus: float = 1.0,
                  **actor_options: Any):
    """``ray.data.read_binary_files(paths) -> map_batches(ClusterActor)``: a lazy Ray Dataset.

    Each of the ``concurrency`` actors reserves ``num_cpus``; leave at least one CPU of the cluster
    unreserved for the file-reading tasks, or the job waits forever for resources.
    """
    try:
        import ray.data
    except ImportError:
        raise ImportError("the Ray adapter needs Ray Data: pip install 'ray[data]'") from None
    # Ray takes a str or a list only: a tuple or other sequence raises ValueError there
    dataset = ray.data.read_binary_files(paths if isinstance(paths, str) else list(paths),
                                         include_paths=True)
    return dataset.map_batches(ClusterActor, concurrency=concurrency, batch_size=batch_size,
                               fn_constructor_kwargs={"model": model, **actor_options},
                               num_cpus=num_cpus)
