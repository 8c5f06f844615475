"""Assigning new clips by their nearest training clips: the reference bank shipped with a model.

A model's cluster head is a linear layer fitted to a partition of the clips it was trained on; on
clips it has never seen only the network's features speak, and on small targets they hold less
than the raw poses do. The reference bank carries the partition itself: the training clips'
pose frames with the cluster the model gave each of them. A new clip gets the cluster most of its
``neighbours`` nearest training clips have, under the distance the label-free training graph uses
(dynamic time warping of unit-normalised pose frames with their velocities beside them; docs/METHOD.md
§15.2), found exactly: the quality the model has on its training clips carries to new clips.

Pure numpy, no label read. The kernels here are the one implementation of the raw-pose view that
training's label-free graphs use too (``training.labelfree.views`` imports them).

- :func:`flattened_poses`, :func:`pose_frames`: (N, C, T, V, M) poses → unit rows / DTW frames;
- :func:`dtw_distances`: DTW under a Sakoe-Chiba band for paired sequences;
  :func:`dtw_cross_distances`: the same for every pair of two sets of clips at once (the search);
  both the least over the orders of a clip's bodies (:func:`body_orders`, :func:`reorder_bodies`);
- :class:`ReferenceBank`: the bank (frames (R, T, D), clusters (R,)), :meth:`ReferenceBank.assign`,
  :func:`save_bank` / :func:`load_bank` (an ``.npz`` beside the model, hashed in its manifest).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codt_deploy.errors import ModelError

VELOCITY_WEIGHT = 0.5  # weight of the (unit-norm) velocity sequence beside the positions
DTW_BAND_FRACTION = 0.1  # Sakoe-Chiba band: a frame may be matched within ±10 % of T of its own time
VOTE_NEIGHBOURS = 10  # training clips that vote for a new clip's cluster
VOTE_CANDIDATES = 0  # recorded in bank files: every bank clip's DTW distance is computed (a search
# pruned to the 50 Euclidean-nearest lost 7.7 ACC of 66.3 on MSR cross-subject and was retired)
QUERY_CELLS_PER_CHUNK = 2**21  # (query, bank clip) pairs searched at once (≈ 8 MB per band cell)
MAX_PERMUTED_BODIES = 3  # clips of more bodies are compared in their own order (M! passes)
BANK_FORMAT = 1
MAX_BANK_CLIPS = 100_000  # a bank file holding more clips is refused


def flattened_poses(poses: np.ndarray, coordinates: int | None = None) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, C·T·V·M) float64 rows of unit L2 norm (zero rows stay zero).
    ``coordinates``: keep only the first that many channels (C = ``coordinates``): the raw-pose
    view is the positions; a 2-D detector's confidence score is no motion, and as large as the
    centred coordinates it would weigh as much as they do in every distance."""
    array = np.asarray(poses, dtype=np.float64)[:, :coordinates]  # (N, C, T, V, M)
    rows = array.reshape(array.shape[0], -1)  # (N, C·T·V·M)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def pose_frames(poses: np.ndarray, velocity_weight: float = 0.0,
                coordinates: int | None = None) -> np.ndarray:
    """(N, C, T, V, M) poses → (N, T, D) float32 frames for dynamic time warping: each frame's
    C·V·M values of the clip's unit-L2 rows (:func:`flattened_poses`), D = C·V·M; with
    ``velocity_weight`` > 0, followed by ``velocity_weight`` × the same of the clip's velocities
    (frame differences, the first frame given the second's so that T is kept), D = 2·C·V·M.
    ``coordinates``: only the first that many channels (the positions, as
    :func:`flattened_poses`)."""
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim != 5:
        raise ValueError(f"pose_frames needs (N, C, T, V, M) poses, got shape {array.shape}")
    array = array[:, :coordinates]  # (N, C, T, V, M): the coordinate channels
    n, c, t, v, m = array.shape

    def frames(x: np.ndarray) -> np.ndarray:  # (N, C, T, V, M) → (N, T, C·V·M), unit per clip
        return flattened_poses(x).reshape(n, c, t, v, m).transpose(0, 2, 1, 3, 4).reshape(n, t, -1)

    positions = frames(array)  # (N, T, C·V·M)
    if velocity_weight <= 0.0 or t < 2:
        return positions.astype(np.float32)
    velocity = np.diff(array, axis=2)  # (N, C, T−1, V, M)
    velocity = np.concatenate([velocity[:, :, :1], velocity], axis=2)  # (N, C, T, V, M)
    both = np.concatenate([positions, velocity_weight * frames(velocity)], axis=2)  # (N, T, 2·C·V·M)
    return both.astype(np.float32)


