import random

import numpy as np
import pytest
import torch

import xferlib as xl


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from xferlib import device as D

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert xl.pick_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert xl.pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert xl.pick_device() == torch.device("cpu")
    assert D.ENV_VAR == "XFERLIB_DEVICE"


@pytest.mark.parametrize("name", ["meta", "cpu:0x", "disk"])
def test_devices_that_do_not_compute_are_refused_by_name(monkeypatch, name):
    monkeypatch.setenv("XFERLIB_DEVICE", name)
    with pytest.raises(ValueError, match=f"{name!r}.*XFERLIB_DEVICE"):
        xl.pick_device()
    with pytest.raises(ValueError, match="meta.*argument"):
        xl.pick_device("meta")


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


def test_environment_report_shows_the_cache_and_clear_cache_empties_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XFERLIB_CACHE", str(tmp_path))
    entry = tmp_path / "features" / ("xl-features-" + "0" * 24 + ".pt")
    entry.parent.mkdir()
    entry.write_bytes(b"x" * 2**20)
    mine = tmp_path / "features" / "notes.pt"  # not a cache entry: never touched
    mine.write_bytes(b"keep me")
    report = xl.environment_report()
    assert report["cache_mib"] == 1.0 and "features" not in report["cache_dir"]
    assert xl.clear_cache() == 1
    assert not entry.exists() and mine.exists() and xl.environment_report()["cache_mib"] == 0.0
