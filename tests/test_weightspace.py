import copy

import pytest
import torch
from torch import nn

import xferlib as xl


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def trained(seed: int) -> nn.Module:
    model = net(seed)
    model.train()
    model(torch.randn(5, 3, 8, 8))   # moves the BatchNorm statistics and num_batches_tracked
    return model


def test_interpolation_ends_are_the_two_models_exactly_and_the_middle_is_the_mean():
    a, b = trained(0), trained(1)
    sa, sb = a.state_dict(), b.state_dict()
    for alpha, expected in ((0, sa), (1, sb)):
        mixed = xl.interpolate_weights(a, b, alpha).state_dict()
        for key, value in mixed.items():
            want = expected[key] if value.is_floating_point() else sb[key]
            assert torch.equal(value, want), (alpha, key)
    half = xl.interpolate_weights(a, b, 0.5).state_dict()
    for key, value in half.items():
        if value.is_floating_point():
            assert torch.allclose(value, (sa[key] + sb[key]) / 2, atol=1e-7), key
        else:
            assert torch.equal(value, sb[key]), key   # integer buffers come from model_b


def test_interpolation_returns_a_new_model_and_leaves_both_untouched():
    a, b = trained(0), trained(1)
    before_a, before_b = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    mixed = xl.interpolate_weights(a, b, 0.3)
    assert mixed is not a and mixed is not b
    with torch.no_grad():
        mixed[0].weight.zero_()
    for model, before in ((a, before_a), (b, before_b)):
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_interpolation_refuses_models_that_differ_naming_the_key():
    a = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(2, 4\) in model_a but \(5, 4\)"):
        xl.interpolate_weights(a, nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5)), 0.5)
    with pytest.raises(ValueError, match="model_b has no state_dict entry '1.weight'"):
        xl.interpolate_weights(a, nn.Sequential(nn.Linear(3, 4)), 0.5)
    with pytest.raises(ValueError, match="model_a has no state_dict entry '2.weight'"):
        xl.interpolate_weights(a, nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2)), 0.5)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        xl.interpolate_weights(a, a, float("nan"))


def test_weight_distance_of_a_model_with_itself_is_zero():
    a = trained(0)
    distances = xl.weight_distance(a, copy.deepcopy(a))
    assert list(distances) == [name for name, _ in a.named_parameters()]
    assert set(distances.values()) == {0.0}


def test_weight_distance_is_relative_and_groups_by_name_prefix():
    a = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[0].weight.mul_(1.5)                       # moved by half its own norm
        a[1].bias.zero_()
        b[1].bias.fill_(0.1)                        # moved away from zero
    d = xl.weight_distance(a, b)
    assert d["0.weight"] == pytest.approx(0.5) and d["0.bias"] == 0 and d["1.bias"] == float("inf")
    grouped = xl.weight_distance(a, b, level=1)
    w0 = a[0].weight.detach().double()
    assert list(grouped) == ["0", "1"]
    assert grouped["0"] == pytest.approx(float(0.5 * w0.norm() / torch.cat([w0.flatten(), a[0].bias.detach().double()]).norm()))
    with pytest.raises(ValueError, match="model_b has no parameter '1.weight'"):
        xl.weight_distance(a, nn.Sequential(nn.Linear(2, 2)))


def test_l2sp_is_zero_at_the_reference_and_pulls_towards_it():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))   # "0" pretrained, "1" the new head
    start = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith("0.")}
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
    assert xl.l2sp_penalty(model, start).item() == 0.0

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    penalty = xl.l2sp_penalty(model, start, alpha=0.1, beta=0.01)
    penalty.backward()
    for name, p in model.named_parameters():
        if name in start:      # gradient alpha * (w - w0): a step against it moves towards w0
            assert torch.allclose(p.grad, 0.1 * (p.detach() - start[name]))
            stepped = p.detach() - 1.0 * p.grad
            assert (stepped - start[name]).norm() < (p.detach() - start[name]).norm()
        else:                  # the new head: plain weight decay, beta * w
            assert torch.allclose(p.grad, 0.01 * p.detach())
    expected = 0.05 * sum((p.detach() - start[n]).square().sum() for n, p in model.named_parameters() if n in start) \
        + 0.005 * sum(p.detach().square().sum() for n, p in model.named_parameters() if n not in start)
    assert penalty.item() == pytest.approx(expected.item())


def test_l2sp_skips_frozen_parameters_and_catches_a_name_mismatch():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    start = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith("0.")}
    xl.freeze(model[0])
    with torch.no_grad():
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(1.0)
    assert xl.l2sp_penalty(model, start, beta=2.0).item() == pytest.approx(8.0)  # 2/2 * (6 + 2)
    with pytest.raises(ValueError, match="'backbone.0.weight', the model's like '0.weight'"):
        xl.l2sp_penalty(model, {"backbone." + k: v for k, v in start.items()})