def dtw_band(frames: int) -> int:
    """The Sakoe-Chiba band of clips of ``frames`` frames: 10 % of T, at least 1."""
    return max(1, round(DTW_BAND_FRACTION * frames))


def body_orders(frames: np.ndarray, others: np.ndarray, persons: int) -> list[tuple[int, ...]]:
    """The orders of the M = ``persons`` bodies under which DTW compares two sets of clips' frames
    (N, T, D) and (R, T, D): every permutation of the bodies (which body a file lists first is
    arbitrary, docs/METHOD.md §15.2), or the identity alone when no more than one body slot holds
    a non-zero value in either set (single-person clips in a two-person layout: a permutation
    could only pair a body with an empty slot, never nearer) or M > :data:`MAX_PERMUTED_BODIES`."""
    identity = tuple(range(persons))
    if persons < 2 or persons > MAX_PERMUTED_BODIES:
        return [identity]
    occupied = np.zeros(persons, dtype=bool)
    for clips in (frames, others):
        if clips.size:
            by_body = np.asarray(clips).reshape(*clips.shape[:2], -1, persons)  # (N, T, D / M, M)
            occupied |= np.any(by_body != 0, axis=(0, 1, 2))
    if occupied.sum() < 2:
        return [identity]
    return list(itertools.permutations(range(persons)))


def reorder_bodies(frames: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Frames (N, T, D) of :func:`pose_frames` with their M = len(``order``) bodies in ``order``
    (M is the innermost axis of both the position and the velocity halves of D); the same array
    for the identity."""
    if list(order) == list(range(len(order))):
        return frames
    n, t, d = frames.shape
    by_body = frames.reshape(n, t, d // len(order), len(order))  # (N, T, D / M, M)
    return np.ascontiguousarray(by_body[..., list(order)]).reshape(n, t, d)  # (N, T, D)


def dtw_distances(frames_a, frames_b, band: int, persons: int = 1) -> np.ndarray:
    """Dynamic-time-warping distances (P,) between paired sequences ``frames_a[p]`` and
    ``frames_b[p]`` (both (P, T, D)): the least sum of squared frame distances along a monotone
    alignment path from (0, 0) to (T-1, T-1) whose frames differ in time by at most ``band``
    (Sakoe-Chiba). ``band`` 0 is the squared Euclidean distance of the sequences; a band of T - 1
    or more is unconstrained DTW. Clips of ``persons`` > 1 bodies: the least distance over the
    orders of the second clip's bodies (:func:`body_orders`). float64 (P,). (Every pair of two
    sets of clips: :func:`dtw_cross_distances`.)"""
    a = np.asarray(frames_a, dtype=np.float32)
    b = np.asarray(frames_b, dtype=np.float32)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"dtw_distances needs two (P, T, D) arrays of one shape, got {a.shape} "
                         f"and {b.shape}")
    if band < 0:
        raise ValueError(f"dtw_distances needs band >= 0, got {band}")
    _check_persons(a, persons)
    return np.minimum.reduce([_paired_dtw(a, reorder_bodies(b, order), band)
                              for order in body_orders(a, b, persons)])


def _check_persons(frames: np.ndarray, persons: int) -> None:
    if persons < 1 or frames.shape[2] % persons:
        raise ValueError(f"frames of {frames.shape[2]} values cannot hold {persons} bodies")


def _paired_dtw(a: np.ndarray, b: np.ndarray, band: int) -> np.ndarray:
    """:func:`dtw_distances` of (P, T, D) float32 pairs under the bodies' given order."""
    pairs, t = a.shape[:2]
    band = min(band, t - 1)
    cost = (np.einsum("ptd,ptd->pt", a, a)[:, :, None] + np.einsum("psd,psd->ps", b, b)[:, None, :]
            - 2.0 * np.einsum("ptd,psd->pts", a, b))  # (P, T, T) squared frame distances
    np.maximum(cost, 0.0, out=cost)
    previous = np.full((pairs, t), np.inf, dtype=np.float32)  # row i - 1 of the cumulative cost
    for i in range(t):
        current = np.full((pairs, t), np.inf, dtype=np.float32)  # (P, T)
        for j in range(max(0, i - band), min(t, i + band + 1)):
            if i == 0 and j == 0:
                best = np.zeros(pairs, dtype=np.float32)
            else:
                best = previous[:, j]
                if j > 0:
                    best = np.minimum(np.minimum(best, previous[:, j - 1]), current[:, j - 1])
            current[:, j] = cost[:, i, j] + best
        previous = current
    return previous[:, t - 1].astype(np.float64)


