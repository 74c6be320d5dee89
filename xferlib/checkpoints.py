"""Save and load model weights safely: written atomically, read with ``weights_only=True``.

``weights_only=True`` means no code runs from the file, so a checkpoint from anywhere can be
opened safely; the price is that only plain data loads. ``save_checkpoint`` therefore checks
the metadata when it writes, so that what saves also loads.

Under torchrun every process calls ``save_checkpoint`` as a single process would: rank 0 alone
writes, and the others wait until the file is there (see :mod:`xferlib.distributed`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import distributed
from .storage import save_atomic

_PLAIN = (type(None), bool, int, float, str)


def _plain(value, where: str):
    """``value`` as data that loads with ``weights_only=True`` (NumPy scalars become Python
    numbers), or a TypeError that names the entry."""
    if isinstance(value, np.generic) and isinstance(value.item(), _PLAIN):  # before _PLAIN: np.float64 is a float
        return value.item()
    if type(value) in _PLAIN:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, (str, int))]
        if bad:
            raise TypeError(f"checkpoint metadata {where}: key {bad[0]!r} is a {type(bad[0]).__name__}; use text or whole numbers")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"checkpoint metadata {where} is a {type(value).__module__}.{type(value).__qualname__}, which a safe load "
        "(weights_only=True) would refuse; store plain data instead, e.g. str(path) or float(value)."
    )


def _reason(err: Exception) -> str:
    """The informative line of PyTorch's long weights-only message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if "Unsupported global" in line), lines[0] if lines else type(err).__name__)[:300]


def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **meta) -> Path:
    """Write the model's state (and the optimizer's, and plain metadata) to ``path``.

    The file appears complete or not at all: it is written next to its final name and
    renamed into place. ``meta`` values must be plain data (numbers, text, lists, dicts,
    tensors; NumPy numbers are stored as Python numbers); anything else is refused here,
    before a file is written, rather than when it is loaded.

    Under torchrun, call it on every process (not inside ``if is_main()``): rank 0 writes, the
    others wait for it, so the file is there for all of them once it returns; rank 0's error, if
    any, is raised on every process. A DistributedDataParallel wrapper is saved as its model.
    """
    path = Path(path)
    meta = {key: _plain(value, repr(key)) for key, value in meta.items()}  # refused on every process alike
    distributed.setup()

    def write() -> Path:
        payload = {"model": distributed.unwrap(model).state_dict(), "meta": meta}
        if optimizer is not None:
            payload["optimizer"] = optimizer.state_dict()
        return save_atomic(payload, path)

    return distributed.on_main(write)


def load_checkpoint(path, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, strict: bool = True) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no code runs from the file); load it into
    ``model`` and ``optimizer`` when given. Returns the whole payload."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds objects that a safe load (weights_only=True) refuses to rebuild, so it was not "
            f"opened ({_reason(err)})"
        ) from err
    except Exception as err:
        size = path.stat().st_size
        raise ValueError(
            f"{path} ({size} bytes) is truncated or not a checkpoint: it cannot be read ({type(err).__name__}). "
            "Save it again, or check that this is the file you meant."
        ) from err
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{path} is not an xferlib checkpoint (no 'model' entry)")
    if model is not None:
        try:
            distributed.unwrap(model).load_state_dict(payload["model"], strict=strict)
        except RuntimeError as err:
            raise ValueError(f"{path} does not fit this model: {err}") from err
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    return payload
