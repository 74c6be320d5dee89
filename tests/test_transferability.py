"""Transferability scores: values worked out by hand or by an independent computation on tiny
cases, the invariances each score has, and the orderings they must give on a real target."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import xferlib as xl
from xferlib import transferability as tr


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- LEEP
def test_leep_is_zero_when_source_classes_name_the_target_labels():
    """One-hot outputs that map one-to-one onto the labels: P(y | z) = 1 for the matching pair, log 1 = 0."""
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    source_class = np.array([3, 0, 1])[labels]              # target label 0 is source class 3, and so on
    probs = np.eye(5)[source_class]                          # 5 source classes, one never predicted
    assert xl.leep(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_leep_of_uninformative_outputs_is_minus_the_label_entropy():
    """Every row the same: P(y | z) = n_y / N, so LEEP = mean log(n_y / N) = sum_y p_y log p_y."""
    labels = np.array([0, 0, 0, 1])
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert xl.leep(np.full((4, 6), 1 / 6), labels) == pytest.approx(expected, abs=1e-12)
    assert xl.leep(np.tile([0.7, 0.2, 0.1], (4, 1)), labels) == pytest.approx(expected, abs=1e-12)


def test_leep_on_a_case_worked_by_hand():
    # theta(x1) = (0.8, 0.2) with label 0, theta(x2) = (0.3, 0.7) with label 1
    # P(y, z): row y=0 (0.4, 0.1), row y=1 (0.15, 0.35); P(z) = (0.55, 0.45)
    eep1 = 0.8 * (0.4 / 0.55) + 0.2 * (0.1 / 0.45)
    eep2 = 0.3 * (0.15 / 0.55) + 0.7 * (0.35 / 0.45)
    probs = [[0.8, 0.2], [0.3, 0.7]]
    assert xl.leep(probs, [0, 1]) == pytest.approx((math.log(eep1) + math.log(eep2)) / 2, abs=1e-12)
    assert xl.leep(torch.tensor(probs), torch.tensor([5, 9])) == pytest.approx((math.log(eep1) + math.log(eep2)) / 2)


def test_leep_takes_logits_and_rejects_rows_that_are_not_probabilities():
    logits = rng().normal(size=(30, 4)) * 3
    labels = np.arange(30) % 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert xl.leep(logits, labels, logits=True) == pytest.approx(xl.leep(probs, labels), abs=1e-12)
    with pytest.raises(ValueError, match="row 0 sums to .*logits=True"):
        xl.leep(logits, labels)
    assert xl.leep(probs, labels) <= 0


# --------------------------------------------------------------------------- H-score
def test_hscore_on_cases_worked_by_hand():
    # 1-D: var(f) = 1.25, class means 0.5 and 2.5, so var(E[f|y]) = 1 and H = 1 / 1.25
    assert xl.hscore([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1], shrinkage=0) == pytest.approx(0.8)
    # 2-D: cov(f) = I, class means (-1, 0) and (1, 0), so cov(E[f|y]) = diag(1, 0) and H = 1
    f = np.array([[-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
    y = [0, 0, 1, 1]
    assert xl.hscore(f, y, shrinkage=0) == pytest.approx(1.0)
    # shrinkage 0.5: cov_a = 0.5 I + 0.5 (tr I / 2) I = I, times (1 - 0.5) diag(1, 0): H = 0.5
    assert xl.hscore(f, y, shrinkage=0.5) == pytest.approx(0.5)
    # Ledoit-Wolf finds nothing to shrink: the covariance already is a multiple of I
    assert tr.ledoit_wolf_shrinkage(f) == 0.0 and xl.hscore(f, y) == pytest.approx(1.0)


def test_hscore_without_label_information_is_near_zero_and_separated_classes_score_high():
    n, classes = 3000, 3
    labels = np.arange(n) % classes
    noise = rng(1).normal(size=(n, 4))
    # uninformative: about D (C - 1) / N = 0.003 from sampling noise alone
    assert 0 <= xl.hscore(noise, labels, shrinkage=0) < 0.02
    assert 0 <= xl.hscore(noise, labels) < 0.02
    centres = rng(2).normal(size=(classes, 4)) * 5
    separated = centres[labels] + 0.01 * noise
    # all the variance lies between classes along C - 1 = 2 directions: H reaches its bound
    assert xl.hscore(separated, labels, shrinkage=0) == pytest.approx(classes - 1, abs=1e-3)
    assert xl.hscore(separated, labels) > 1.5


def test_hscore_invariances():
    f = rng(3).normal(size=(200, 6)) + np.arange(200)[:, None] % 4
    y = np.arange(200) % 4
    plain = xl.hscore(f, y, shrinkage=0)
    mix = rng(4).normal(size=(6, 6))                          # any invertible linear map, and a shift
    assert xl.hscore(f @ mix + 3.0, y, shrinkage=0) == pytest.approx(plain, rel=1e-9)
    q, _ = np.linalg.qr(rng(5).normal(size=(6, 6)))
    shrunk = xl.hscore(f, y)
    assert xl.hscore(7.5 * f @ q - 2.0, y) == pytest.approx(shrunk, rel=1e-9)   # rotation, scale, shift
    assert 0 < shrunk < plain <= 3


def test_hscore_matches_a_direct_computation_with_scikit_learns_ledoit_wolf():
    from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage

    for n, d in [(40, 5), (30, 80)]:
        f = rng(n).normal(size=(n, d)) * rng(d).uniform(0.2, 3, d)
        y = np.arange(n) % 3
        f[:, 0] += 2 * y
        a = ledoit_wolf_shrinkage(f)
        assert tr.ledoit_wolf_shrinkage(f) == pytest.approx(a, rel=1e-10)
        cov_a = LedoitWolf().fit(f).covariance_               # (1 - a) cov + a (tr cov / d) I
        g = np.stack([f[y == c].mean(0) for c in y])
        cov_g = np.cov(g, rowvar=False, bias=True)
        direct = np.trace(np.linalg.solve(cov_a, (1 - a) * cov_g))
        assert xl.hscore(f, y) == pytest.approx(direct, rel=1e-8)


def test_plain_hscore_saturates_with_more_features_than_images():
    """With N - 1 <= D the features of any N images span every direction, so the unshrunk score
    is C - 1 whatever the features: why the regularised version is the default."""
    f, y = rng(6).normal(size=(20, 50)), np.arange(20) % 4
    assert xl.hscore(f, y, shrinkage=0) == pytest.approx(3.0, abs=1e-8)
    assert xl.hscore(f, y) < 1.0


# --------------------------------------------------------------------------- LogME
def _evidence_by_brute_force(features, labels):
    """The mean over classes of max_{alpha, beta} log N(y_c; 0, F Fᵀ / alpha + I / beta) / N: the
    marginal likelihood written as a Gaussian over the N targets, maximised by a grid over
    (log alpha, log beta) and then Nelder-Mead; the optimum is checked with scipy's own Gaussian."""
    n = len(features)
    lam, vec = np.linalg.eigh(features @ features.T)
    lam = np.clip(lam, 0, None)
    best_values, best_points = [], []
    for c in np.unique(labels):
        y = (labels == c).astype(float)
        z2 = (vec.T @ y) ** 2

        def log_evidence(p):
            var = lam * np.exp(-p[0]) + np.exp(-p[1])
            return -0.5 * (n * math.log(2 * math.pi) + np.log(var).sum() + (z2 / var).sum())

        grid = np.linspace(-25, 45, 71)
        start = max(((a, b) for a in grid for b in grid), key=log_evidence)
        res = optimize.minimize(lambda p: -log_evidence(p), start, method="Nelder-Mead",
                                options=dict(xatol=1e-10, fatol=1e-14, maxiter=20000))
        a, b = np.exp(res.x)
        direct = stats.multivariate_normal(np.zeros(n), features @ features.T / a + np.eye(n) / b).logpdf(y)
        assert direct == pytest.approx(-res.fun, rel=1e-6)
        best_values.append(max(-res.fun, log_evidence(start)))
        best_points.append(res.x)
    return float(np.mean(best_values) / n), np.array(best_points)