def dtw_cross_distances(queries, references, band: int, persons: int = 1) -> np.ndarray:
    """The DTW distances (N, R) float64 of every clip of ``queries`` (N, T, D) to every clip of
    ``references`` (R, T, D): the same distance as :func:`dtw_distances` (squared frame distances
    summed along the best monotone path within a Sakoe-Chiba ``band``), computed for all N × R
    pairs at once. The frame distances of each band cell (i, j) are one matrix product,
    ‖q_i‖² + ‖r_j‖² − 2 Q_i R_jᵀ over all pairs ((N, D) @ (D, R)), and the dynamic programme runs
    on (N, R) arrays: about 3 µs per pair on MSR clips (50 frames), 30 times less than a paired
    kernel restricted to the band took. Clips of ``persons`` > 1 bodies: the least distance over
    the orders of the references' bodies (:func:`body_orders`; M! passes where two body slots are
    used, one otherwise)."""
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(references, dtype=np.float32)
    if q.ndim != 3 or r.ndim != 3 or q.shape[1:] != r.shape[1:]:
        raise ValueError(f"dtw_cross_distances needs (N, T, D) and (R, T, D) clips, got {q.shape} "
                         f"and {r.shape}")
    if band < 0:
        raise ValueError(f"dtw_cross_distances needs band >= 0, got {band}")
    _check_persons(q, persons)
    return np.minimum.reduce([_cross_dtw(q, reorder_bodies(r, order), band)
                              for order in body_orders(q, r, persons)])


def _cross_dtw(q: np.ndarray, r: np.ndarray, band: int) -> np.ndarray:
    """:func:`dtw_cross_distances` of (N, T, D) and (R, T, D) float32 clips under the bodies'
    given order."""
    n, t, _ = q.shape
    band = min(band, t - 1)
    q_norms = np.einsum("ntd,ntd->nt", q, q)  # (N, T)
    r_norms = np.einsum("rtd,rtd->rt", r, r)  # (R, T)
    r_by_time = np.ascontiguousarray(r.transpose(1, 2, 0))  # (T, D, R)
    previous_first, previous = 0, np.zeros((0, n, r.shape[0]), np.float32)
    for i in range(t):
        first, last = max(0, i - band), min(t, i + band + 1)  # row i's band: columns [first, last)
        current = np.empty((last - first, n, r.shape[0]), np.float32)  # (w, N, R) cumulative cost
        for j in range(first, last):
            cell = q_norms[:, i, None] + r_norms[None, :, j] - 2.0 * (q[:, i] @ r_by_time[j])  # (N, R)
            np.maximum(cell, 0.0, out=cell)
            steps = []  # the cells a path may come from: (i−1, j), (i−1, j−1), (i, j−1)
            if i > 0 and previous_first <= j < previous_first + len(previous):
                steps.append(previous[j - previous_first])
            if i > 0 and j > 0 and previous_first <= j - 1 < previous_first + len(previous):
                steps.append(previous[j - 1 - previous_first])
            if j > first:
                steps.append(current[j - 1 - first])
            if steps:
                best = steps[0] if len(steps) == 1 else np.minimum.reduce(steps)
                current[j - first] = cell + best
            elif i == 0 and j == 0:
                current[0] = cell
            else:  # unreachable within the band
                current[j - first] = np.inf
        previous_first, previous = first, current
    return previous[t - 1 - previous_first].astype(np.float64)


