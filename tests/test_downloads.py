"""Tests for the online loaders (xl.data.flowers102, oxford_pets, imagenette, hymenoptera) and load_target.

torchvision downloads, checks the checksums and extracts; xferlib reads the layout it
leaves. Here fake torchvision classes, put in xferlib's own table ``data._TORCHVISION_SETS``,
write tiny layouts into tmp_path (or fail as torchvision does offline), so nothing is
downloaded. One test calls the real torchvision classes, on a machine without internet.
"""

from __future__ import annotations

import io
import socket
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xferlib import data

OFFLINE_NAMES = ("xl.data.photo_patches()", "xl.data.digits()", "xl.data.shapes()")


def _jpeg(path: Path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)


def _colour(i):
    return (40 * (i % 6), 255 - 30 * i, (70 * i) % 256)


def _assert_offline_message(err: Exception):
    message = str(err)
    assert "Are you offline?" in message
    assert all(name in message for name in OFFLINE_NAMES), message


# --------------------------------------------------------------------------- fakes of torchvision's classes
FLOWER_LABELS = [3, 1, 2, 3, 102, 2, 50, 1]  # 1-based, one per image, as in imagelabels.mat
FLOWER_SPLITS = {"trnid": [1, 2, 3], "valid": [5], "tstid": [4, 6, 7, 8]}


class FakeFlowers102:
    """Writes the layout torchvision's Flowers102 documents: root/flowers-102/{jpg/, *.mat}."""

    classes = [f"flower no. {i}" for i in range(102)]
    calls: list = []
    error: Exception | None = None

    def __init__(self, root, split="train", download=False):
        type(self).calls.append((Path(root), split, download))
        base = Path(root) / "flowers-102"
        if download and not (base / "setid.mat").exists():
            if self.error is not None:
                raise self.error
            from scipy.io import savemat

            for i in range(1, len(FLOWER_LABELS) + 1):
                _jpeg(base / "jpg" / f"image_{i:05d}.jpg", (12, 10), _colour(i))
            savemat(base / "imagelabels.mat", {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
            savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in FLOWER_SPLITS.items()})
        if not (base / "setid.mat").exists():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")


PETS = {  # image id: class id (1-based), as in the real annotation files
    "Abyssinian_1": 1,
    "Abyssinian_2": 1,
    "american_bulldog_10": 2,
    "american_bulldog_11": 2,
    "american_bulldog_12": 2,
    "american_pit_bull_terrier_3": 3,
    "american_pit_bull_terrier_4": 3,
}
PETS_TRAINVAL = ["Abyssinian_1", "american_bulldog_10", "american_bulldog_11"]  # no pit bull: names come from both files
PETS_TEST = ["Abyssinian_2", "american_pit_bull_terrier_4", "american_bulldog_12", "american_pit_bull_terrier_3"]


def _pet_line(image_id):
    class_id = PETS[image_id]
    species = 1 if image_id[0].isupper() else 2  # cats are capitalised
    return f"{image_id} {class_id} {species} {class_id}"


class FakeOxfordIIITPet:
    """Writes the layout torchvision's OxfordIIITPet documents: root/oxford-iiit-pet/{images,annotations}/."""

    calls: list = []
    error: Exception | None = None

    def __init__(self, root, split="trainval", download=False):
        type(self).calls.append((Path(root), split, download))
        base = Path(root) / "oxford-iiit-pet"
        if download and not base.exists():
            if self.error is not None:
                raise self.error
            for i, name in enumerate(PETS):
                _jpeg(base / "images" / f"{name}.jpg", (7, 9), _colour(i))
            (base / "annotations").mkdir()
            (base / "annotations" / "trainval.txt").write_text("\n".join(_pet_line(n) for n in PETS_TRAINVAL) + "\n")
            (base / "annotations" / "test.txt").write_text("\n".join(_pet_line(n) for n in PETS_TEST) + "\n\n")
        if not base.exists():
            raise RuntimeError("Dataset not found. You can use download=True to download it")


@pytest.fixture
def fakes(monkeypatch):
    for fake in (FakeFlowers102, FakeOxfordIIITPet):
        monkeypatch.setattr(fake, "calls", [])
        monkeypatch.setattr(fake, "error", None)
    monkeypatch.setitem(data._TORCHVISION_SETS, "flowers102", FakeFlowers102)
    monkeypatch.setitem(data._TORCHVISION_SETS, "oxford_pets", FakeOxfordIIITPet)
    return FakeFlowers102, FakeOxfordIIITPet


def _mean_colour(x):
    return x.mean(dim=(1, 2))


