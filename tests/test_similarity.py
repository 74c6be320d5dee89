import numpy as np
import pytest
import torch

import xferlib as xl


def activations(n=500, p=20, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed)) @ torch.randn(p, p, generator=torch.Generator().manual_seed(seed + 100))


def test_a_representation_is_identical_to_itself():
    x = activations()
    assert xl.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_ignores_rotations_rescaling_and_shifts():
    x = activations()
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    x64 = x.double()
    assert xl.linear_cka(x64, x64 @ q) == pytest.approx(1.0, abs=1e-10)     # orthogonal transform
    assert xl.linear_cka(x, 3.7 * x) == pytest.approx(1.0, abs=1e-10)       # isotropic scaling
    assert xl.linear_cka(x, x + 5.0) == pytest.approx(1.0, abs=1e-10)       # columns are centred


def test_cka_is_not_blind_to_a_non_uniform_stretch():
    x = activations()
    stretch = torch.ones(20)
    stretch[:3] = 20.0
    assert xl.linear_cka(x, x * stretch) < 0.95


def test_independent_representations_score_near_zero():
    assert xl.linear_cka(activations(n=5000, p=10, seed=1), activations(n=5000, p=10, seed=2)) < 0.02


def test_cka_is_symmetric_and_accepts_numpy():
    x, y = activations(seed=3), activations(seed=4)[:, :7]
    assert xl.linear_cka(x, y) == pytest.approx(xl.linear_cka(y.numpy(), x.numpy()), rel=1e-12)


def test_wide_activations_give_the_same_answer_as_tall_ones():
    """Feature maps [n, C, H, W] are flattened; with more features than inputs the Gram form is used."""
    gen = torch.Generator().manual_seed(6)
    maps = torch.randn(30, 4, 5, 5, generator=gen)                       # 100 features > 2 * 30 inputs
    other = maps + 0.5 * torch.randn(30, 4, 5, 5, generator=gen)
    x, y = maps.reshape(30, -1).double(), other.reshape(30, -1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    by_features = float((y.T @ x).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm()))
    assert xl.linear_cka(maps, other) == pytest.approx(by_features, rel=1e-10)
    assert 0 < by_features < 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="x has 10, y has 9"):
        xl.linear_cka(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(ValueError, match="no variance"):
        xl.linear_cka(torch.ones(10, 3), torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"shape \[n, features\]"):
        xl.linear_cka(np.arange(5.0), np.arange(5.0))