def vote(neighbour_clusters: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote of each row of ``neighbour_clusters`` (N, k), nearest first: the clusters
    (N,) int64 and the vote shares (N, K) float32 (rows sum to 1). A tie goes to the tied cluster
    of the nearest neighbour."""
    n, k = neighbour_clusters.shape
    counts = np.zeros((n, num_clusters), dtype=np.float32)  # (N, K)
    np.add.at(counts, (np.repeat(np.arange(n), k), neighbour_clusters.reshape(-1)), 1.0)
    best = counts.max(axis=1, keepdims=True)  # (N, 1)
    tied = counts[np.arange(n)[:, None], neighbour_clusters] == best  # (N, k): neighbour in a tie
    first = tied.argmax(axis=1)  # the nearest neighbour whose cluster is among the tied
    clusters = neighbour_clusters[np.arange(n), first].astype(np.int64)
    return clusters, counts / float(k)


@dataclass(frozen=True)
class ReferenceBank:
    """Training clips as DTW frames (R, T, D) float32 with the cluster (R,) the model gave each."""

    frames: np.ndarray  # (R, T, D) float32: pose_frames(poses, velocity_weight)
    clusters: np.ndarray  # (R,) int64 in [0, num_clusters)
    num_clusters: int
    velocity_weight: float = VELOCITY_WEIGHT
    neighbours: int = VOTE_NEIGHBOURS
    candidates: int = VOTE_CANDIDATES
    persons: int = 1  # M, the bodies of each clip (innermost in D); the model's, not stored
    coordinates: int | None = None  # the coordinate channels the frames hold; the model's

    def __post_init__(self) -> None:
        if self.candidates != VOTE_CANDIDATES:
            raise ValueError(f"a bank searched among {self.candidates} candidates: this version "
                             f"searches every bank clip; re-export the model")
        r = self.frames.shape[0] if self.frames.ndim == 3 else -1
        if r < 1 or self.clusters.shape != (r,):
            raise ValueError(f"a reference bank needs frames (R, T, D) and clusters (R,), got "
                             f"{self.frames.shape} and {self.clusters.shape}")
        if self.clusters.min() < 0 or self.clusters.max() >= self.num_clusters:
            raise ValueError(f"reference clusters outside [0, {self.num_clusters})")
        if not np.isfinite(self.frames).all():
            raise ValueError("reference frames hold NaN or infinite values")
        _check_persons(self.frames, self.persons)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def distances(self, frames: np.ndarray) -> np.ndarray:
        """The DTW distances (N, R) of clips ``frames`` (N, T, D) to every bank clip, all pairs at
        once (:func:`dtw_cross_distances`), in chunks of queries."""
        n, t = frames.shape[:2]
        if frames.shape[1:] != self.frames.shape[1:]:
            raise ValueError(f"clips of frames {frames.shape[1:]} for a bank of {self.frames.shape[1:]}")
        r = len(self)
        step = max(1, QUERY_CELLS_PER_CHUNK // r)  # queries at once
        return np.concatenate([
            dtw_cross_distances(frames[start:start + step], self.frames, dtw_band(t), self.persons)
            for start in range(0, n, step)]) if n else np.zeros((0, r))  # (N, R)

    def nearest(self, frames: np.ndarray) -> np.ndarray:
        """The bank rows (N, k) nearest each of ``frames`` (N, T, D) under DTW, nearest first
        (ties to the lower row): every bank clip's distance (:meth:`distances`)."""
        k = min(self.neighbours, len(self))
        return np.argsort(self.distances(frames), axis=1, kind="stable")[:, :k]  # (N, k)

    def assign(self, poses: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Clusters (N,) and vote shares (N, K) of preprocessed ``poses`` (N, C, T, V, M), in
        chunks of ``chunk`` clips."""
        clusters, shares = [], []
        for start in range(0, len(poses), chunk):
            frames = pose_frames(poses[start:start + chunk], self.velocity_weight,
                                 self.coordinates)  # (n, T, D)
            chosen, share = vote(self.clusters[self.nearest(frames)], self.num_clusters)
            clusters.append(chosen)
            shares.append(share)
        if not clusters:
            return np.zeros(0, np.int64), np.zeros((0, self.num_clusters), np.float32)
        return np.concatenate(clusters), np.concatenate(shares)


def make_bank(poses: np.ndarray, clusters: np.ndarray, num_clusters: int,
              coordinates: int | None = None) -> ReferenceBank:
    """The bank of training clips ``poses`` (R, C, T, V, M) with the clusters (R,) a model gave
    them; the frames of their first ``coordinates`` channels (:func:`pose_frames`)."""
    return ReferenceBank(frames=pose_frames(poses, VELOCITY_WEIGHT, coordinates),
                         clusters=np.asarray(clusters, dtype=np.int64), num_clusters=num_clusters,
                         persons=int(np.shape(poses)[-1]), coordinates=coordinates)


def save_bank(bank: ReferenceBank, path: str | os.PathLike) -> Path:
    """Write ``bank`` to ``path`` (``.npz``, frames as float16) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, format=np.array(BANK_FORMAT), frames=bank.frames.astype(np.float16),
                            clusters=bank.clusters.astype(np.int32),
                            num_clusters=np.array(bank.num_clusters),
                            velocity_weight=np.array(bank.velocity_weight),
                            neighbours=np.array(bank.neighbours),
                            candidates=np.array(bank.candidates))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model's bank from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_BANK_KEYS = ("format", "frames", "clusters", "num_clusters", "velocity_weight", "neighbours",
              "candidates")


