"""Domain adaptation building blocks: the gradient-reversal layer of DANN, its lambda
schedule, a small domain classifier, and two measures of how far apart two domains are.

Domain-adversarial training (Ganin et al., 2016) puts a domain classifier behind a
*gradient-reversal layer* (GRL) on top of the feature extractor::

    features = extractor(x)
    class_logits = label_head(features)                          # source labels only
    domain_logit = domain_head(grad_reverse(features, lambd))    # source vs target

The GRL is the identity going forward and multiplies the gradient by ``-lambd`` going back,
so one backward pass trains the domain classifier to tell the domains apart and, at the
same time, trains the feature extractor to make them indistinguishable. The training loop
itself stays in the lesson; this module holds only the reusable parts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["GradientReversal", "dann_lambda", "domain_classifier", "grad_reverse", "mmd2", "proxy_a_distance"]


class _GradReverse(torch.autograd.Function):
    """Identity forward; the gradient times ``-lambd`` backward."""

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.lambd, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """``x`` unchanged in the forward pass; in the backward pass the gradient flowing into
    ``x`` is multiplied by ``-lambd``. ``lambd`` is a plain number (not trained)."""
    if isinstance(lambd, torch.Tensor):
        lambd = float(lambd)
    if not math.isfinite(lambd) or lambd < 0:
        raise ValueError(f"lambd must be a finite number of at least 0, got {lambd}")
    return _GradReverse.apply(x, lambd)


class GradientReversal(nn.Module):
    """The gradient-reversal layer as a module. Set ``.lambd`` during training (for example
    from :func:`dann_lambda`) to ramp the adversarial signal up."""

    def __init__(self, lambd: float = 1.0):
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x):
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd:g}"


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule for the adaptation weight: ``2 / (1 + exp(-gamma * p)) - 1``.

    ``progress`` is the fraction of training done, ``p`` in [0, 1]. The weight starts at 0
    (the domain classifier's noisy early gradients do not disturb the features) and rises
    smoothly towards 1 (``gamma=10`` gives 0.987 at the end), as in Ganin et al. (2016).
    """
    p = float(progress)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def domain_classifier(in_features: int, hidden: int = 256, layers: int = 2, dropout: float = 0.5) -> nn.Sequential:
    """A small MLP that outputs one logit per example: source (0) or target (1)?

    ``layers`` hidden layers of ``hidden`` units with ReLU and dropout, as in the domain
    classifier of Ganin et al. (2016) (they used 1024 units). It does not include the
    gradient-reversal layer: put a :class:`GradientReversal` in front of it (or call
    :func:`grad_reverse` on its input) for adversarial training.
    """
    if in_features < 1 or hidden < 1 or layers < 1:
        raise ValueError(f"in_features, hidden and layers must be positive, got {in_features}, {hidden} and {layers}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    modules: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout:
            modules.append(nn.Dropout(dropout))
        width = hidden
    modules.append(nn.Linear(width, 1))
    return nn.Sequential(*modules)


# --------------------------------------------------------------------------- discrepancy
def _as_2d_float64(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu())
    t = t.to(torch.float64)
    if t.dim() != 2 or len(t) < 2:
        raise ValueError(f"{name}: expected a [N, D] array with N >= 2, got shape {tuple(t.shape)}")
    return t


def mmd2(source, target, bandwidths=None) -> float:
    """Squared maximum mean discrepancy between two samples of feature vectors, with a sum
    of Gaussian kernels (the biased estimate, as in Long et al., 2015).

    ``bandwidths`` default to the median pairwise distance of the pooled sample times
    (0.25, 0.5, 1, 2, 4). The median heuristic makes the number comparable across feature
    spaces of different scale. 0 means the two samples look alike to these kernels.
    """
    xs, xt = _as_2d_float64(source, "source"), _as_2d_float64(target, "target")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"source has {xs.shape[1]} features, target {xt.shape[1]}")
    pooled = torch.cat([xs, xt])
    d2 = torch.cdist(pooled, pooled).pow(2)
    if bandwidths is None:
        off_diagonal = d2[~torch.eye(len(pooled), dtype=torch.bool)]
        median = off_diagonal.median().sqrt().item() or 1.0
        bandwidths = [median * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    kernel = sum(torch.exp(-d2 / (2.0 * float(b) ** 2)) for b in bandwidths)
    n = len(xs)
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(k_ss.mean() + k_tt.mean() - 2.0 * k_st.mean())


def proxy_a_distance(source, target, seed: int = 0, test_fraction: float = 0.5) -> dict:
    """How well can a linear classifier tell the two domains apart from these features?

    Trains a logistic regression (features standardized) on part of the pooled sample to
    predict the domain, and tests it on the rest. Returns ``{"accuracy", "error",
    "pad"}`` where ``pad = 2 * (1 - 2 * error)`` is the proxy A-distance of Ben-David et al.
    (2010): 2 when the domains are perfectly separable, about 0 when they look alike.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, xt = _as_2d_float64(source, "source").numpy(), _as_2d_float64(target, "target").numpy()
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"source has {xs.shape[1]} features, target {xt.shape[1]}")
    x = np.concatenate([xs, xt])
    y = np.concatenate([np.zeros(len(xs), dtype=np.int64), np.ones(len(xt), dtype=np.int64)])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(x_train, y_train)
    accuracy = float((probe.predict(x_test) == y_test).mean())
    error = 1.0 - accuracy
    return {"accuracy": accuracy, "error": error, "pad": 2.0 * (1.0 - 2.0 * error)}
