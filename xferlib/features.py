"""Run a frozen backbone once over a dataset and keep the feature vectors.

Feature extraction is the cheap half of transfer learning: the backbone never changes,
so there is no reason to run it every epoch. ``extract_features`` runs it once, in
inference mode, batched, in channels_last for convolutional networks, and can keep the
result in an on-disk cache keyed by the model's weights, the data and the transform.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .training import _autocast, _loader, _prepare, _to_device, eval_mode, progress_bar

CACHE_ENV = "XFERLIB_CACHE"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/xferlib")).expanduser() / "features"


def model_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (and the architecture's text)."""
    h = hashlib.sha1(repr(model).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(dataset) -> str:
    """A hash of a dataset's contents and transform (datasets from :mod:`xferlib.data`,
    TensorDatasets); other datasets need an explicit ``cache_key``."""
    if hasattr(dataset, "fingerprint"):
        return dataset.fingerprint()
    if isinstance(dataset, TensorDataset):
        h = hashlib.sha1(b"TensorDataset")
        for t in dataset.tensors:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()
    raise TypeError(
        f"Cannot tell whether a {type(dataset).__name__} has changed, so its features cannot be "
        "cached safely; pass cache_key='<a name that changes when the data does>'."
    )


def _save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@torch.inference_mode()
def _run(model, dataset, batch_size, device, channels_last, amp, num_workers, progress):
    features, labels = [], []
    loader = _loader(dataset, batch_size, False, device, num_workers)
    for x, y in progress_bar(loader, enable=progress, desc="extracting features", total=len(loader)):
        with _autocast(device, amp):
            out = model(_to_device(x, device, channels_last))
        features.append(out.float().cpu())
        labels.append(torch.as_tensor(y).cpu())
    return torch.cat(features), torch.cat(labels).long()


def extract_features(
    model: nn.Module,
    dataset,
    batch_size: int = 32,
    device=None,
    *,
    cache: bool | str | os.PathLike = False,
    cache_key: str | None = None,
    channels_last: bool | None = None,
    amp: bool = True,
    num_workers: int = 0,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, F], labels [N])`` from running ``model`` over ``dataset`` once.

    The model runs in eval mode (restored afterwards) under ``torch.inference_mode``; its
    tensors, BatchNorm statistics included, are untouched. ``cache=True`` (or a folder)
    keeps the result on disk, written atomically, under a key made of the model's weights,
    the data and its transform: change any of them and the features are computed anew.
    """
    if cache:
        folder = default_cache_dir() if cache is True else Path(cache)
        key = hashlib.sha1(
            f"{model_fingerprint(model)}|{cache_key or data_fingerprint(dataset)}|{batch_size}".encode()
        ).hexdigest()[:24]
        path = folder / f"{key}.pt"
        if path.exists():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                return saved["features"], saved["labels"]
            except Exception:  # unreadable: compute again and overwrite
                path.unlink(missing_ok=True)
    device, channels_last = _prepare(model, device, channels_last)
    with eval_mode(model):
        features, labels = _run(model, dataset, batch_size, device, channels_last, amp, num_workers, progress)
    if cache:
        _save_atomic({"features": features, "labels": labels}, path)
    return features, labels


def feature_dataset(features: torch.Tensor, labels) -> TensorDataset:
    """Cached features as a dataset that :func:`xferlib.fit` trains a head on."""
    return TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(np.asarray(labels), dtype=torch.long))
