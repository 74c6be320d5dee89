import math

import pytest
import torch
from torch import nn

import xferlib as xl
from xferlib import adaptation as ad


@pytest.mark.parametrize("lambd", [0.0, 0.5, 1.0, 3.0])
def test_grad_reverse_is_the_identity_going_forward(lambd):
    x = torch.randn(4, 5, requires_grad=True)
    y = ad.grad_reverse(x, lambd)
    assert torch.equal(y, x)
    assert y.shape == x.shape and y.requires_grad


@pytest.mark.parametrize("lambd", [0.0, 0.25, 1.0, 2.5])
def test_grad_reverse_multiplies_the_gradient_by_minus_lambda(lambd):
    torch.manual_seed(0)
    x = torch.randn(6, 3, requires_grad=True)
    weights = torch.randn(6, 3)
    (ad.grad_reverse(x, lambd) * weights).sum().backward()
    assert torch.allclose(x.grad, -lambd * weights)


def test_the_module_reverses_only_what_lies_below_it():
    torch.manual_seed(0)
    below, above = nn.Linear(3, 4), nn.Linear(4, 1)
    x = torch.randn(8, 3)

    def grads(model):
        below.zero_grad(set_to_none=True)
        above.zero_grad(set_to_none=True)
        model(x).sum().backward()
        return below.weight.grad.clone(), above.weight.grad.clone()

    plain_below, plain_above = grads(nn.Sequential(below, above))
    grl = ad.GradientReversal(0.7)
    rev_below, rev_above = grads(nn.Sequential(below, grl, above))
    assert torch.allclose(rev_above, plain_above)  # the layer above learns as usual
    assert torch.allclose(rev_below, -0.7 * plain_below)  # the layer below gets -lambda times its gradient
    grl.lambd = 0.0
    zero_below, _ = grads(nn.Sequential(below, grl, above))
    assert torch.count_nonzero(zero_below) == 0
    assert "lambd=0" in repr(grl)


def test_grad_reverse_refuses_bad_weights():
    with pytest.raises(ValueError, match="lambd"):
        ad.grad_reverse(torch.ones(2, requires_grad=True), -1.0)
    with pytest.raises(ValueError, match="lambd"):
        ad.grad_reverse(torch.ones(2, requires_grad=True), float("nan"))


def test_dann_lambda_schedule_endpoints_and_shape():
    assert ad.dann_lambda(0.0) == 0.0
    assert ad.dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert 0.99 < ad.dann_lambda(1.0) < 1.0
    assert ad.dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    values = [ad.dann_lambda(i / 100) for i in range(101)]
    assert all(b > a for a, b in zip(values, values[1:])), "strictly increasing"
    assert ad.dann_lambda(0.1, gamma=1.0) < ad.dann_lambda(0.1, gamma=10.0)


@pytest.mark.parametrize("bad", [-0.01, 1.01])
def test_dann_lambda_refuses_progress_outside_zero_one(bad):
    with pytest.raises(ValueError, match="progress"):
        ad.dann_lambda(bad)
    with pytest.raises(ValueError, match="gamma"):
        ad.dann_lambda(0.5, gamma=0)


def test_domain_classifier_gives_one_logit_and_no_reversal():
    head = ad.domain_classifier(16, hidden=8, layers=2, dropout=0.1)
    assert head(torch.randn(5, 16)).shape == (5, 1)
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == 3
    assert sum(isinstance(m, nn.Dropout) for m in head.modules()) == 2
    assert not any(isinstance(m, ad.GradientReversal) for m in head.modules())
    assert not any(isinstance(m, nn.Dropout) for m in ad.domain_classifier(4, dropout=0.0).modules())
    for bad in (dict(in_features=0), dict(in_features=4, layers=0), dict(in_features=4, dropout=1.0)):
        with pytest.raises(ValueError):
            ad.domain_classifier(**bad)


def test_an_adversarial_step_pushes_features_against_the_domain_classifier():
    torch.manual_seed(0)
    extractor, domain = nn.Linear(2, 2), ad.domain_classifier(2, hidden=4, dropout=0.0)
    x = torch.randn(16, 2)
    d = torch.cat([torch.zeros(8), torch.ones(8)])

    def domain_loss():
        return nn.functional.binary_cross_entropy_with_logits(domain(extractor(x)).squeeze(1), d)

    loss = nn.functional.binary_cross_entropy_with_logits(domain(ad.grad_reverse(extractor(x), 1.0)).squeeze(1), d)
    loss.backward()
    before = domain_loss().item()
    with torch.no_grad():  # a small step on the extractor only, along its (reversed) gradient
        for p in extractor.parameters():
            p -= 1e-2 * p.grad
    assert domain_loss().item() > before  # the extractor made the domain classifier's job harder


def test_mmd_is_small_for_one_distribution_and_large_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g)
    shifted = torch.randn(200, 5, generator=g) + 2.0
    same, different = ad.mmd2(a, b), ad.mmd2(a, shifted)
    assert abs(same) < 0.05 and different > 10 * abs(same)
    assert ad.mmd2(a.numpy(), shifted.numpy()) == pytest.approx(different)
    with pytest.raises(ValueError, match="features"):
        ad.mmd2(a, shifted[:, :3])


def test_proxy_a_distance_tells_separable_from_mixed_domains():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    far = torch.randn(200, 4, generator=g) + 5.0
    mixed, separable = ad.proxy_a_distance(a, b), ad.proxy_a_distance(a, far)
    assert separable["accuracy"] == 1.0 and separable["pad"] == pytest.approx(2.0)
    assert mixed["accuracy"] < 0.65 and mixed["pad"] < 0.6
    assert mixed["error"] == pytest.approx(1 - mixed["accuracy"])
    assert ad.proxy_a_distance(a, far, seed=1)["accuracy"] == 1.0


def test_adaptation_is_part_of_the_package():
    assert xl.adaptation is ad
    assert "adaptation" in xl.__all__
