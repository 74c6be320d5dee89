"""Tests for xferlib.data: image folders, splits, offline sets, transforms and downloads.

Everything runs offline: images are built in tmp_path, and the download code talks to a
local http.server bound to 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xferlib as xl
from xferlib import data


# --------------------------------------------------------------------------- helpers
def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_bytes(h=12, w=10, seed=0):
    buf = io.BytesIO()
    Image.fromarray(_noise(h, w, seed)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(h=16, w=16, seed=0, color=None):
    buf = io.BytesIO()
    image = Image.new("RGB", (w, h), color) if color is not None else Image.fromarray(_noise(h, w, seed))
    image.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _save_rgb(path, h=6, w=5, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(h, w, seed)).save(path)
    return path


def _check_item(item, size=None):
    x, y = item
    assert isinstance(x, torch.Tensor)
    assert x.dtype == torch.float32
    assert x.ndim == 3 and x.shape[0] == 3
    if size is not None:
        assert tuple(x.shape[1:]) == size
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert isinstance(y, int)
    return x, y


# --------------------------------------------------------------------------- 1. image modes
# Every file: (class, filename, (height, width)); built once per module.
MODE_FILES = {}


@pytest.fixture(scope="module")
def mode_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    files = {}

    def put(cls, name, image, **save_kw):
        path = root / cls / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **save_kw)
        files[name] = (cls, (image.size[1], image.size[0]))

    # "zebra" first on disk, to check that classes come out sorted, not in creation order
    put("zebra", "rgb.png", Image.fromarray(_noise(7, 9, 1)))
    put("zebra", "grey.png", Image.new("L", (6, 5), 128))
    bw = Image.new("1", (8, 4), 0)
    bw.putpixel((0, 0), 1)
    put("zebra", "bilevel.png", bw)
    g16 = np.linspace(0, 65535, 5 * 11).reshape(5, 11).astype(np.uint16)
    put("zebra", "grey16.png", Image.fromarray(g16))

    rgba = Image.new("RGBA", (6, 4), (200, 100, 50, 255))
    rgba.putpixel((0, 0), (10, 20, 30, 0))  # fully transparent: must become white
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black: mid grey
    put("alpha", "rgba.png", rgba)
    la = Image.new("LA", (5, 5), (40, 255))
    la.putpixel((0, 0), (0, 0))
    put("alpha", "la.png", la)
    pt = Image.new("P", (4, 6), 1)
    pt.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 255] * 254)
    pt.putpixel((0, 0), 0)
    pt.info["transparency"] = 0
    put("alpha", "ptrans.png", pt, transparency=0)

    pal = Image.new("P", (5, 3), 2)
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
    put("colour", "palette.png", pal)
    put("colour", "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0)), quality=95)
    cmyk = Image.new("CMYK", (3, 7), (0, 0, 0, 0))
    cmyk.putpixel((0, 0), (0, 0, 0, 255))  # full black ink
    put("colour", "cmyk.tif", cmyk)
    MODE_FILES.clear()
    MODE_FILES.update(files)
    return root


def _by_name(ds):
    """{file name: (tensor, label)} for an ImageFolder."""
    return {ds.paths[i].name: ds[i] for i in range(len(ds))}


def test_modes_saved_as_expected(mode_root):
    """The fixture really exercises the modes it claims to (guards the other tests)."""
    modes = {p.name: Image.open(p).mode for p in mode_root.rglob("*") if p.is_file()}
    assert modes["grey16.png"] in ("I;16", "I")
    assert modes["bilevel.png"] == "1"
    assert modes["cmyk.jpg"] == modes["cmyk.tif"] == "CMYK"
    assert modes["ptrans.png"] == "P" and "transparency" in Image.open(mode_root / "alpha" / "ptrans.png").info
    assert {modes["rgba.png"], modes["la.png"], modes["grey.png"], modes["palette.png"]} == {"RGBA", "LA", "L", "P"}


def test_image_folder_every_mode_is_rgb_tensor(mode_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is bad: no warning at all
        ds = xl.image_folder(mode_root)
    assert isinstance(ds, data.ImageFolder)
    assert ds.classes == ["alpha", "colour", "zebra"]
    assert ds.skipped == []
    assert len(ds) == len(MODE_FILES)
    items = _by_name(ds)
    assert set(items) == set(MODE_FILES)
    for name, (cls, hw) in MODE_FILES.items():
        x, y = _check_item(items[name], size=hw)
        assert ds.classes[y] == cls, name
    assert ds.class_counts() == {"alpha": 3, "colour": 3, "zebra": 4}
    assert sorted(ds.labels.tolist()) == sorted(ds.classes.index(c) for c, _ in MODE_FILES.values())


def test_image_folder_class_constructor_matches_function(mode_root):
    a = data.ImageFolder(mode_root)
    b = xl.image_folder(mode_root)
    assert a.classes == b.classes
    assert a.paths == b.paths
    assert np.array_equal(a.labels, b.labels)
    assert torch.equal(a[0][0], b[0][0])


def test_transparency_composites_on_white(mode_root):
    items = _by_name(xl.image_folder(mode_root))
    rgba = items["rgba.png"][0]
    assert torch.allclose(rgba[:, 0, 0], torch.ones(3))  # transparent pixel -> white
    assert torch.allclose(rgba[:, 0, 1], torch.full((3,), 0.5), atol=2 / 255)  # 50% black on white (x=1, y=0)
    assert torch.allclose(rgba[:, 2, 2], torch.tensor([200, 100, 50]) / 255.0)  # opaque: unchanged
    la = items["la.png"][0]
    assert torch.allclose(la[:, 0, 0], torch.ones(3))
    assert torch.allclose(la[:, 3, 3], torch.full((3,), 40 / 255))
    pt = items["ptrans.png"][0]
    assert torch.allclose(pt[:, 0, 0], torch.ones(3))  # transparent palette index -> white
    assert torch.allclose(pt[:, 1, 1], torch.tensor([0.0, 1.0, 0.0]))  # opaque index keeps its colour


def test_other_modes_keep_their_colours(mode_root):
    items = _by_name(xl.image_folder(mode_root))
    assert torch.allclose(items["grey.png"][0], torch.full((3, 5, 6), 128 / 255))
    bw = items["bilevel.png"][0]
    assert torch.allclose(bw[:, 0, 0], torch.ones(3)) and torch.allclose(bw[:, 1, 1], torch.zeros(3))
    assert torch.allclose(items["palette.png"][0][:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    tif = items["cmyk.tif"][0]
    assert torch.allclose(tif[:, 1, 1], torch.ones(3))  # no ink: white paper
    assert torch.allclose(tif[:, 0, 0], torch.zeros(3))  # full black ink
    assert float(items["cmyk.jpg"][0].min()) > 0.9  # no ink, lossy: still white
    rgb = items["rgb.png"][0]
    assert torch.equal(rgb, torch.from_numpy(_noise(7, 9, 1)).permute(2, 0, 1).float() / 255)


def test_16bit_greyscale_uses_full_16bit_range(tmp_path):
    """A 16-bit image is the 8-bit image scaled by 257: both must load the same, and a
    uniform 16-bit white must stay white (not be stretched per image)."""
    grey8 = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)

    def _save(cls, name, arr):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(arr).save(tmp_path / cls / name)

    _save("a", "eight.png", grey8)
    _save("a", "sixteen.png", grey8.astype(np.uint16) * 257)
    _save("b", "white16.png", np.full((4, 4), 65535, np.uint16))
    _save("b", "mid16.png", np.full((4, 4), 257 * 100, np.uint16))
    assert Image.open(tmp_path / "b" / "white16.png").mode in ("I;16", "I")
    items = _by_name(xl.image_folder(tmp_path))
    eight, sixteen = items["eight.png"][0], items["sixteen.png"][0]
    assert torch.allclose(eight, sixteen, atol=1 / 255 + 1e-6)
    assert float(sixteen.max()) > 0.95 and float(sixteen.min()) == 0.0
    assert torch.allclose(items["white16.png"][0], torch.ones(3, 4, 4))
    assert torch.allclose(items["mid16.png"][0], torch.full((3, 4, 4), 100 / 255), atol=1 / 255)


def test_hidden_entries_are_ignored(tmp_path):
    _save_rgb(tmp_path / "cat" / "a.png")
    _save_rgb(tmp_path / ".ipynb_checkpoints" / "b.png")  # Jupyter's folder is not a class
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00\x01junk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xl.image_folder(tmp_path)
    assert ds.classes == ["cat"]
    assert len(ds) == 1 and ds.skipped == []


# --------------------------------------------------------------------------- 2. bad files
BAD = {
    "cats": {"truncated.png": _png_bytes(24, 24, 3)[:150]},
    "dogs": {
        "empty.jpg": b"",
        "notes.txt": b"these are my notes, not a picture\n",
        "cut.jpg": _jpeg_bytes(32, 32, 4)[:300],
    },
}
BAD_NAMES = [n for files in BAD.values() for n in files]


@pytest.fixture
def bad_root(tmp_path):
    root = tmp_path / "bad"
    for cls, n_good in (("cats", 2), ("dogs", 3)):
        for i in range(n_good):
            _save_rgb(root / cls / f"good{i}.png", seed=i)
        for name, blob in BAD[cls].items():
            (root / cls / name).write_bytes(blob)
    return root


def test_bad_files_are_really_bad(bad_root):
    for name in BAD_NAMES:
        path = next(bad_root.rglob(name))
        with pytest.raises(Exception):
            with Image.open(path) as im:
                im.load()
        assert data.check_image(path)  # a reason, not None
    assert data.check_image(bad_root / "cats" / "good0.png") is None


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_file_named_in_warning(bad_root, name):
    with pytest.warns(UserWarning, match=re.escape(name)):
        xl.image_folder(bad_root)


def test_bad_files_skipped_and_listed(bad_root):
    with pytest.warns(UserWarning) as record:
        ds = xl.image_folder(bad_root)
    message = "\n".join(str(w.message) for w in record)
    assert all(name in message for name in BAD_NAMES)
    assert ds.classes == ["cats", "dogs"]
    assert len(ds) == 5
    assert ds.class_counts() == {"cats": 2, "dogs": 3}
    assert all(p.name.startswith("good") for p in ds.paths)
    skipped = {Path(p).name: reason for p, reason in ds.skipped}
    assert set(skipped) == set(BAD_NAMES)
    assert all(isinstance(r, str) and r for r in skipped.values())
    assert "empty" in skipped["empty.jpg"]
    # the whole dataset can be iterated, item by item and in batches
    for i in range(len(ds)):
        _check_item(ds[i], size=(6, 5))
    loader = torch.utils.data.DataLoader(ds.with_transform(xl.eval_transform("efficientnet_lite0", 8)), batch_size=2)
    batches = list(loader)
    assert sum(len(y) for _, y in batches) == 5
    assert all(x.shape[1:] == (3, 8, 8) for x, _ in batches)


def test_bad_files_quiet_when_not_verbose(bad_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xl.image_folder(bad_root, verbose=False)
    assert len(ds) == 5 and len(ds.skipped) == len(BAD_NAMES)


def test_strict_refuses_and_names_every_bad_file(bad_root):
    with pytest.raises(ValueError) as info:
        xl.image_folder(bad_root, strict=True)
    assert all(name in str(info.value) for name in BAD_NAMES)
    assert "good0.png" not in str(info.value)


def test_strict_accepts_a_clean_folder(tmp_path):
    _save_rgb(tmp_path / "a" / "x.png")
    _save_rgb(tmp_path / "b" / "y.png")
    assert len(xl.image_folder(tmp_path, strict=True)) == 2


def test_missing_root(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        xl.image_folder(missing)
    a_file = tmp_path / "file.png"
    _save_rgb(a_file)
    with pytest.raises(FileNotFoundError, match=re.escape(str(a_file))):
        xl.image_folder(a_file)


def test_root_without_class_folders(tmp_path):
    _save_rgb(tmp_path / "loose.png")  # images directly in root: no classes
    with pytest.raises(ValueError, match="class"):
        xl.image_folder(tmp_path)


@pytest.mark.parametrize("strict", [False, True])
def test_class_folder_with_only_bad_files(tmp_path, strict):
    _save_rgb(tmp_path / "good_class" / "a.png")
    (tmp_path / "broken_class").mkdir()
    (tmp_path / "broken_class" / "empty.jpg").write_bytes(b"")
    (tmp_path / "broken_class" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="broken_class"):
        xl.image_folder(tmp_path, strict=strict)


def test_empty_class_folder(tmp_path):
    _save_rgb(tmp_path / "good_class" / "a.png")
    (tmp_path / "hollow").mkdir()
    with pytest.raises(ValueError, match="hollow"):
        xl.image_folder(tmp_path)


def test_file_removed_after_construction_names_the_file(tmp_path):
    _save_rgb(tmp_path / "a" / "one.png")
    _save_rgb(tmp_path / "a" / "two.png", seed=1)
    ds = xl.image_folder(tmp_path)
    (tmp_path / "a" / "two.png").unlink()
    _check_item(ds[0])
    with pytest.raises(OSError, match="two.png"):
        ds[1]


# --------------------------------------------------------------------------- 3. with_transform, fingerprint
def test_with_transform_copies_and_leaves_original(mode_root):
    ds = xl.image_folder(mode_root)
    seen = []

    def describe(image):
        seen.append(image.mode)
        return ("described", image.size)

    ds2 = ds.with_transform(describe)
    assert ds2 is not ds and type(ds2) is type(ds)
    assert ds2.transform is describe and ds.transform is None
    assert ds2.paths is ds.paths and ds2.labels is ds.labels and ds2.classes is ds.classes
    (out, label), (x, label_orig) = ds2[0], ds[0]
    assert out == ("described", (x.shape[2], x.shape[1]))
    assert label == label_orig
    assert seen == ["RGB"]  # the transform receives an RGB PIL image
    _check_item(ds[0])  # the original still gives plain tensors
    ds3 = ds2.with_transform(None)
    assert torch.equal(ds3[0][0], x)


def test_fingerprint_stable(mode_root):
    a, b = xl.image_folder(mode_root), xl.image_folder(mode_root)
    assert a.fingerprint() == a.fingerprint() == b.fingerprint()
    assert isinstance(a.fingerprint(), str) and len(a.fingerprint()) >= 16
    t = xl.eval_transform("efficientnet_lite0", 32)
    assert a.with_transform(t).fingerprint() == b.with_transform(t).fingerprint()
    assert a.with_transform(t).with_transform(None).fingerprint() == a.fingerprint()


def test_fingerprint_changes_with_transform(mode_root):
    ds = xl.image_folder(mode_root)
    fps = {
        ds.fingerprint(),
        ds.with_transform(xl.eval_transform("efficientnet_lite0", 32)).fingerprint(),
        ds.with_transform(xl.eval_transform("efficientnet_lite0", 64)).fingerprint(),
        ds.with_transform(xl.train_transform("efficientnet_lite0", 32)).fingerprint(),
    }
    assert len(fps) == 4


def test_fingerprint_changes_with_files(tmp_path):
    _save_rgb(tmp_path / "a" / "x.png", 6, 5)
    _save_rgb(tmp_path / "b" / "y.png", 6, 5)
    ds = xl.image_folder(tmp_path)
    before = ds.fingerprint()
    _save_rgb(tmp_path / "b" / "y.png", 20, 17, seed=9)  # new content, new size
    assert xl.image_folder(tmp_path).fingerprint() != before
    assert ds.fingerprint() != before  # the same object notices too
    _save_rgb(tmp_path / "b" / "z.png")  # one more file
    assert xl.image_folder(tmp_path).fingerprint() != ds.fingerprint()


def test_fingerprint_of_array_sets_and_subsets():
    a, b, c = data.shapes(2, size=8, seed=0), data.shapes(2, size=8, seed=0), data.shapes(2, size=8, seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert data.few_shot(a, 1, seed=0).fingerprint() == data.few_shot(b, 1, seed=0).fingerprint()
    assert data.few_shot(a, 1, seed=0).fingerprint() != data.few_shot(a, 1, seed=3).fingerprint()


# --------------------------------------------------------------------------- 4. sampling and splits
LABELS = np.repeat(np.arange(4), [5, 6, 7, 8])
np.random.default_rng(0).shuffle(LABELS)


def test_sample_per_class_k_each():
    idx = xl.sample_per_class(LABELS, 3, seed=1)
    assert len(idx) == 12 and len(np.unique(idx)) == 12
    assert idx.min() >= 0 and idx.max() < len(LABELS)
    assert np.bincount(LABELS[idx], minlength=4).tolist() == [3, 3, 3, 3]
    assert np.array_equal(idx, xl.sample_per_class(LABELS.tolist(), 3, seed=1))  # a list works too


def test_sample_per_class_seeds():
    assert np.array_equal(xl.sample_per_class(LABELS, 2, seed=7), xl.sample_per_class(LABELS, 2, seed=7))
    draws = [tuple(xl.sample_per_class(LABELS, 2, seed=s)) for s in range(4)]
    assert len(set(draws)) > 1
    assert tuple(xl.sample_per_class(LABELS, 2, seed=0)) != tuple(xl.sample_per_class(LABELS, 2, seed=1))


def test_sample_per_class_takes_a_dataset():
    ds = data.shapes(4, size=8)
    idx = xl.sample_per_class(ds, 2, seed=0)
    assert np.bincount(ds.labels[idx]).tolist() == [2] * 5


def test_sample_per_class_too_few():
    assert len(xl.sample_per_class(LABELS, 5)) == 20  # the smallest class has exactly 5
    with pytest.raises(ValueError, match="6"):
        xl.sample_per_class(LABELS, 6)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.1])
def test_stratified_split(fraction):
    train, test = xl.stratified_split(LABELS, fraction, seed=3)
    assert len(np.intersect1d(train, test)) == 0
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(LABELS)))
    for c, n in enumerate(np.bincount(LABELS)):
        n_test = int(np.sum(LABELS[test] == c))
        assert 1 <= n_test < n  # every class on both sides
        assert abs(n_test - fraction * n) <= 1
        assert abs((n - n_test) - (1 - fraction) * n) <= 1
    again = xl.stratified_split(LABELS, fraction, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_stratified_split_seeds_differ():
    assert not np.array_equal(xl.stratified_split(LABELS, 0.3, seed=0)[1], xl.stratified_split(LABELS, 0.3, seed=1)[1])


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5, float("nan")])
def test_stratified_split_bad_fraction(fraction):
    with pytest.raises(ValueError):
        xl.stratified_split(LABELS, fraction)


def test_stratified_split_class_too_small():
    with pytest.raises(ValueError):
        xl.stratified_split([0, 0, 0, 1], 0.25)


def test_few_shot_subset():
    ds = data.shapes(6, size=8, seed=0)
    sub = xl.few_shot(ds, 2, seed=0)
    assert isinstance(sub, data.Subset)
    assert sub.classes == ds.classes == list(data.SHAPES)
    assert len(sub) == 10
    assert np.bincount(sub.labels).tolist() == [2] * 5
    assert [sub[i][1] for i in range(len(sub))] == sub.labels.tolist()
    for i in range(len(sub)):
        x, _ = _check_item(sub[i], size=(8, 8))
        assert torch.equal(x, ds[int(sub.indices[i])][0])
    assert np.array_equal(sub.indices, xl.few_shot(ds, 2, seed=0).indices)
    assert not np.array_equal(sub.indices, xl.few_shot(ds, 2, seed=5).indices)

    t = xl.eval_transform("efficientnet_lite0", 16)
    sub2 = sub.with_transform(t)
    assert isinstance(sub2, data.Subset) and sub2.transform is t
    assert sub.transform is None and ds.transform is None
    assert np.array_equal(sub2.labels, sub.labels) and sub2.classes == sub.classes
    assert sub2[0][0].shape == (3, 16, 16) and float(sub2[0][0].min()) < 0  # normalized
    _check_item(sub[0], size=(8, 8))  # the original is untouched
    with pytest.raises(ValueError):
        xl.few_shot(ds, 7)


# --------------------------------------------------------------------------- 5. offline sets
@pytest.fixture(scope="module")
def patches():
    return data.photo_patches("train", n_per_class=3, size=16), data.photo_patches("test", n_per_class=3, size=16)


def test_photo_patches(patches):
    train, test = patches
    for ds in (train, test):
        assert isinstance(ds, data.ArrayImages)
        assert len(ds.classes) == 10 and len(set(ds.classes)) == 10
        assert ds.images.shape == (30, 16, 16, 3) and ds.images.dtype == np.uint8
        assert np.bincount(ds.labels, minlength=10).tolist() == [3] * 10
        assert ds.images.std() > 10  # real pictures, not blank
        x, y = _check_item(ds[4], size=(16, 16))
        assert torch.equal(x, torch.from_numpy(ds.images[4]).permute(2, 0, 1).float() / 255)
    assert train.classes == test.classes
    assert not np.array_equal(train.images, test.images)
    train_rows = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in train_rows for im in test.images)


def test_photo_patches_deterministic(patches):
    train, _ = patches
    again = data.photo_patches("train", n_per_class=3, size=16)
    assert np.array_equal(again.images, train.images) and np.array_equal(again.labels, train.labels)
    other = data.photo_patches("train", n_per_class=3, size=16, seed=1)
    assert not np.array_equal(other.images, train.images)
    assert data.photo_patches("test", n_per_class=2, size=24).images.shape == (20, 24, 24, 3)


def test_photo_patches_splits_share_no_pixel(monkeypatch):
    """Fake photos painted as a 4x4-tile checkerboard (200 on one colour, 50 on the other):
    train patches must come from one colour only and test patches from the other."""

    def checkerboard(h, w):
        tile = min(h, w) // 4
        yy, xx = np.mgrid[0:h, 0:w]
        parity = (yy // tile + xx // tile) % 2
        return np.repeat(np.where(parity == 0, 200, 50).astype(np.uint8)[..., None], 3, axis=2)

    monkeypatch.setattr(data, "_package_photos", lambda: {"wide": checkerboard(64, 96), "tall": checkerboard(100, 60)})
    train = data.photo_patches("train", n_per_class=20, size=8)
    test = data.photo_patches("test", n_per_class=20, size=8)
    assert train.classes == test.classes == ["wide", "tall"]
    values = lambda ds: set(np.unique(ds.images).tolist())
    assert values(train) == {200}
    assert values(test) == {50}


def test_photo_patches_bad_split():
    with pytest.raises(ValueError):
        data.photo_patches("validation", n_per_class=1)


def test_digits():
    from sklearn.datasets import load_digits

    target = load_digits().target
    train, test = data.digits("train", size=12), data.digits("test", size=12)
    assert len(train) + len(test) == 1797 == len(target)
    assert abs(len(test) - 0.3 * 1797) <= 10
    assert train.classes == test.classes == [str(d) for d in range(10)]
    per_class = np.bincount(target, minlength=10)
    assert (np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10)).tolist() == per_class.tolist()
    assert np.all(np.abs(np.bincount(test.labels, minlength=10) - 0.3 * per_class) <= 1)  # stratified
    for ds in (train, test):
        assert ds.images.shape[1:] == (12, 12, 3) and ds.images.dtype == np.uint8
        assert np.array_equal(ds.images[..., 0], ds.images[..., 1])  # grey made RGB
        assert np.array_equal(ds.images[..., 0], ds.images[..., 2])
        assert ds.images.max() > 200 and ds.images.min() == 0
    _check_item(train[0], size=(12, 12))
    assert data.digits("test", size=20).images.shape == (len(test), 20, 20, 3)
    assert len(data.digits("all", size=8)) == 1797
    with pytest.raises(ValueError):
        data.digits("val")


def test_shapes_sizes_and_labels():
    ds = data.shapes(n_per_class=4, size=16)
    assert len(ds) == 20 and ds.images.shape == (20, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.classes == list(data.SHAPES)
    assert np.bincount(ds.labels).tolist() == [4] * 5
    _check_item(ds[7], size=(16, 16))
    assert np.array_equal(ds.images, data.shapes(n_per_class=4, size=16).images)
    assert not np.array_equal(ds.images, data.shapes(n_per_class=4, size=16, seed=1).images)
    sub = data.shapes(n_per_class=3, size=12, classes=("ring", "cross"))
    assert sub.classes == ["ring", "cross"] and len(sub) == 6


def test_shapes_domain_shift_darkens_background():
    src = data.shapes(n_per_class=4, shift=0.0, size=16).images.astype(float)
    mid = data.shapes(n_per_class=4, shift=0.5, size=16).images.astype(float)
    tgt = data.shapes(n_per_class=4, shift=1.0, size=16).images.astype(float)
    assert src.mean() > mid.mean() > tgt.mean()
    assert src.mean() - tgt.mean() > 40
    corners = lambda a: np.concatenate([a[:, 0, 0], a[:, 0, -1], a[:, -1, 0], a[:, -1, -1]])
    assert corners(src).mean() > 0.7 * 255 > 0.5 * 255 > corners(tgt).mean()


@pytest.mark.parametrize("shift", [-0.1, 1.5])
def test_shapes_bad_shift(shift):
    with pytest.raises(ValueError, match="shift"):
        data.shapes(n_per_class=2, shift=shift, size=8)


def test_shapes_unknown_class():
    with pytest.raises(ValueError, match="hexagon"):
        data.shapes(n_per_class=2, size=8, classes=("circle", "hexagon"))


def test_array_images_validation():
    good = np.zeros((2, 4, 4, 3), np.uint8)
    assert len(data.ArrayImages(good, [0, 1], ["a", "b"])) == 2
    with pytest.raises(ValueError):
        data.ArrayImages(good.astype(np.float32), [0, 1], ["a", "b"])
    with pytest.raises(ValueError):
        data.ArrayImages(good[..., 0], [0, 1], ["a", "b"])
    with pytest.raises(ValueError):
        data.ArrayImages(good, [0], ["a", "b"])
    with pytest.raises(ValueError):
        data.ArrayImages(good, [0, 2], ["a", "b"])


# --------------------------------------------------------------------------- 6. transforms
def test_eval_transform_efficientnet():
    t = xl.eval_transform("efficientnet_lite0", 96)
    x = t(Image.fromarray(_noise(120, 150, 2)))
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert float(x.min()) < -0.5 and float(x.max()) > 0.5
    assert torch.allclose(t(Image.new("RGB", (100, 80), "white")), torch.ones(3, 96, 96))  # (1-0.5)/0.5
    assert torch.allclose(t(Image.new("RGB", (100, 80), "black")), -torch.ones(3, 96, 96))  # (0-0.5)/0.5
    assert torch.allclose(t(Image.new("RGB", (100, 80), (255, 0, 0)))[:, 10, 10], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(t(Image.fromarray(_noise(120, 150, 2))), x)  # deterministic


def test_eval_transform_sizes_and_specs():
    spec = xl.get_spec("efficientnet_lite0")
    assert xl.eval_transform("efficientnet_lite0")(Image.new("RGB", (40, 30))).shape == (3, spec.input_size, spec.input_size)
    r18 = xl.get_spec("resnet18")
    white = xl.eval_transform(r18, 24)(Image.new("RGB", (30, 30), "white"))
    expected = (1 - torch.tensor(r18.mean)) / torch.tensor(r18.std)
    assert white.shape == (3, 24, 24) and torch.allclose(white[:, 0, 0], expected)
    with pytest.raises(TypeError):
        xl.eval_transform(3.5)


def test_train_transform_size_and_randomness():
    torch.manual_seed(0)
    t = xl.train_transform("efficientnet_lite0", 48)
    image = Image.fromarray(_noise(64, 80, 3))
    a, b = t(image), t(image)
    assert a.shape == b.shape == (3, 48, 48)
    assert float(a.min()) >= -1.0 - 1e-6 and float(a.max()) <= 1.0 + 1e-6
    assert not torch.equal(a, b)


@pytest.mark.parametrize("make", [xl.eval_transform, xl.train_transform])
def test_transform_unknown_backbone(make):
    with pytest.raises(ValueError, match="no_such_net"):
        make("no_such_net", 32)


# --------------------------------------------------------------------------- 7. downloads
@dataclass
class LocalServer:
    root: Path
    url: str
    hits: list
    httpd: http.server.ThreadingHTTPServer
    thread: threading.Thread
    stopped: bool = False

    def put(self, name, blob):
        (self.root / name).write_bytes(blob)
        return f"{self.url}/{name}", hashlib.md5(blob).hexdigest()

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 through a proxy
    monkeypatch.setenv("NO_PROXY", "*")
    root = tmp_path / "served"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            if self.path == "/truncated.bin":  # promises 1000 bytes, sends 100, hangs up
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 100)
                self.close_connection = True
                return
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv = LocalServer(root, f"http://127.0.0.1:{httpd.server_address[1]}", hits, httpd, thread)
    yield srv
    srv.stop()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_md5sum(tmp_path):
    blob = bytes(range(256)) * 40
    (tmp_path / "f").write_bytes(blob)
    assert data.md5sum(tmp_path / "f") == data.md5sum(tmp_path / "f", chunk=7) == hashlib.md5(blob).hexdigest()


def test_download_success(server, tmp_path):
    blob = np.random.default_rng(0).bytes(5000)
    url, md5 = server.put("blob.bin", blob)
    dest = tmp_path / "dest" / "sub"  # created on demand
    path = data.download_url(url, dest, md5, progress=False, timeout=5)
    assert path == dest / "blob.bin"
    assert path.read_bytes() == blob
    assert [p.name for p in dest.iterdir()] == ["blob.bin"]  # no .part left
    renamed = data.download_url(url, dest, md5, filename="other.bin", progress=False, timeout=5)
    assert renamed == dest / "other.bin" and renamed.read_bytes() == blob


def test_download_is_cached(server, tmp_path):
    url, md5 = server.put("blob.bin", b"cached content" * 100)
    first = data.download_url(url, tmp_path / "d", md5, progress=False, timeout=5)
    assert len(server.hits) == 1
    data.download_url(url, tmp_path / "d", md5, progress=False, timeout=5)
    assert len(server.hits) == 1  # not fetched again
    server.stop()
    again = data.download_url(url, tmp_path / "d", md5, progress=False, timeout=5)
    assert again == first and again.read_bytes() == b"cached content" * 100
    assert data.download_url(url, tmp_path / "d", None, progress=False, timeout=5) == first


def test_download_replaces_a_stale_file(server, tmp_path):
    url, md5 = server.put("blob.bin", b"fresh" * 50)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "blob.bin").write_bytes(b"stale")
    path = data.download_url(url, tmp_path / "d", md5, progress=False, timeout=5)
    assert path.read_bytes() == b"fresh" * 50 and len(server.hits) == 1


def test_download_wrong_checksum(server, tmp_path):
    url, md5 = server.put("blob.bin", b"some bytes" * 30)
    wrong = hashlib.md5(b"something else").hexdigest()
    with pytest.raises(data.DownloadError, match="(?i)checksum"):
        data.download_url(url, tmp_path / "d", wrong, progress=False, timeout=5)
    assert list((tmp_path / "d").iterdir()) == []
    assert issubclass(data.DownloadError, RuntimeError)


def test_download_offline(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/data/file.tgz"
    with pytest.raises(data.DownloadError) as info:
        data.download_url(url, tmp_path / "d", "0" * 32, progress=False, timeout=5)
    assert "offline" in str(info.value).lower()
    assert url in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []


def test_download_missing_file(server, tmp_path):
    url = f"{server.url}/not_there.bin"
    with pytest.raises(data.DownloadError, match=re.escape(url)):
        data.download_url(url, tmp_path / "d", None, progress=False, timeout=5)
    assert list((tmp_path / "d").iterdir()) == []


def test_download_cut_short_never_takes_final_name(server, tmp_path):
    """A connection that closes before Content-Length bytes arrive is an error even
    without a checksum, and leaves nothing behind."""
    with pytest.raises(data.DownloadError):
        data.download_url(f"{server.url}/truncated.bin", tmp_path / "d", None, progress=False, timeout=5)
    assert list((tmp_path / "d").iterdir()) == []


# --------------------------------------------------------------------------- 8. online loaders on fake data
def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _mat_bytes(arrays) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, arrays)
    return buf.getvalue()


def _colour(i):
    return (40 * (i % 6), 255 - 30 * i, (70 * i) % 256)


FLOWER_LABELS = [3, 1, 2, 3, 102, 2, 50, 1]  # 1-based, one per image, as in imagelabels.mat
FLOWER_SPLITS = {"trnid": [1, 2, 3], "valid": [5], "tstid": [4, 6, 7, 8]}


def _serve_flowers(server, monkeypatch, corrupt=None):
    files = {
        "102flowers.tgz": _tar_gz(
            {f"jpg/image_{i:05d}.jpg": _jpeg_bytes(10, 12, color=_colour(i)) for i in range(1, len(FLOWER_LABELS) + 1)}
        ),
        "imagelabels.mat": _mat_bytes({"labels": np.array([FLOWER_LABELS], dtype=np.uint8)}),
        "setid.mat": _mat_bytes({k: np.array([v], dtype=np.uint16) for k, v in FLOWER_SPLITS.items()}),
    }
    md5s = {name: server.put(name, blob)[1] for name, blob in files.items()}
    if corrupt:
        md5s[corrupt] = "0" * 32
    monkeypatch.setitem(data.ONLINE_SOURCES, "flowers102", {"base_url": server.url + "/", "files": md5s})


def test_flowers102_on_fake_data(server, monkeypatch, tmp_path):
    from torchvision.datasets import Flowers102

    _serve_flowers(server, monkeypatch)
    root = tmp_path / "cache"
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ds = data.flowers102(root=root, split=split)
        ids = FLOWER_SPLITS[key]
        assert isinstance(ds, data.FileList)
        assert len(ds) == len(ids)
        assert ds.labels.tolist() == [FLOWER_LABELS[i - 1] - 1 for i in ids]
        assert ds.classes == list(Flowers102.classes) and len(ds.classes) == 102
        for j, i in enumerate(ids):
            x, y = _check_item(ds[j], size=(10, 12))
            assert y == FLOWER_LABELS[i - 1] - 1
            assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(_colour(i)) / 255, atol=0.05)
    assert len(server.hits) == 3  # each file fetched once, then cached
    server.stop()
    cached = data.flowers102(root=root, split="train", download=False)
    assert len(cached) == 3
    with pytest.raises(ValueError):
        data.flowers102(root=root, split="validation")


def test_flowers102_bad_checksum_is_not_marked_complete(server, monkeypatch, tmp_path):
    _serve_flowers(server, monkeypatch, corrupt="setid.mat")
    with pytest.raises(data.DownloadError, match="setid.mat"):
        data.flowers102(root=tmp_path / "cache")
    with pytest.raises(FileNotFoundError):
        data.flowers102(root=tmp_path / "cache", download=False)


PETS = {  # image id: class id (1-based), as in the real annotation files
    "Abyssinian_1": 1,
    "Abyssinian_2": 1,
    "american_bulldog_10": 2,
    "american_bulldog_11": 2,
    "american_bulldog_12": 2,
    "american_pit_bull_terrier_3": 3,
    "american_pit_bull_terrier_4": 3,
}
PETS_TRAINVAL = ["Abyssinian_1", "american_bulldog_10", "american_pit_bull_terrier_3", "american_bulldog_11"]
PETS_TEST = ["Abyssinian_2", "american_pit_bull_terrier_4", "american_bulldog_12"]


def _pet_line(image_id):
    class_id = PETS[image_id]
    species = 1 if image_id[0].isupper() else 2  # cats are capitalised
    return f"{image_id} {class_id} {species} {class_id}"


def test_oxford_pets_on_fake_data(server, monkeypatch, tmp_path):
    images = {f"images/{name}.jpg": _jpeg_bytes(9, 7, color=_colour(i)) for i, name in enumerate(PETS)}
    annotations = {
        "annotations/trainval.txt": ("\n".join(_pet_line(n) for n in PETS_TRAINVAL) + "\n").encode(),
        "annotations/test.txt": ("\n".join(_pet_line(n) for n in PETS_TEST) + "\n\n").encode(),
    }
    md5s = {
        "images.tar.gz": server.put("images.tar.gz", _tar_gz(images))[1],
        "annotations.tar.gz": server.put("annotations.tar.gz", _tar_gz(annotations))[1],
    }
    monkeypatch.setitem(data.ONLINE_SOURCES, "oxford_pets", {"base_url": server.url + "/", "files": md5s})
    root = tmp_path / "cache"
    order = list(PETS)
    expected_classes = ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]
    for split, names in (("trainval", PETS_TRAINVAL), ("test", PETS_TEST)):
        ds = data.oxford_pets(root=root, split=split)
        assert isinstance(ds, data.FileList)
        assert len(ds) == len(names)
        assert ds.labels.tolist() == [PETS[n] - 1 for n in names]
        for j, name in enumerate(names):
            x, y = _check_item(ds[j], size=(9, 7))
            assert y == PETS[name] - 1
            assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(_colour(order.index(name))) / 255, atol=0.05)
        assert ds.classes == expected_classes
    assert len(server.hits) == 2
    with pytest.raises(ValueError):
        data.oxford_pets(root=root, split="train")


@pytest.mark.parametrize("loader", [data.flowers102, data.oxford_pets])
def test_online_loader_without_download(loader, tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        loader(root=tmp_path / "empty", download=False)


def test_checksums_match_torchvision():
    from torchvision.datasets import Flowers102, OxfordIIITPet

    flowers = data.ONLINE_SOURCES["flowers102"]
    assert flowers["files"] == {name: md5 for name, md5 in Flowers102._file_dict.values()}
    prefix = getattr(Flowers102, "_download_url_prefix", None)
    if prefix is not None:
        assert flowers["base_url"] == prefix
    pets = data.ONLINE_SOURCES["oxford_pets"]
    assert pets["files"] == {url.rsplit("/", 1)[-1]: md5 for url, md5 in OxfordIIITPet._RESOURCES}
    assert {pets["base_url"] + name for name in pets["files"]} == {url for url, _ in OxfordIIITPet._RESOURCES}
