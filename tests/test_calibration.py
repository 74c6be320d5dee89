import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import xferlib as xl
from xferlib import calibration as cal


def two_class(confidence: float, n: int, right: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` predictions of class 0 with top-class probability ``confidence``, ``right`` of them correct."""
    probs = np.tile([confidence, 1 - confidence], (n, 1))
    labels = np.array([0] * right + [1] * (n - right))
    return probs, labels


def test_a_perfectly_calibrated_toy_has_zero_ece():
    parts = [two_class(0.6, 10, 6), two_class(0.8, 20, 16), two_class(1.0, 5, 5)]
    probs, labels = np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
    assert xl.expected_calibration_error(probs, labels) == pytest.approx(0, abs=1e-12)
    table = xl.reliability(probs, labels, bins=10)
    used = table["count"] > 0
    assert table["count"].sum() == 35 and used.sum() == 3
    assert np.allclose(table["accuracy"][used], table["confidence"][used])


def test_always_certain_and_right_70_percent_gives_ece_0_3():
    probs, labels = two_class(1.0, 100, 70)
    assert xl.expected_calibration_error(probs, labels) == pytest.approx(0.3, abs=1e-12)
    assert xl.expected_calibration_error(torch.tensor(probs), torch.tensor(labels), bins=1) == pytest.approx(0.3)


def test_ece_is_the_count_weighted_gap_and_bins_are_closed_on_the_right():
    # 0.5 lies in the first of two bins (0, 0.5]: right 1 of 4 there, right 4 of 4 at 0.9
    probs = np.array([[0.5, 0.5]] * 4 + [[0.9, 0.1]] * 4)
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    table = xl.reliability(probs, labels, bins=2)
    assert table["count"].tolist() == [4, 4]
    assert np.allclose(table["accuracy"], [0.25, 1.0]) and np.allclose(table["confidence"], [0.5, 0.9])
    assert xl.expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.5 * 0.25 + 0.5 * 0.1)


def test_logits_and_probabilities_give_the_same_ece():
    torch.manual_seed(0)
    logits, labels = 3 * torch.randn(200, 4), torch.randint(0, 4, (200,))
    from_logits = xl.expected_calibration_error(logits, labels)
    assert from_logits == pytest.approx(xl.expected_calibration_error(logits.softmax(1), labels))
    assert from_logits == pytest.approx(xl.expected_calibration_error(logits.numpy(), labels.numpy(), logits=True))


def test_empty_bins_are_nan_with_count_zero():
    table = xl.reliability(*two_class(0.95, 3, 3), bins=5)
    assert table["count"].tolist() == [0, 0, 0, 0, 3] and len(table["edges"]) == 6
    assert np.isnan(table["accuracy"][:4]).all() and table["accuracy"][4] == 1


@pytest.mark.parametrize("t_true", [0.5, 2.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_made_the_logits(t_true):
    gen = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(20000, 5, generator=gen)
    labels = torch.multinomial(z.softmax(1), 1, generator=gen).squeeze(1)  # the labels follow softmax(z)
    fitted = xl.fit_temperature(t_true * z, labels)
    assert fitted == pytest.approx(t_true, rel=0.05)
    assert xl.fit_temperature(t_true * z, labels) == fitted  # deterministic


def test_temperature_scaling_lowers_ece_and_keeps_accuracy():
    gen = torch.Generator().manual_seed(2)
    z = 2 * torch.randn(5000, 5, generator=gen)
    labels = torch.multinomial(z.softmax(1), 1, generator=gen).squeeze(1)
    overconfident = 3 * z
    t = xl.fit_temperature(overconfident[:2500], labels[:2500])   # fitted on "validation"
    scaled = xl.apply_temperature(overconfident[2500:], t)        # judged on "test"
    before = xl.expected_calibration_error(overconfident[2500:], labels[2500:])
    assert xl.expected_calibration_error(scaled, labels[2500:]) < before / 3
    assert torch.equal(scaled.argmax(1), overconfident[2500:].argmax(1))


def test_temperature_one_leaves_probabilities_unchanged():
    logits = torch.randn(6, 3)
    assert torch.allclose(xl.apply_temperature(logits, 1.0), logits.softmax(1))
    as_numpy = xl.apply_temperature(logits.numpy(), 1)
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, logits.softmax(1).numpy())
    with pytest.raises(ValueError, match="temperature must be"):
        xl.apply_temperature(logits, 0)


def test_a_fit_at_the_edge_of_the_search_warns():
    logits = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])   # all right: sharper is always better
    with pytest.warns(UserWarning, match="edge of the search"):
        assert xl.fit_temperature(logits, [0, 1]) == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.full((4, 3), 1 / 3), [0, 1, 2], r"labels must have shape \[4\]"),
        (np.full((3, 3), 1 / 3), [0, 1, 3], "label 3 at index 2"),
        (np.full((3, 3), 1 / 3), [0, -1, 2], "label -1 at index 1"),
        (np.full((3, 3), 1 / 3), [0, 1.5, 2], "whole numbers"),
        (np.full((3, 3), 0.3), [0, 1, 2], "row 0 sums to 0.9"),
        (np.ones(3), [0, 1, 2], r"shape \[N, C\]"),
        (np.array([[0.5, np.nan]]), [0], "not finite in row 0"),
    ],
)
def test_bad_inputs_are_named(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        xl.expected_calibration_error(scores, labels)


def test_fit_temperature_refuses_probabilities():
    with pytest.raises(ValueError, match="needs logits"):
        xl.fit_temperature(np.array([[0.7, 0.3], [0.2, 0.8]]), [0, 1])


def test_reliability_diagram_is_labelled_and_readable_without_colour():
    import matplotlib.pyplot as plt

    probs, labels = two_class(1.0, 100, 70)
    fig = xl.plot_reliability(probs, labels, bins=10)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("confidence") and ax.get_ylabel() == "accuracy"
    assert "ECE 0.300" in ax.get_title()
    assert ax.lines[0].get_linestyle() == "--"          # the diagonal
    assert any(p.get_hatch() for p in ax.patches)        # the gap is hatched, not only coloured
    assert len(ax.get_legend().get_texts()) == 3
    fig2, (left, right) = plt.subplots(1, 2)
    assert xl.plot_reliability(probs, labels, ax=right, title="after") is fig2 and right.get_title().startswith("after")
    plt.close("all")


def test_module_lists_its_public_names():
    assert sorted(cal.__all__) == sorted(n for n in dir(cal) if not n.startswith("_") and callable(getattr(cal, n))
                                         and getattr(getattr(cal, n), "__module__", "") == cal.__name__)