def load_bank(path: str | os.PathLike, *, num_clusters: int, frame_shape: tuple[int, int],
              persons: int = 1, coordinates: int | None = None) -> ReferenceBank:
    """Read a bank written by :func:`save_bank` for a model of ``num_clusters`` clusters whose
    clips have ``frame_shape`` (T, D) DTW frames of ``persons`` bodies and their first
    ``coordinates`` channels; raises ModelError naming the file and the problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _BANK_KEYS if key not in data.files]
            if missing:
                raise ModelError(f"{path}: not a reference bank (missing {', '.join(missing)})")
            if int(data["format"]) != BANK_FORMAT:
                raise ModelError(f"{path}: reference bank format {int(data['format'])}, this "
                                 f"version reads {BANK_FORMAT}")
            values = {key: data[key] for key in _BANK_KEYS}  # each array decompressed once
            shape: tuple[int, ...] = tuple(values["frames"].shape)
            if len(shape) != 3 or shape[0] > MAX_BANK_CLIPS or tuple(shape[1:]) != tuple(frame_shape):
                raise ModelError(f"{path}: reference frames of shape {shape}, the model needs "
                                 f"(R ≤ {MAX_BANK_CLIPS}, {frame_shape[0]}, {frame_shape[1]}); "
                                 f"a bank exported by an earlier version (a 2-D score model's "
                                 f"held the score too): re-export the model")
    except FileNotFoundError:
        raise ModelError(f"{path}: the model's reference bank is missing") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path}: cannot read the reference bank: {exc}") from exc
    if int(values["num_clusters"]) != num_clusters:
        raise ModelError(f"{path}: a bank of {int(values['num_clusters'])} clusters for a model "
                         f"of {num_clusters}")
    try:
        return ReferenceBank(frames=values["frames"].astype(np.float32),
                             clusters=values["clusters"].astype(np.int64),
                             num_clusters=num_clusters,
                             velocity_weight=float(values["velocity_weight"]),
                             neighbours=max(1, int(values["neighbours"])),
                             candidates=int(values["candidates"]), persons=persons,
                             coordinates=coordinates)
    except ValueError as exc:
        raise ModelError(f"{path}: invalid reference bank: {exc}") from exc