@pytest.mark.parametrize("n, d", [(12, 3), (6, 10), (15, 15)])
def test_logme_equals_the_maximal_evidence_found_by_brute_force(n, d):
    f = rng(n + d).normal(size=(n, d))
    labels = np.arange(n) % 3
    f[:, 0] += labels
    value, _ = _evidence_by_brute_force(f, labels)
    assert xl.logme(f, labels) == pytest.approx(value, abs=1e-8)


def test_logme_is_right_when_the_evidence_peaks_at_zero_noise():
    """More features than images, and informative ones: the best noise precision is infinite
    (the labels are fitted exactly), the case of a pretrained backbone on a few-shot target."""
    labels = np.arange(9) % 3
    f = rng(7).normal(size=(3, 30))[labels] * 3 + rng(8).normal(size=(9, 30))
    value, points = _evidence_by_brute_force(f, labels)
    assert (points[:, 1] > 20).all(), points                 # log beta at the top of the search: no noise
    assert xl.logme(f, labels) == pytest.approx(value, abs=1e-6)


def test_logme_prefers_features_that_predict_the_labels():
    labels = np.arange(300) % 4
    noise = rng(9).normal(size=(300, 16))
    informative = noise.copy()
    informative[:, :4] += 2 * np.eye(4)[labels]
    assert xl.logme(informative, labels) > xl.logme(noise, labels) + 0.1


