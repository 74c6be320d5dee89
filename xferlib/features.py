"""Run a frozen backbone once over a dataset and keep the feature vectors.

Feature extraction is the cheap half of transfer learning: the backbone never changes,
so there is no reason to run it every epoch. ``extract_features`` runs it once through
:func:`xferlib.training.predict` (inference mode, batched, channels_last for convolutional
networks) and can keep the result in the on-disk cache (:mod:`xferlib.storage`), keyed by
the model's weights, the data's content and its transform.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .storage import cached, entry_path, model_fingerprint
from .training import predict


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
    the data (file contents included) and its transform: change any of them and the features
    are computed anew. ``xl.clear_cache()`` empties the cache.
    """

    def run() -> dict:
        features, labels = predict(model, dataset, batch_size, device, channels_last, amp, progress,
                                   num_workers=num_workers, desc="extracting features")
        return {"features": features, "labels": labels.long()}

    if not cache:
        result = run()
    else:
        key = hashlib.sha1(
            f"{model_fingerprint(model)}|{cache_key or data_fingerprint(dataset)}|{batch_size}".encode()
        ).hexdigest()
        result = cached(entry_path(cache, "features", key), run)
    return result["features"], result["labels"]


def feature_dataset(features: torch.Tensor, labels) -> TensorDataset:
    """Cached features as a dataset that :func:`xferlib.fit` trains a head on."""
    return TensorDataset(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(np.asarray(labels), dtype=torch.long))
