"""Self-describing checkpoints (docs/ARCHITECTURE.md, "Checkpoints" and convention 8).

A checkpoint is ``{"schema", "config", "model", "optimizer", "epoch", "stage", "metrics",
"git_sha"}`` plus ``"banks"`` (the per-sample memory banks, METHOD §5), so a run resumes exactly.
Loading is ``weights_only=True`` and restoring is ``strict=True``. Files are written atomically.

A run folder keeps ``checkpoints/last.pt`` (every epoch), ``checkpoints/stage1.pt`` (end of
stage 1, shared by stage-2 variants) and ``checkpoints/final.pt`` (end of training).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from codt_deploy.errors import CodtError
from training import provenance

SCHEMA = 1
REQUIRED_KEYS = ("schema", "config", "model", "optimizer", "epoch", "stage", "metrics", "git_sha")
LAST, STAGE1, FINAL = "last.pt", "stage1.pt", "final.pt"

log = logging.getLogger(__name__)


class CheckpointError(CodtError, RuntimeError):
    """A checkpoint is missing, unreadable, of another schema or does not fit the model."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(path: str | Path, *, config: dict[str, Any], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, epoch: int, stage: int,
                    metrics: dict[str, float], banks: dict[str, torch.Tensor]) -> Path:
    """Write one checkpoint atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema": SCHEMA,
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": int(epoch),
        "stage": int(stage),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "git_sha": provenance.git_sha() or "unknown",
        "banks": {name: bank.detach().cpu().clone() for name, bank in banks.items()},
    }
    write_payload(path, payload)
    log.info("saved checkpoint %s (epoch %d, stage %d)", path, epoch, stage)
    return path


def write_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint payload atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its schema and keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot read the checkpoint (weights-only load): "
                              f"{first_line}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a checkpoint (top level is {type(payload).__name__})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}")
    if payload["schema"] != SCHEMA:
        raise CheckpointError(f"{path}: schema {payload['schema']} is not supported "
                              f"(this version reads schema {SCHEMA})")
    return payload


def restore(payload: dict[str, Any], *, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer | None = None,
            banks: dict[str, torch.Tensor] | None = None, origin: str = "checkpoint") -> None:
    """Load model (strict), optimizer and banks in place; a shape or key mismatch raises."""
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{origin}: the weights do not fit this model: {err}") from None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{origin}: optimizer state does not fit: {err}") from None
    if banks is not None:
        saved = payload.get("banks", {})
        if set(saved) != set(banks):
            raise CheckpointError(f"{origin}: memory banks {sorted(saved)} != expected {sorted(banks)}")
        for name, bank in banks.items():
            if saved[name].shape != bank.shape:
                raise CheckpointError(f"{origin}: bank {name!r} has shape {tuple(saved[name].shape)}, "
                                      f"expected {tuple(bank.shape)} (another target set?)")
            with torch.no_grad():
                bank.copy_(saved[name].to(bank.device))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """``checkpoints/last.pt`` of a run folder if it exists (the point to resume from)."""
    path = checkpoint_dir(run_dir) / LAST
    return path if path.is_file() else None