def test_logme_invariances():
    labels = np.arange(60) % 3
    f = rng(10).normal(size=(60, 8))
    f[:, 1] += labels
    base = xl.logme(f, labels)
    q, _ = np.linalg.qr(rng(11).normal(size=(8, 8)))
    assert xl.logme(1e3 * f, labels) == pytest.approx(base, abs=1e-9)          # one scale for all features
    assert xl.logme(1e-3 * f @ q, labels) == pytest.approx(base, abs=1e-9)     # and a rotation
    assert xl.logme(f, labels + 10) == pytest.approx(base, abs=1e-12)          # label values are names only
    assert xl.logme(torch.tensor(f, dtype=torch.float64), torch.tensor(labels)) == pytest.approx(base, abs=1e-12)
    stretched = f * np.array([1, 30, 1, 1, 1, 1, 1, 1])        # one feature scaled alone: the prior is not invariant
    assert abs(xl.logme(stretched, labels) - base) > 1e-3


# --------------------------------------------------------------------------- probes
def test_knn_score_on_cases_worked_by_hand():
    f = np.array([[0.0], [1.0], [10.0], [11.0]])
    assert xl.knn_score(f, [0, 0, 1, 1], folds=2) == 1.0    # each held-out image's neighbour is its classmate
    # folds hold out (images 0, 1), then (2, 3): 0 -> 10 right, 1 -> 10 wrong, 10 -> 1 wrong, 11 -> 1 right
    assert xl.knn_score(f, [0, 1, 0, 1], folds=2) == 0.5