# --------------------------------------------------------------------------- layouts parsed
def test_flowers102_fake_layout_parses(fakes, tmp_path):
    root = tmp_path / "cache"
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ds = data.flowers102(root=root, split=split)
        ids = FLOWER_SPLITS[key]
        assert isinstance(ds, data.FileList) and ds.skipped == []
        assert ds.paths == [root / "flowers-102" / "jpg" / f"image_{i:05d}.jpg" for i in ids]
        assert ds.labels.tolist() == [FLOWER_LABELS[i - 1] - 1 for i in ids]
        assert ds.classes == FakeFlowers102.classes
        assert ds.name == f"flowers102/{split}"
        for j, i in enumerate(ids):
            x, y = ds[j]
            assert x.shape == (3, 10, 12) and y == FLOWER_LABELS[i - 1] - 1
            assert torch.allclose(_mean_colour(x), torch.tensor(_colour(i)) / 255, atol=0.05)
    assert FakeFlowers102.calls == [(root, s, True) for s in ("train", "val", "test")]
    assert len(data.flowers102(root=root, split="test", download=False)) == 4  # there now: no download needed
    with pytest.raises(ValueError, match="val"):
        data.flowers102(root=root, split="validation")


def test_oxford_pets_fake_layout_parses(fakes, tmp_path):
    root = tmp_path / "cache"
    order = list(PETS)
    for split, names in (("trainval", PETS_TRAINVAL), ("test", PETS_TEST)):
        ds = data.oxford_pets(root=root, split=split)
        assert isinstance(ds, data.FileList) and ds.skipped == []
        assert ds.paths == [root / "oxford-iiit-pet" / "images" / f"{n}.jpg" for n in names]
        assert ds.labels.tolist() == [PETS[n] - 1 for n in names]
        assert ds.classes == ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]  # the same for both splits
        for j, name in enumerate(names):
            x, y = ds[j]
            assert x.shape == (3, 9, 7) and y == PETS[name] - 1
            assert torch.allclose(_mean_colour(x), torch.tensor(_colour(order.index(name))) / 255, atol=0.05)
    assert [c[1:] for c in FakeOxfordIIITPet.calls] == [("trainval", True), ("test", True)]
    with pytest.raises(ValueError, match="trainval"):
        data.oxford_pets(root=root, split="train")


def test_default_root_is_in_the_cache_folder(fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("XFERLIB_CACHE", str(tmp_path / "xl"))
    ds = data.flowers102(split="val")
    assert ds.paths[0].parent == tmp_path / "xl" / "data" / "flowers-102" / "jpg"


def test_missing_images_are_left_out_and_named(fakes, tmp_path):
    data.flowers102(root=tmp_path)
    (tmp_path / "flowers-102" / "jpg" / "image_00002.jpg").unlink()  # an extraction cut short
    with pytest.warns(UserWarning, match=r"image_00002\.jpg") as record:
        ds = data.flowers102(root=tmp_path, download=False)
    assert "download=True" in str(record[0].message)
    assert [p.name for p in ds.paths] == ["image_00001.jpg", "image_00003.jpg"]
    assert [(Path(p).name, r) for p, r in ds.skipped] == [("image_00002.jpg", "file not found")]


def test_pets_missing_annotation_file_says_what_to_do(fakes, tmp_path):
    data.oxford_pets(root=tmp_path)
    (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").unlink()
    assert len(data.oxford_pets(root=tmp_path, download=False)) == len(PETS_TRAINVAL)
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*download=True"):
        data.oxford_pets(root=tmp_path, split="test", download=False)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("loader", [data.flowers102, data.oxford_pets])
@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),  # what urllib raises offline
        RuntimeError("File not found or corrupted."),  # what torchvision raises on a checksum mismatch
    ],
)
def test_offline_is_a_clear_download_error(fakes, tmp_path, monkeypatch, loader, error):
    for fake in fakes:
        monkeypatch.setattr(fake, "error", error)
    with pytest.raises(data.DownloadError) as info:
        loader(root=tmp_path)
    _assert_offline_message(info.value)
    assert str(tmp_path) in str(info.value)
    assert info.value.__cause__ is error
    assert issubclass(data.DownloadError, RuntimeError)


@pytest.mark.parametrize("loader", [data.flowers102, data.oxford_pets])
def test_without_download_and_nothing_there(fakes, tmp_path, loader):
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        loader(root=tmp_path / "empty", download=False)
    assert str(tmp_path / "empty") in str(info.value)
    assert not (tmp_path / "empty").exists()


def test_download_leaves_the_socket_timeout_as_it_was(fakes, tmp_path):
    before = socket.getdefaulttimeout()
    data.flowers102(root=tmp_path)
    assert socket.getdefaulttimeout() == before


def _internet_state(host="www.robots.ox.ac.uk") -> str:
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except socket.gaierror:
        return "offline"  # name lookup fails at once: the real call below fails fast too
    except OSError:
        return "slow"
    return "online"


