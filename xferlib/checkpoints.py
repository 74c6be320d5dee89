"""Save and load model weights safely: written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .features import _save_atomic


def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **meta) -> Path:
    """Write the model's state (and the optimizer's, and plain metadata) to ``path``.

    The file appears complete or not at all: it is written next to its final name and
    renamed into place. ``meta`` values must be plain data (numbers, strings, lists, dicts).
    """
    path = Path(path)
    payload = {"model": model.state_dict(), "meta": meta}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    _save_atomic(payload, path)
    return path


def load_checkpoint(path, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, strict: bool = True) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no code runs from the file); load it into
    ``model`` and ``optimizer`` when given. Returns the whole payload."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from err
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{path} is not an xferlib checkpoint (no 'model' entry)")
    if model is not None:
        try:
            model.load_state_dict(payload["model"], strict=strict)
        except RuntimeError as err:
            raise ValueError(f"{path} does not fit this model: {err}") from err
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    return payload
