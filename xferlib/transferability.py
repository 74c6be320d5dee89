"""Transferability scores: how useful is a source model for a target task, before fine-tuning?

Each score needs one forward pass of the source model over the labelled target images and no
training of the network. Higher is better for every one of them; compare a score only across
candidate sources on the *same* target data (their scales differ from score to score and from
target to target)::

    feats, labels = xl.extract_features(backbone, target_train)
    xl.logme(feats, labels), xl.hscore(feats, labels), xl.knn_score(feats, labels)
    logits, labels = xl.predict(xl.load_imagenet_classifier(), target_train)   # the source's own head
    xl.leep(logits, labels, logits=True)

* :func:`logme` (You et al., 2021): how well a Bayesian linear model on the features explains
  the labels, its log evidence per image, with the prior and noise precisions chosen to
  maximise it (so nothing is tuned by hand and nothing overfits);
* :func:`leep` (Nguyen et al., 2020): uses the source's *classifier*, not its features: how
  well the source's predicted classes, mapped to target labels through their empirical joint
  distribution, predict the target labels (a mean log-likelihood, at most 0);
* :func:`hscore` (Bao et al., 2019): how much of the features' variance lies between the
  classes, ``tr(cov(f)⁻¹ cov(E[f | y]))``, with the covariance shrunk as Ibrahim et al. (2022)
  propose, so that it stays stable with more features than images;
* :func:`knn_score` and :func:`linear_probe_score`: the cross-validated accuracy of a
  nearest-neighbour or a logistic-regression probe on the features (lesson 05).

Every function takes numpy arrays or torch tensors: ``features`` ``[N, D]`` and integer
``labels`` ``[N]`` (any integer values; at least two classes).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["hscore", "knn_score", "leep", "ledoit_wolf_shrinkage", "linear_probe_score", "logme"]


# --------------------------------------------------------------------------- inputs
def _one_blas_thread(fn):
    """Run ``fn`` with the linear-algebra libraries on one thread. These problems are small
    (hundreds of images): threads only wait for each other, and on a busy 2-core machine
    that made a linear probe 50 times slower (measured: 8 s against 0.16 s for one fit)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # comes with scikit-learn; without it, run as is
            return fn(*args, **kwargs)
        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper


def _array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as err:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}") from err


