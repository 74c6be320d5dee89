"""How similar two representations of the same inputs are: linear CKA.

Fine-tuning changes some layers more than others. Centred kernel alignment (CKA; Kornblith
et al., 2019) compares the activations two networks produce on the *same* ``n`` inputs, for
example a layer of the pretrained backbone and the same layer after fine-tuning::

    maps_before = pretrained.feature_maps(images)     # one [n, C, H, W] tensor per stage
    maps_after = finetuned.feature_maps(images)
    [xl.linear_cka(a, b) for a, b in zip(maps_before, maps_after)]   # 1.0: unchanged

Linear CKA is 1 for identical representations, and stays 1 under a rotation or a uniform
rescaling of either one (so it ignores changes that do not matter to a linear head on top);
it is near 0 for unrelated ones. :func:`xferlib.weightspace.weight_distance` is the
companion measure on the weights.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["linear_cka"]


def _matrix(x, name: str) -> torch.Tensor:
    """Activations ``[n, ...]`` as a float64 matrix ``[n, features]`` with centred columns."""
    x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [n, features] (or [n, C, H, W]), got shape {tuple(x.shape)}")
    x = x.reshape(len(x), -1).to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has values that are not finite")
    return x - x.mean(0)


def linear_cka(x, y) -> float:
    """Linear CKA between activations ``x`` [n, p] and ``y`` [n, q] of the same ``n`` inputs,
    between 0 and 1; larger inputs ``[n, ...]`` are flattened per input. Used in lesson 11.

    With centred columns, CKA = ||yᵀx||²_F / (||xᵀx||_F ||yᵀy||_F): the HSIC of the two linear
    kernels, normalised. When there are more features than inputs, the same number comes from
    the n x n Gram matrices, which is cheaper.
    """
    x, y = _matrix(x, "x"), _matrix(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same inputs (rows): x has {len(x)}, y has {len(y)}")
    if len(x) < 2:
        raise ValueError(f"CKA needs at least 2 inputs, got {len(x)}")
    if x.shape[1] + y.shape[1] > 2 * len(x):   # wide: compare the n x n Gram matrices
        k, l = x @ x.T, y @ y.T
        cross, self_x, self_y = (k * l).sum(), k.norm(), l.norm()
    else:                                      # tall: compare the feature covariances
        cross, self_x, self_y = (y.T @ x).square().sum(), (x.T @ x).norm(), (y.T @ y).norm()
    for name, norm in (("x", self_x), ("y", self_y)):
        if norm == 0:
            raise ValueError(f"{name} is the same for every input (no variance), so CKA is undefined")
    return float(cross / (self_x * self_y))
