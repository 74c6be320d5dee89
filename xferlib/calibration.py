"""Calibration: does a model's confidence match how often it is right?

A classifier is *calibrated* when, among the inputs it labels with confidence 0.8, about 80 %
are right. Fine-tuning often leaves a network over-confident. This module measures that
(:func:`expected_calibration_error`, :func:`reliability`, :func:`plot_reliability`) and fixes
the simplest form of it with *temperature scaling* (Guo et al., 2017): divide the logits by one
number ``T`` fitted on validation data (:func:`fit_temperature`, :func:`apply_temperature`).
Dividing by ``T`` never changes which class wins, so accuracy stays the same.

Every function takes torch tensors or numpy arrays: scores ``[N, C]`` (probabilities or logits)
and integer labels ``[N]``, for example the outputs of :func:`xferlib.training.predict`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["apply_temperature", "expected_calibration_error", "fit_temperature", "plot_reliability", "reliability"]


def _tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _checked(scores, labels, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores`` as float64 ``[N, C]`` and ``labels`` as int64 ``[N]``, or a ValueError that
    names what is wrong."""
    scores, labels = _tensor(scores).to(torch.float64), _tensor(labels)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"{name} must have shape [N, C] with C >= 2 classes, got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape[:1]:
        raise ValueError(f"labels must have shape [{scores.shape[0]}] to match {name} {tuple(scores.shape)}, "
                         f"got shape {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError(f"{name} is empty: there is nothing to measure")
    if not torch.isfinite(scores).all():
        row = int((~torch.isfinite(scores)).any(1).nonzero()[0])
        raise ValueError(f"{name} has a value that is not finite in row {row}: {scores[row].tolist()}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"labels must be whole numbers (class indices), got {labels[labels != labels.round()][0].item()}")
    labels = labels.long()
    bad = (labels < 0) | (labels >= scores.shape[1])
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"labels must lie in 0..{scores.shape[1] - 1} (the {scores.shape[1]} columns of {name}); "
                         f"label {labels[i].item()} at index {i} does not")
    return scores, labels


def _probabilities(probs_or_logits, labels, logits: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``[N, C]`` and labels. ``logits=None`` reads values outside [0, 1] as logits."""
    scores, labels = _checked(probs_or_logits, labels, "probs_or_logits")
    if logits is None:
        logits = bool((scores < 0).any() or (scores > 1).any())
    if logits:
        return scores.softmax(1), labels
    sums = scores.sum(1)
    off = (sums - 1).abs() > 1e-3
    if off.any() or (scores < 0).any():
        row = int(off.nonzero()[0]) if off.any() else int((scores < 0).any(1).nonzero()[0])
        raise ValueError(f"probabilities must be at least 0 and each row must sum to 1; row {row} sums to "
                         f"{sums[row].item():.4g}. Pass logits=True if these are logits (the outputs before softmax).")
    return scores, labels


def reliability(probs_or_logits, labels, bins: int = 15, *, logits: bool | None = None) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (``nan`` for empty bins). Used in lesson 11.

    The confidence of a prediction is its top-class probability; the bins split (0, 1] into
    ``bins`` equal widths, each closed on the right. Returns numpy arrays ``edges`` [bins + 1],
    ``confidence``, ``accuracy`` and ``count`` [bins].
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a whole number of at least 1, got {bins!r}")
    probs, labels = _probabilities(probs_or_logits, labels, logits)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence, edges[1:-1])  # bin i holds (edges[i], edges[i + 1]]
    count = torch.bincount(which, minlength=bins).double()
    mean_confidence = (torch.bincount(which, confidence, minlength=bins) / count).numpy()  # 0 / 0 = nan
    accuracy = (torch.bincount(which, correct, minlength=bins) / count).numpy()
    return {"edges": edges.numpy(), "confidence": mean_confidence, "accuracy": accuracy, "count": count.long().numpy()}


def expected_calibration_error(probs_or_logits, labels, bins: int = 15, *, logits: bool | None = None) -> float:
    """ECE: the sum over confidence bins of |accuracy - mean confidence|, weighted by the
    fraction of predictions in the bin (0 is perfect). Used in lesson 11.

    ``logits=None`` treats scores outside [0, 1] as logits and anything else as probabilities
    (whose rows must sum to 1); pass ``logits=True`` or ``False`` to say which.
    """
    table = reliability(probs_or_logits, labels, bins, logits=logits)
    used = table["count"] > 0
    weight = table["count"][used] / table["count"].sum()
    return float(np.sum(weight * np.abs(table["accuracy"][used] - table["confidence"][used])))


def apply_temperature(logits, temperature: float):
    """``softmax(logits / temperature)``, as the same kind of array as ``logits``. Used in lesson 11."""
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number above 0, got {temperature!r}")
    if isinstance(logits, torch.Tensor):
        return (logits / t).softmax(-1)
    return torch.as_tensor(np.asarray(logits, dtype=np.float64) / t).softmax(-1).numpy()


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature ``T > 0`` that minimises the cross-entropy of ``softmax(logits / T)`` on
    these (validation) logits. Used in lesson 11.

    A golden-section search on log T within ``bounds``: deterministic, and safe because the loss
    has a single minimum in T. A warning says when the best T lies at a bound (for example when
    every validation prediction is right, so sharper is always better).
    """
    if not 0 < bounds[0] < bounds[1] < math.inf:
        raise ValueError(f"bounds must be two numbers with 0 < low < high, got {bounds!r}")
    z, y = _checked(logits, labels, "logits")
    if bool(((z >= 0) & (z <= 1)).all() and ((z.sum(1) - 1).abs() < 1e-6).all()):
        raise ValueError("these look like probabilities; fit_temperature needs logits (the outputs before softmax)")
    low, high = (math.log(b) for b in bounds)

    def loss(log_t: float) -> float:
        return F.cross_entropy(z / math.exp(log_t), y).item()

    golden = (math.sqrt(5) - 1) / 2
    a, b = high - golden * (high - low), low + golden * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-7:
        if loss_a <= loss_b:   # the minimum lies left of b
            high, b, loss_b = b, a, loss_a
            a = high - golden * (high - low)
            loss_a = loss(a)
        else:                  # the minimum lies right of a
            low, a, loss_a = a, b, loss_b
            b = low + golden * (high - low)
            loss_b = loss(b)
    temperature = math.exp((low + high) / 2)
    if min(abs(math.log(temperature) - math.log(edge)) for edge in bounds) < 1e-3:
        warnings.warn(f"the fitted temperature {temperature:.3g} lies at the edge of the search {bounds}", stacklevel=2)
    return temperature


def plot_reliability(probs_or_logits, labels, bins: int = 15, *, logits: bool | None = None,
                     title: str = "reliability diagram", ax=None):
    """Accuracy against confidence per bin, with the diagonal of perfect calibration and the
    ECE in the title; pass ``ax`` to draw two side by side. Used in lesson 11."""
    import matplotlib.pyplot as plt

    table = reliability(probs_or_logits, labels, bins, logits=logits)
    ece = expected_calibration_error(probs_or_logits, labels, bins, logits=logits)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    else:
        fig = ax.figure
    left, width = table["edges"][:-1], 1 / bins
    used = table["count"] > 0
    accuracy, confidence = np.where(used, table["accuracy"], 0), np.where(used, table["confidence"], 0)
    ax.bar(left, accuracy, width, align="edge", color="0.55", edgecolor="black", label="accuracy")
    ax.bar(left, confidence - accuracy, width, bottom=accuracy, align="edge", fill=False, hatch="//",
           edgecolor="black", linewidth=0.5, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="confidence (top-class probability)",
           ylabel="accuracy", title=f"{title}\nECE {ece:.3f} over {int(table['count'].sum())} predictions")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
