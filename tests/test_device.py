import random

import numpy as np
import pytest
import torch

import xferlib as xl


def test_pick_device_defaults_to_best_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert xl.pick_device().type == expected


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("XFERLIB_DEVICE", "cpu")
    assert xl.pick_device() == torch.device("cpu")


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("XFERLIB_DEVICE", "not-a-device")
    assert xl.pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("XFERLIB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        xl.pick_device()


def test_bad_device_name_names_the_value(monkeypatch):
    monkeypatch.setenv("XFERLIB_DEVICE", "gpu-please")
    with pytest.raises(ValueError, match="gpu-please.*XFERLIB_DEVICE"):
        xl.pick_device()


def test_seed_everything_makes_runs_repeatable():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    xl.seed_everything(123)
    a = draw()
    xl.seed_everything(123)
    b = draw()
    xl.seed_everything(124)
    c = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert not torch.equal(a[2], c[2])


def test_deterministic_switch():
    try:
        xl.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        xl.seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_environment_report_describes_the_machine():
    report = xl.environment_report()
    assert report["torch"] == torch.__version__
    assert report["device"] == str(xl.pick_device())
    assert report["cpu_count"] >= 1 and report["torch_threads"] >= 1
    assert report["memory_gib"] is None or report["memory_gib"] > 0
