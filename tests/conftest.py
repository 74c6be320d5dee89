import os

os.environ.setdefault("MPLBACKEND", "Agg")
# OpenMP threads that spin while they wait fight each other on a busy 2-core machine (tiny nets
# become many times slower); notebook kernels started by the tests inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

import xferlib as xl

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test writes to the user's caches or depends on a device variable."""
    monkeypatch.setenv("XFERLIB_CACHE", str(tmp_path_factory.mktemp("xfer-cache")))
    monkeypatch.delenv("XFERLIB_DEVICE", raising=False)


@pytest.fixture(scope="session")
def lite0():
    """The offline pretrained backbone at a small input size (built once per session)."""
    return xl.load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture
def tiny_images():
    """A tiny labelled image set: 3 classes told apart by colour, 8 images each, 32x32."""
    import numpy as np

    rng = np.random.default_rng(0)
    images, labels = [], []
    for c in range(3):
        for _ in range(8):
            img = rng.integers(0, 60, (32, 32, 3))
            img[..., c] += 150
            images.append(img.astype("uint8"))
            labels.append(c)
    return xl.data.ArrayImages(np.stack(images), labels, ["red", "green", "blue"], name="tiny")


@pytest.fixture(scope="session")
def website(tmp_path_factory):
    """The course website built once per session (website/build.py): ``(build module, site folder, facts)``."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("website_build", Path(__file__).resolve().parent.parent / "website" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = tmp_path_factory.mktemp("website") / "site"
    return build, out, build.build(out)
