import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import xferlib as xl


class Counter:
    """Counts the forward passes of a model (a forward hook), to see whether work was redone."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.calls += 1


def test_extract_features_shapes_and_labels(lite0, tiny_images):
    data = tiny_images.with_transform(lite0.transform)
    feats, labels = xl.extract_features(lite0, data, batch_size=10, progress=False)
    assert feats.shape == (24, 1280) and feats.dtype == torch.float32
    assert labels.tolist() == tiny_images.labels.tolist()


def test_extraction_leaves_the_model_untouched(tiny_images):
    backbone = xl.load_backbone(pretrained=False, image_size=32)
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    xl.extract_features(backbone, tiny_images.with_transform(backbone.transform), progress=False)
    assert backbone.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_features_match_a_plain_inference_loop(lite0, tiny_images):
    data = tiny_images.with_transform(lite0.transform)
    feats, _ = xl.extract_features(lite0, data, batch_size=7, progress=False)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.inference_mode():
        expected = lite0.eval()(x.contiguous())
    assert torch.allclose(feats, expected, atol=1e-4)


def test_cache_is_reused_and_keyed_by_transform(lite0, tiny_images, tmp_path, monkeypatch):
    data = tiny_images.with_transform(lite0.transform)
    first, _ = xl.extract_features(lite0, data, cache=tmp_path, progress=False)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    counter = Counter(lite0)
    again, labels = xl.extract_features(lite0, data, cache=tmp_path, progress=False)
    counter.handle.remove()
    assert counter.calls == 0, "the backbone ran although the features were cached"
    assert torch.equal(first, again) and len(labels) == 24
    other = tiny_images.with_transform(xl.eval_transform(lite0, 48))
    xl.extract_features(lite0, other, cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_cache_key_changes_with_the_weights(tiny_images, tmp_path):
    a = xl.load_backbone(pretrained=False, image_size=32)
    data = tiny_images.with_transform(a.transform)
    xl.extract_features(a, data, cache=tmp_path, progress=False)
    with torch.no_grad():
        a.stages[0][0].weight.add_(1.0)
    xl.extract_features(a, data, cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_unreadable_cache_file_is_recomputed(lite0, tiny_images, tmp_path):
    data = tiny_images.with_transform(lite0.transform)
    first, _ = xl.extract_features(lite0, data, cache=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"garbage")
    again, _ = xl.extract_features(lite0, data, cache=tmp_path, progress=False)
    assert torch.allclose(first, again)


def test_default_cache_folder_comes_from_the_environment(lite0, tiny_images, tmp_path, monkeypatch):
    monkeypatch.setenv("XFERLIB_CACHE", str(tmp_path))
    xl.extract_features(lite0, tiny_images.with_transform(lite0.transform), cache=True, progress=False)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1


def test_uncacheable_dataset_asks_for_a_key(lite0, tiny_images, tmp_path):
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(3, 32, 32), 0

    with pytest.raises(TypeError, match="cache_key"):
        xl.extract_features(lite0, Plain(), cache=tmp_path)
    feats, _ = xl.extract_features(lite0, Plain(), cache=tmp_path, cache_key="zeros-v1", progress=False)
    assert feats.shape == (4, 1280)


def test_head_trained_on_cached_features_learns(lite0, tiny_images):
    data = tiny_images.with_transform(lite0.transform)
    feats, labels = xl.extract_features(lite0, data, progress=False)
    head = torch.nn.Linear(lite0.num_features, 3)
    history = xl.fit(head, xl.feature_dataset(feats, labels), epochs=20, lr=1e-2, progress=False, seed=0)
    assert history[-1]["train_accuracy"] == 1.0


def test_extraction_gives_each_submodule_its_own_mode_back(lite0, tiny_images):
    import copy

    model = copy.deepcopy(lite0).train()
    body = model.stages[0]
    body.eval()
    xl.extract_features(model, tiny_images.with_transform(lite0.transform))
    assert model.training and not body.training
    assert all(m.training for m in model.stages[-1].modules())


# --------------------------------------------------------------------------- honest cache keys
def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))


def arrays(transform=None):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    return xl.data.ArrayImages(images, [0, 1, 2] * 2, ["a", "b", "c"], transform=transform, name="arrays")


def test_two_lambda_transforms_get_their_own_features(tmp_path):
    net = tiny_net()
    as_is = arrays(T.Compose([T.ToTensor(), T.Lambda(lambda x: x)]))
    zeroed = arrays(T.Compose([T.ToTensor(), T.Lambda(lambda x: x * 0)]))
    a, _ = xl.extract_features(net, as_is, cache=tmp_path, progress=False)
    b, _ = xl.extract_features(net, zeroed, cache=tmp_path, progress=False)
    assert not torch.allclose(a, b), "the second transform was served the first one's features"
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_closure_value_is_part_of_the_key(tmp_path):
    def scaled(factor):
        return T.Compose([T.ToTensor(), T.Lambda(lambda x: x * factor)])

    net = tiny_net()
    a, _ = xl.extract_features(net, arrays(scaled(1.0)), cache=tmp_path, progress=False)
    b, _ = xl.extract_features(net, arrays(scaled(2.0)), cache=tmp_path, progress=False)
    assert not torch.allclose(a, b)


KEY_IN_A_FRESH_PROCESS = """
import numpy as np, xferlib as xl
from torchvision import transforms as T
def to_tensor(image):
    return T.functional.to_tensor(image) * 0.5