def _labels(labels, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as class indices 0..C-1 (in sorted order of the values) and the values, or a
    ValueError that names what is wrong."""
    y = _array(labels, "labels")
    if y.shape != (n,):
        raise ValueError(f"labels must have shape [{n}] to match {what}, got shape {tuple(y.shape)}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise ValueError(f"labels must be whole numbers (class indices), got {bad}")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise ValueError(f"labels must be whole numbers (class indices), got dtype {y.dtype}")
    values, index = np.unique(y, return_inverse=True)
    if len(values) < 2:
        raise ValueError(f"labels hold a single class ({values[0] if len(values) else 'none'}): a transferability "
                         "score tells classes apart, so it needs at least two")
    return index.reshape(-1), values


def _features(features, name: str = "features") -> np.ndarray:
    f = _array(features, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must have shape [N, D] (one row per image), got shape {tuple(f.shape)}")
    if f.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numbers, got dtype {f.dtype}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        row = int(np.nonzero(~np.isfinite(f).all(1))[0][0])
        raise ValueError(f"{name} has a value that is not finite in row {row}")
    return f


def _checked(features, labels) -> tuple[np.ndarray, np.ndarray]:
    f = _features(features)
    y, _ = _labels(labels, len(f), f"features {tuple(f.shape)}")
    return f, y


# --------------------------------------------------------------------------- LogME
@_one_blas_thread
def logme(features, labels, max_iter: int = 1000, tol: float = 1e-7) -> float:
    """LogME (You et al., 2021): the log evidence per image of a Bayesian linear model from the features to the labels.

    For each class ``c`` the target is the indicator ``y_c = [labels == c]``, modelled as
    ``y_c = F w + noise`` with a prior ``w ~ N(0, I / alpha)`` and noise precision ``beta``. The
    log evidence, the weights integrated out, is

        N/2 log beta + k/2 log alpha - 1/2 Σ_i log(alpha + beta σ_i)
        - beta/2 ||y_c - F m||² - alpha/2 ||m||² - N/2 log 2π

    with ``m`` the posterior mean of ``w`` and ``σ_i`` the ``k`` non-zero eigenvalues of ``FᵀF``
    (``k`` is the rank of ``F``: with more features than images it is N, not D). It is maximised
    over ``alpha`` and ``beta`` by MacKay's fixed-point iteration, written on the singular values
    of ``F`` so that each step costs O(min(N, D)). The score is the mean over classes of the
    maximal log evidence divided by N. It is unchanged when the features are rotated or all
    multiplied by one number; it is measured on the same images it fits, so compare it only
    across sources on the same target images.
    """
    f, y = _checked(features, labels)
    n = len(f)
    if not np.any(f):
        raise ValueError("features are all zero: there is nothing to score")
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    k = int((s > s[0] * max(f.shape) * np.finfo(np.float64).eps).sum())   # the rank of F
    u, sigma = u[:, :k], (s[:k] ** 2)[:, None]              # u [N, k]; eigenvalues of FᵀF, [k, 1]
    targets = np.eye(y.max() + 1)[y]                         # one-hot [N, C]
    x = u.T @ targets                                        # the targets along each direction, [k, C]
    x2 = x**2
    # the targets' energy outside the features' span (computed directly: as a difference of
    # sums it would carry rounding noise that swamps a tiny residual when N <= D)
    outside = np.zeros(targets.shape[1]) if k == n else ((targets - u @ x) ** 2).sum(0)
    tiny = np.finfo(np.float64).tiny

    def statistics(t):
        """gamma (the effective number of parameters), ||m||², ||y - F m||² at alpha / beta = t."""
        share = sigma / (sigma + t)                          # how much of each direction the fit keeps
        left = t / (sigma + t)                               # 1 - share, without cancellation
        gamma = share.sum(0)
        rest = (n - k) + left.sum(0)                         # n - gamma, accurate when gamma is close to n
        m2 = (share * x2 / (sigma + t)).sum(0)
        res2 = (x2 * left**2).sum(0) + outside
        return gamma, rest, np.maximum(m2, tiny), np.maximum(res2, tiny)

    # alpha / beta beyond these bounds changes the evidence by less than working precision:
    # the weights are 0 (features of no use), or the noise is 0 (labels fitted exactly)
    low, high = sigma.min() * tol**2, sigma.max() / tol**2
    t = np.full(targets.shape[1], sigma.mean())  # a start that scales with the features
    for _ in range(max_iter):
        gamma, rest, m2, res2 = statistics(t)
        t_new = np.clip((gamma / m2) / (rest / res2), low, high)   # alpha / beta after MacKay's updates
        done = (np.abs(t_new - t) <= tol * t) | (t_new <= low) | (t_new >= high)
        t = t_new
        if done.all():
            break
    # The evidence at alpha / beta = t, with beta at its best for that ratio: N / (||y - F m||² +
    # t ||m||²). At a fixed point that is MacKay's beta; where the maximum lies at t -> 0 (no
    # noise: more features than images can fit the labels exactly), the iteration stops at a
    # bound and only this beta keeps the evidence right.
    fit = (x2 * (t / (sigma + t))).sum(0) + outside          # ||y - F m||² + t ||m||², without cancellation
    beta = n / fit
    alpha = t * beta
    gamma, rest, m2, res2 = statistics(t)
    evidence = (k / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum(0)
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi))
    return float(np.mean(evidence / n))


# --------------------------------------------------------------------------- LEEP
@_one_blas_thread
def leep(source_probs, labels, logits: bool = False) -> float:
    """LEEP (Nguyen et al., 2020): how well the source classifier's outputs, mapped to the target labels, predict them.

    ``source_probs`` ``[N, Z]`` holds the source model's softmax outputs ``θ(x)`` over its own
    ``Z`` classes for the N target images (``logits=True`` applies the softmax here). With the
    empirical joint ``P(y, z) = 1/N Σ_{i: y_i = y} θ(x_i)_z`` and ``P(y | z) = P(y, z) / P(z)``,
    LEEP is ``1/N Σ_i log Σ_z P(y_i | z) θ(x_i)_z``: the mean log-likelihood of the "expected
    empirical predictor". It is at most 0 (reached when the source classes name the target
    labels exactly) and equals minus the entropy of the label frequencies when the outputs say
    nothing about the labels (for example, every row the same).
    """
    p = _features(source_probs, "source_probs")
    y, _ = _labels(labels, len(p), f"source_probs {tuple(p.shape)}")
    if logits:
        p = np.exp(p - p.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, rtol=0, atol=1e-4):
        row = int(np.nonzero((p < 0).any(1) | ~np.isclose(p.sum(1), 1.0, rtol=0, atol=1e-4))[0][0])
        raise ValueError(f"source_probs must be probabilities (rows of non-negative numbers summing to 1); row {row} "
                         f"sums to {p[row].sum():.4g} with minimum {p[row].min():.4g}. For logits pass logits=True.")
    n = len(p)
    joint = np.zeros((y.max() + 1, p.shape[1]))              # P(y, z), [C, Z]
    np.add.at(joint, y, p / n)
    marginal = joint.sum(0)                                  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)   # P(y | z)
    eep = (p * conditional[y]).sum(1)                        # Σ_z P(y_i | z) θ(x_i)_z, one per image
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))


# --------------------------------------------------------------------------- H-score
@_one_blas_thread
def ledoit_wolf_shrinkage(features) -> float:
    """The Ledoit-Wolf shrinkage (between 0 and 1) of the features' covariance towards a multiple of the identity.

    Ledoit & Wolf (2004): the weight ``a`` that makes ``(1 - a) S + a (tr S / D) I`` the best
    estimate of the covariance in squared error, estimated from the data; close to 1 when
    there are many more features than images. Computed from the N x N Gram matrix, so it is
    cheap for wide features (the same number as ``sklearn.covariance.ledoit_wolf_shrinkage``).
    """
    f = _features(features)
    f = f - f.mean(0)
    n, d = f.shape
    gram = f @ f.T
    row_norms2 = np.diag(gram)                               # ||f_i||²
    mu = row_norms2.sum() / (n * d)                          # tr(S) / D, with S = FᵀF / N
    frob2 = (gram**2).sum() / n**2                           # ||S||²_F
    delta = (frob2 - 2 * mu * row_norms2.sum() / n + d * mu**2) / d   # ||S - mu I||²_F / D
    beta = (np.sum(row_norms2**2) / n - frob2) / (d * n)   # the estimated error of S, same units
    beta = min(beta, delta)
    return 0.0 if beta <= 0 else float(beta / delta)


@_one_blas_thread
def hscore(features, labels, shrinkage="auto") -> float:
    """H-score (Bao et al., 2019), regularised: ``tr(cov_a(f)⁻¹ (1 - a) cov(E[f | y]))``, higher when the class means spread out.

    ``cov(E[f | y])`` is the covariance of the class means (each image's features replaced by
    the mean of its class): the variance *between* classes. Dividing by the covariance of the
    features makes the score the sum, over directions, of the fraction of the variance that
    lies between classes, so it lies between 0 (no label information) and min(C - 1, D).
    With more features than images the plain covariance cannot be inverted; Ibrahim et al.
    (2022) shrink it, ``cov_a = (1 - a) cov + a (tr(cov) / D) I``, with the Ledoit-Wolf weight
    ``a`` (``shrinkage="auto"``, the default), and scale the between-class covariance by
    ``1 - a`` to match. ``shrinkage=0`` gives Bao et al.'s original score (a pseudo-inverse);
    a number in [0, 1] fixes ``a``. Covariances are divided by N. With far fewer images than
    features the shrunk score can still mislead (the weight ``a`` then decides much of it):
    check it against the other scores there.
    """
    f, y = _checked(features, labels)
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise ValueError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}")
        a = ledoit_wolf_shrinkage(f)
    else:
        a = float(shrinkage)
        if not 0 <= a <= 1:
            raise ValueError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}")
    n, d = f.shape
    f = f - f.mean(0)
    counts = np.bincount(y)
    means = np.zeros((len(counts), d))
    np.add.at(means, y, f)
    g = (means / counts[:, None])[y]                         # every row replaced by its class mean
    # The class means lie in the span of the rows of f, so the trace needs only the
    # eigenvectors V of cov(f) with non-zero eigenvalues: cov_a⁻¹ is diagonal there.
    _, s, vt = np.linalg.svd(f, full_matrices=False)
    eig = s**2 / n                                           # eigenvalues of cov(f)
    if not eig.any():
        raise ValueError("features are the same for every image (no variance): there is nothing to score")
    keep = eig > eig.max() * max(n, d) * np.finfo(np.float64).eps   # as a pseudo-inverse would
    between = ((g @ vt[keep].T) ** 2).sum(0) / n             # diag(Vᵀ cov(g) V)
    shrunk = (1 - a) * eig[keep] + a * eig.sum() / d         # eigenvalues of cov_a along V
    return float(((1 - a) * between / shrunk).sum())


# --------------------------------------------------------------------------- probes
def _folds(y: np.ndarray, folds):
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(y).min())
    if smallest < 2:
        raise ValueError(f"class {int(np.argmin(np.bincount(y)))} (in sorted order of the labels) has {smallest} "
                         "example: cross-validation needs at least 2 per class")
    if folds is None:
        folds = min(5, smallest)
    if isinstance(folds, int):
        if not 2 <= folds <= smallest:
            raise ValueError(f"folds must be between 2 and {smallest} (the size of the smallest class), got {folds}")
        return StratifiedKFold(n_splits=folds)
    return folds  # a scikit-learn splitter


@_one_blas_thread
def knn_score(features, labels, k: int = 1, folds=None) -> float:
    """The cross-validated accuracy of a k-nearest-neighbour classifier on the features (Euclidean distance).

    ``folds``: the number of stratified folds (default: 5, or the size of the smallest class
    if that is smaller; with ``folds`` = images per class each fold holds out one image per
    class, as in lesson 05), or any scikit-learn splitter. Folds are not shuffled, so the
    score is deterministic.
    """
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    f, y = _checked(features, labels)
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=k), f, y, cv=_folds(y, folds)).mean())


@_one_blas_thread
def linear_probe_score(features, labels, C: float = 0.1, folds=None, max_iter: int = 500) -> float:
    """The cross-validated accuracy of a linear probe: standardised features, L2-regularised logistic regression.

    ``C`` is the inverse regularisation strength of scikit-learn's ``LogisticRegression``;
    ``folds`` as for :func:`knn_score`. The standardisation is fitted on each fold's training
    part only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f, y = _checked(features, labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return float(cross_val_score(probe, f, y, cv=_folds(y, folds)).mean())