def test_probes_match_lesson_05s_recipe():
    """knn_score(f, y, folds=SHOTS) and linear_probe_score(f, y, folds=SHOTS) are the scores
    lesson 05 computes with its own probe_score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    shots = 5
    labels = np.repeat(np.arange(4), shots)
    f = rng(12).normal(size=(20, 10)) + labels[:, None] * 0.7
    folds = StratifiedKFold(n_splits=shots)
    knn = cross_val_score(KNeighborsClassifier(n_neighbors=1), f, labels, cv=folds).mean()
    linear = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)), f, labels, cv=folds).mean()
    assert xl.knn_score(torch.tensor(f), torch.tensor(labels), folds=shots) == pytest.approx(knn)
    assert xl.linear_probe_score(f, labels, folds=shots) == pytest.approx(linear)
    assert xl.knn_score(f, labels) == xl.knn_score(f, labels, folds=5)    # default: 5 folds, or fewer if a class is smaller


def test_linear_probe_separates_separable_features():
    labels = np.arange(40) % 2
    f = rng(13).normal(size=(40, 3))
    f[:, 0] += 6 * labels
    assert xl.linear_probe_score(f, labels) == 1.0
    assert xl.linear_probe_score(rng(14).normal(size=(40, 3)), labels) < 0.8


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("score", [xl.logme, xl.hscore, xl.knn_score, xl.linear_probe_score, xl.leep])
def test_bad_inputs_are_named(score):
    probs = np.full((6, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"single class \(7\)"):
        score(probs, [7] * 6)
    with pytest.raises(ValueError, match=r"labels must have shape \[6\].*got shape \(5,\)"):
        score(probs, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"shape \[N, D\].*got shape \(6,\)"):
        score(np.ones(6), [0, 1] * 3)
    bad = probs.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="not finite in row 4"):
        score(bad, [0, 1] * 3)
    with pytest.raises(ValueError, match="whole numbers"):
        score(probs, [0, 1.5, 0, 1, 0, 1])


def test_probes_need_two_examples_per_class_and_valid_folds():
    f = rng(15).normal(size=(7, 2))
    with pytest.raises(ValueError, match="has 1 example"):
        xl.knn_score(f, [0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(ValueError, match="folds must be between 2 and 3"):
        xl.linear_probe_score(f[:6], [0, 0, 0, 1, 1, 1], folds=4)


def test_degenerate_features_are_refused():
    with pytest.raises(ValueError, match="all zero"):
        xl.logme(np.zeros((6, 3)), [0, 1] * 3)
    with pytest.raises(ValueError, match="no variance"):
        xl.hscore(np.ones((6, 3)), [0, 1] * 3)
    with pytest.raises(ValueError, match="shrinkage must be"):
        xl.hscore(np.eye(4), [0, 0, 1, 1], shrinkage=1.5)


# --------------------------------------------------------------------------- a real target
@pytest.fixture(scope="module")
def photo_target():
    """Features of photo_regions (19 classes, 20 patches each, 64 px) from EfficientNet-Lite0 with
    ImageNet weights and with random weights, and the ImageNet head's logits."""
    torch.manual_seed(0)
    random_init = xl.load_backbone("efficientnet_lite0", pretrained=False, image_size=64)
    imagenet = xl.load_imagenet_classifier("efficientnet_lite0", image_size=64)
    data = xl.data.photo_regions("train", n_per_class=20, size=64).with_transform(imagenet.backbone.transform)
    pretrained, labels = xl.extract_features(imagenet.backbone, data, progress=False)
    random_feats, _ = xl.extract_features(random_init, data, progress=False)
    logits, _ = xl.predict(imagenet, data)
    return {"pretrained": pretrained, "random": random_feats, "labels": labels, "logits": logits}


@pytest.mark.parametrize("score", [xl.logme, xl.hscore, xl.knn_score, xl.linear_probe_score])
def test_pretrained_features_outscore_random_ones_on_a_real_target(photo_target, score):
    labels = photo_target["labels"]
    assert score(photo_target["pretrained"], labels) > score(photo_target["random"], labels)


def test_leep_of_the_imagenet_head_beats_the_same_outputs_shuffled(photo_target):
    """Shuffling the rows keeps the outputs but cuts their link to the images: an uninformative source."""
    logits, labels = photo_target["logits"], photo_target["labels"]
    shuffled = logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))]
    real, control = xl.leep(logits, labels, logits=True), xl.leep(shuffled, labels, logits=True)
    assert real > control + 0.2 and -math.log(19) <= control < 0