images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
print(xl.data.ArrayImages(images, [0, 1], ["a", "b"], transform=to_tensor).fingerprint())
"""


def test_a_plain_function_gets_the_same_key_in_every_process():
    """A function's repr holds its memory address; keyed by it, each run would add an entry."""
    keys = {subprocess.run([sys.executable, "-c", KEY_IN_A_FRESH_PROCESS], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(keys) == 1 and len(keys.pop().strip()) == 40


def test_a_transform_that_cannot_be_keyed_is_refused_before_the_work(tmp_path):
    class Opaque:
        __slots__ = ()

        def __call__(self, image):
            return T.functional.to_tensor(image)

    net = tiny_net()
    counter = Counter(net)
    with pytest.raises(TypeError, match="cannot be cached safely.*cache_key"):
        xl.extract_features(net, arrays(Opaque()), cache=tmp_path, progress=False)
    assert counter.calls == 0 and not list(tmp_path.iterdir())
    feats, _ = xl.extract_features(net, arrays(Opaque()), progress=False)  # without the cache: fine
    assert feats.shape == (6, 4)


def test_image_files_edited_in_place_are_not_served_stale(tmp_path):
    import os

    root = tmp_path / "images"
    for name, colour in [("a", (255, 0, 0)), ("b", (0, 0, 255))]:
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(root / name / "x.bmp")  # BMP: same size whatever the colour
    data = xl.image_folder(root, transform=T.ToTensor())
    net = tiny_net()
    before, _ = xl.extract_features(net, data, cache=tmp_path / "cache", progress=False)
    path = root / "a" / "x.bmp"
    stat = path.stat()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(path)  # same size on disk, new content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after, _ = xl.extract_features(net, xl.image_folder(root, transform=T.ToTensor()), cache=tmp_path / "cache", progress=False)
    assert not torch.allclose(before, after)


def test_a_cache_folder_that_cannot_be_written_costs_the_cache_not_the_features(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    net = tiny_net()
    with pytest.warns(UserWarning, match="not-a-folder.*not kept"):
        feats, labels = xl.extract_features(net, arrays(T.ToTensor()), cache=blocked, progress=False)
    assert feats.shape == (6, 4) and labels.tolist() == [0, 1, 2] * 2


def test_the_cache_keeps_under_its_size_limit(tmp_path, monkeypatch):
    net = tiny_net()
    monkeypatch.setenv("XFERLIB_CACHE_LIMIT_MB", "0.0015")  # about 1.5 KiB: room for one small entry
    for k in range(3):
        xl.extract_features(net, arrays(T.Compose([T.ToTensor(), T.Lambda(lambda x, k=k: x + k)])), cache=tmp_path, progress=False)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1, "older entries beyond the limit are removed, the newest is kept"
    assert xl.storage.cache_size(tmp_path) == files[0].stat().st_size
    monkeypatch.setenv("XFERLIB_CACHE_LIMIT_MB", "lots")
    with warnings.catch_warnings(), pytest.raises(ValueError, match="XFERLIB_CACHE_LIMIT_MB='lots'"):
        xl.storage.cache_limit_bytes()


def test_a_crashed_write_leaves_no_orphan_behind_the_next_one(tmp_path):
    target = tmp_path / "model.pt"
    orphan = tmp_path / "model.pt.999999999.abc.tmp"  # a writer whose process is gone
    orphan.write_bytes(b"half")
    busy = tmp_path / f"model.pt.{__import__('os').getpid()}.abc.tmp"  # this process: left alone
    busy.write_bytes(b"busy")
    xl.storage.save_atomic({"x": torch.zeros(1)}, target)
    assert target.exists() and not orphan.exists() and busy.exists()


def test_write_atomic_replaces_a_file_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old report")
    xl.storage.write_atomic(target, "new report: 1.5x\n")
    assert target.read_text(encoding="utf-8") == "new report: 1.5x\n"
    xl.storage.write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(xl.storage.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        xl.storage.write_atomic(target, "half")
    assert target.read_bytes() == b"\x00bytes" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_model_trains_after_its_features_were_extracted(tiny_images):
    """The move to channels_last happens outside inference mode, so the weights stay trainable."""
    backbone = xl.load_backbone(pretrained=False, image_size=32)
    xl.extract_features(backbone, tiny_images.with_transform(backbone.transform), progress=False)
    loss = backbone(torch.zeros(2, 3, 32, 32)).sum()
    loss.backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)