@pytest.mark.parametrize("loader", [data.flowers102, data.oxford_pets])
def test_real_torchvision_offline_gives_our_download_error(tmp_path, loader):
    """The real torchvision classes, on a machine without internet: our DownloadError, fast."""
    state = _internet_state()
    if state == "online":
        pytest.skip("online: this would really download hundreds of megabytes")
    if state == "slow":
        pytest.skip("the network drops packets instead of refusing them: the real call would wait for timeouts (>20 s)")
    start = time.monotonic()
    with pytest.raises(data.DownloadError) as info:
        loader(root=tmp_path, download=True)
    assert time.monotonic() - start < 20
    _assert_offline_message(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


# --------------------------------------------------------------------------- imagenette, hymenoptera, load_target
class FakeImagenette:
    """Writes the layout torchvision's Imagenette leaves: root/imagenette2-160/{train,val}/<wnid>/*.JPEG."""

    wnid_names = {"n01440764": ("tench", "Tinca tinca"), "n03888257": ("parachute", "chute")}

    def __init__(self, root, split="train", download=False, size="160px"):
        assert size == "160px"
        base = Path(root) / "imagenette2-160"
        if download and not base.exists():
            for part, n in (("train", 10), ("val", 4)):
                for c, wnid in enumerate(self.wnid_names):
                    for i in range(n):
                        _jpeg(base / part / wnid / f"{wnid}_{i}.JPEG", (16, 12), _colour(c + i))
        if not base.exists():
            raise RuntimeError("Dataset not found. You can use download=True to download it.")
        self.wnids = sorted(self.wnid_names)
        self.classes = [self.wnid_names[w] for w in self.wnids]


def _hymenoptera_layout(root: Path, missing: int = 0):
    for split, per_class in data.Hymenoptera.counts.items():
        for c, (name, count) in enumerate(per_class.items()):
            for i in range(count - (missing if split == "val" and name == "bees" else 0)):
                _jpeg(root / "hymenoptera_data" / split / name / f"{i}.jpg", (8, 8), _colour(c))


def test_imagenette_reads_its_layout(tmp_path, monkeypatch):
    monkeypatch.setitem(data._TORCHVISION_SETS, "imagenette", FakeImagenette)
    train = data.imagenette(tmp_path, "train")
    val = data.imagenette(tmp_path, "val", download=False)
    assert train.classes == ["tench", "parachute"] and len(train) == 20 and len(val) == 8
    assert np.bincount(train.labels).tolist() == [10, 10]
    image, label = train[0]
    assert image.shape == (3, 12, 16) and label == 0
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        data.imagenette(tmp_path, "test")


def test_hymenoptera_checks_its_content_by_count(tmp_path):
    _hymenoptera_layout(tmp_path)
    train = data.hymenoptera(tmp_path, "train", download=False)
    val = data.hymenoptera(tmp_path, "val", download=False)
    assert train.classes == ["ants", "bees"] and len(train) == 244 and len(val) == 153
    other = tmp_path / "other"
    _hymenoptera_layout(other, missing=1)  # one bee short: an interrupted extraction
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        data.hymenoptera(other, "val", download=False)


def test_hymenoptera_offline_gives_our_download_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(data.DownloadError) as info:
        data.hymenoptera(tmp_path, "train")
    _assert_offline_message(info.value)


def test_load_target_gives_three_splits_for_every_source(tmp_path, monkeypatch):
    monkeypatch.setitem(data._TORCHVISION_SETS, "imagenette", FakeImagenette)
    monkeypatch.setitem(data._TORCHVISION_SETS, "flowers102", FakeFlowers102)
    _hymenoptera_layout(tmp_path)
    offline = data.load_target()
    assert (len(offline.train), len(offline.val), len(offline.test)) == (190, 190, 570) and len(offline.classes) == 19
    more = data.load_target(n_per_class=30)  # cut to order: more than the default 10 per class
    assert np.bincount(more.train.labels).tolist() == [30] * 19 and len(more.val) == 190
    nette = data.load_target("imagenette", root=tmp_path, seed=1)
    assert (len(nette.train), len(nette.val), len(nette.test)) == (16, 4, 8)
    assert not set(nette.train.indices) & set(nette.val.indices), "validation is carved out of training, not shared"
    few = data.load_target("hymenoptera", n_per_class=5, root=tmp_path, download=False)
    assert np.bincount(few.train.labels).tolist() == [5, 5] and len(few.test) == 153
    capped = data.load_target("hymenoptera", n_per_class=5, val_per_class=3, test_per_class=7, root=tmp_path, download=False)
    assert [np.bincount(s.labels).tolist() for s in (capped.val, capped.test)] == [[3, 3], [7, 7]]
    small = data.load_target(val_per_class=2, test_per_class=3, size=32)
    assert (len(small.val), len(small.test)) == (38, 57) and small.test[0][0].shape[-1] == 32
    assert few.classes == ["ants", "bees"] and repr(few).startswith("Target('hymenoptera': 10 train, ")
    flowers = data.load_target("flowers102", root=tmp_path)
    assert (len(flowers.train), len(flowers.val), len(flowers.test)) == (3, 1, 4)
    with pytest.raises(ValueError, match="Unknown target 'cifar'.*imagenette"):
        data.load_target("cifar")
