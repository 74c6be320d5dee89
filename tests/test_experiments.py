"""xl.compare and xl.claim: the interval keeps its promise on synthetic data, claims fail loudly."""

import numpy as np
import pytest

import xferlib as xl


def paired(rng, n, shift, seed_sd=0.05, noise_sd=0.02, trials=1):
    """``trials`` experiments of ``n`` seeds: a per-seed effect shared by both contenders
    (the data split), independent noise, and a true difference ``shift``."""
    base = rng.normal(0.7, seed_sd, (trials, n))
    return base + shift + rng.normal(0, noise_sd, (trials, n)), base + rng.normal(0, noise_sd, (trials, n))


def test_the_sentence_and_the_numbers():
    c = xl.compare([0.81, 0.78, 0.84, 0.80, 0.83], [0.76, 0.75, 0.79, 0.77, 0.78], names=("fine-tuning", "feature extraction"))
    assert c.n == 5 and c.mean == pytest.approx(0.042) and c.low < c.mean < c.high
    assert c.low == pytest.approx(0.042 - 2.7764 * np.std([0.05, 0.03, 0.05, 0.03, 0.05], ddof=1) / np.sqrt(5), abs=1e-4)
    assert str(c) == "fine-tuning − feature extraction: +4.2 points, 95 % CI [+2.8, +5.6], 5 seeds"
    raw = xl.compare([10.0, 12.0, 11.0], [9.0, 9.5, 9.0])
    assert not raw.percent and str(raw).startswith("a − b: +1.83,")


def test_mean_interval_is_the_one_sample_t_interval_as_text():
    values = [0.70, 0.74, 0.72, 0.78]
    half = 3.1824 * np.std(values, ddof=1) / 2  # t(0.975, 3 degrees of freedom) * sd / sqrt(4)
    assert xl.mean_interval(values) == f"0.735 ± {half:.3f}"
    assert xl.mean_interval(dict(enumerate(values)), digits=2) == f"{np.mean(values):.2f} ± {half:.2f}"
    with pytest.raises(ValueError, match="at least 2"):
        xl.mean_interval([0.7])


def test_pairs_by_seed_when_given_dicts():
    a = {0: 0.9, 1: 0.8, 2: 0.85}
    b = {2: 0.80, 0: 0.85, 1: 0.75}
    assert xl.compare(a, b).differences == pytest.approx((0.05, 0.05, 0.05))
    with pytest.raises(ValueError, match=r"different seeds: \[3\]"):
        xl.compare({**a, 3: 0.7}, b)


@pytest.mark.parametrize("a, b, message", [
    ([0.8], [0.7], "at least 2 seeds"),
    ([0.8, 0.7], [0.7], "one value per seed"),
    ([0.8, float("nan")], [0.7, 0.7], "NaN"),
])
def test_bad_input_is_named(a, b, message):
    with pytest.raises(ValueError, match=message):
        xl.compare(a, b)


def test_no_true_difference_is_found_about_five_percent_of_the_time():
    rng = np.random.default_rng(0)
    a, b = paired(rng, n=5, shift=0.0, trials=4000)
    found = np.mean([xl.compare(x, y).excludes_zero for x, y in zip(a, b)])
    print(f"false positives at n=5: {found:.3f}")
    assert 0.035 < found < 0.065


def test_a_clear_difference_is_almost_always_found():
    rng = np.random.default_rng(1)
    a, b = paired(rng, n=5, shift=0.05, noise_sd=0.01, trials=1000)  # a 5-point gain, seed-to-seed noise of 1.4 points
    found = np.mean([xl.compare(x, y).holds("greater") for x, y in zip(a, b)])
    print(f"power at n=5 for a 5-point gain: {found:.3f}")
    assert found > 0.97


def test_a_percentile_bootstrap_would_be_too_narrow_at_five_seeds():
    """Why the t interval: with five seeds a bootstrap interval misses its 95 %."""
    rng = np.random.default_rng(2)
    a, b = paired(rng, n=5, shift=0.0, trials=2000)
    d = a - b
    picks = rng.integers(0, 5, (2000, 1000, 5))
    means = np.take_along_axis(d[:, None, :].repeat(1000, axis=1), picks, axis=2).mean(axis=2)
    low, high = np.percentile(means, [2.5, 97.5], axis=1)
    bootstrap = np.mean((low > 0) | (high < 0))
    print(f"bootstrap false positives at n=5: {bootstrap:.3f}")
    assert bootstrap > 0.08


def test_claim_holds_fails_and_reports_in_smoke_mode(capsys):
    better = xl.compare([0.80, 0.82, 0.81, 0.83], [0.70, 0.71, 0.69, 0.72], names=("transfer", "scratch"))
    assert xl.claim("transfer beats scratch", better) is better
    assert "✔ holds: transfer beats scratch (transfer − scratch: +11.0 points" in capsys.readouterr().out
    xl.claim("scratch loses", better.__class__(-0.1, -0.12, -0.08, 4), direction="less")
    noise = xl.compare([0.80, 0.70, 0.78, 0.72], [0.75, 0.76, 0.74, 0.73], names=("fine-tuning", "feature extraction"))
    with pytest.raises(AssertionError, match=r"Not supported: 'fine-tuning wins'.*CI \[-.*no difference detectable"):
        xl.claim("fine-tuning wins", noise)
    capsys.readouterr()
    xl.claim("fine-tuning wins", noise, smoke=True)
    assert "smoke run, not checked: fine-tuning wins" in capsys.readouterr().out
    with pytest.raises(ValueError, match="direction"):
        xl.claim("sideways", better, direction="up")


def test_claim_neither_guards_a_no_difference_sentence(capsys):
    noise = xl.compare([0.80, 0.70, 0.78, 0.72], [0.75, 0.76, 0.74, 0.73], names=("fine-tuning", "feature extraction"))
    xl.claim("fine-tuning and feature extraction tie here", noise, direction="neither")
    assert "✔ no difference detectable: fine-tuning and feature extraction tie here" in capsys.readouterr().out
    better = xl.compare([0.80, 0.82, 0.81, 0.83], [0.70, 0.71, 0.69, 0.72], names=("transfer", "scratch"))
    with pytest.raises(xl.ClaimFailed, match=r"'no difference detectable'.*\+11\.0 points.*Name the winner"):
        xl.claim("transfer and scratch tie", better, direction="neither")
    xl.claim("transfer and scratch tie", better, direction="neither", smoke=True)
    assert "smoke run, not checked" in capsys.readouterr().out
