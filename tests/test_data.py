"""Tests for xferlib.data: image folders, bad files, splits, offline sets and transforms
(the online loaders are in test_downloads.py).

Everything runs offline: images are built in tmp_path.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import sys
import warnings
import zlib
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
# Bad in the header: refused at index time without decoding. (A file cut short after its
# header passes the header check and is caught at load time: see section 2b.)
BAD = {
    "cats": {"header_cut.png": _png_bytes(24, 24, 3)[:20]},
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


def test_file_removed_after_construction_is_named_and_replaced(tmp_path):
    one = _save_rgb(tmp_path / "a" / "one.png")
    two = _save_rgb(tmp_path / "a" / "two.png", seed=1)
    ds = xl.image_folder(tmp_path)
    two.unlink()
    _check_item(ds[0])
    with pytest.warns(UserWarning, match=r"two\.png \(file not found\).*one\.png"):
        x, y = ds[1]
    assert torch.equal(x, ds[0][0]) and y == 0
    one.unlink()
    with pytest.raises(OSError, match="one.png") as info:  # nothing of class 'a' is left
        ds[0]
    assert "two.png" in str(info.value) and "'a'" in str(info.value)


def _bomb_png(path, width=30000, height=30000):
    """A valid 1-bit PNG of width x height zeros (about 110 KB on disk), written row block by
    row block: PIL would hold all 900 million pixels (900 MB) to make the same file."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    block = bytes(1 + (width + 7) // 8) * 1000  # filter byte 0, then the packed bits of one row
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(block) for _ in range(height // 1000)) + z.compress(block[: (height % 1000) * len(block) // 1000]) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return _bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_bomb_is_a_small_png_that_pil_refuses(bomb):
    """Guards the tests below: the file is small and PIL refuses it as a bomb."""
    assert bomb.stat().st_size < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)


def test_decompression_bomb_is_left_out_and_named(bomb, tmp_path):
    _save_rgb(tmp_path / "a" / "good.png")
    shutil.copy(bomb, tmp_path / "a" / "bomb.png")
    with pytest.warns(UserWarning, match="bomb.png"):
        ds = xl.image_folder(tmp_path)
    assert len(ds) == 1 and ds.paths[0].name == "good.png"
    [(path, reason)] = ds.skipped
    assert Path(path).name == "bomb.png" and reason.startswith("too many pixels (decompression bomb?)")
    with pytest.raises(ValueError, match="bomb.png") as info:
        xl.image_folder(tmp_path, strict=True)
    assert "decompression bomb" in str(info.value)


def test_decompression_bomb_at_load_time(bomb, tmp_path):
    good = _save_rgb(tmp_path / "good.png")
    ds = data.FileList([bomb, good], [0, 0], ["a"])  # a FileList checks nothing up front
    with pytest.warns(UserWarning, match=r"bomb\.png \(too many pixels \(decompression bomb\?\)"):
        x, y = ds[0]
    assert torch.equal(x, ds[1][0]) and y == 0
    assert [(Path(p).name, r.split(":")[0]) for p, r in ds.failed] == [("bomb.png", "too many pixels (decompression bomb?)")]


# --------------------------------------------------------------------------- 2b. bad files found at load time
def test_truncated_jpeg_passes_the_index_and_an_epoch_still_runs(tmp_path):
    """A JPEG cut short after its header (an interrupted copy) passes the cheap header check;
    when the epoch reaches it, another image of its class stands in and a warning names it."""
    for i in range(3):
        _save_rgb(tmp_path / "cats" / f"good{i}.png", 6, 5, seed=i)
    for i in range(2):
        _save_rgb(tmp_path / "dogs" / f"good{i}.png", 6, 5, seed=10 + i)
    blob = _jpeg_bytes(64, 48, 5)
    (tmp_path / "cats" / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing looks wrong at index time
        ds = xl.image_folder(tmp_path)
    assert len(ds) == 6 and ds.skipped == [] and ds.failed == []
    assert ds.paths[0].name == "cut.jpg"
    loader = torch.utils.data.DataLoader(ds.with_transform(xl.eval_transform("efficientnet_lite0", 8)), batch_size=4)
    with pytest.warns(UserWarning) as record:
        batches = list(loader)
    assert torch.cat([y for _, y in batches]).tolist() == ds.labels.tolist()
    assert all(x.shape[1:] == (3, 8, 8) for x, _ in batches)
    messages = [str(w.message) for w in record if "cut.jpg" in str(w.message)]
    assert len(messages) == 1 and "truncated" in messages[0] and "good0.png" in messages[0]
    assert [(Path(p).name, "truncated" in r) for p, r in ds.failed] == [("cut.jpg", True)]  # shared with the copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file: the next epoch is quiet
        assert sum(len(y) for _, y in loader) == 6
    assert len(ds.failed) == 1


def test_stand_in_is_the_next_readable_image_of_the_same_class(tmp_path):
    good = [_save_rgb(tmp_path / f"good{i}.png", seed=i) for i in range(3)]
    blob = _jpeg_bytes(32, 32, 7)
    (tmp_path / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "notes.txt").write_text("not a picture")
    missing = tmp_path / "gone.png"
    paths = [good[0], good[1], tmp_path / "cut.jpg", missing, tmp_path / "notes.txt", good[2]]
    labels = [0, 1, 0, 0, 1, 0]
    ds = data.FileList(paths, labels, ["a", "b"])
    expected = {i: ds[i][0] for i in (0, 1, 5)}
    with pytest.warns(UserWarning) as record:
        x, y = ds[2]  # cut.jpg: the next 'a' is gone.png (bad too), then good2
    assert torch.equal(x, expected[5]) and y == 0
    assert sorted(n for n in ("cut.jpg", "gone.png") if any(n in str(w.message) for w in record)) == ["cut.jpg", "gone.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gone.png is known: no second warning
        assert torch.equal(ds[3][0], expected[5])
    with pytest.warns(UserWarning, match=r"notes\.txt \(not an image\)"):
        x, y = ds[4]  # the last 'b': wraps round to good1
    assert torch.equal(x, expected[1]) and y == 1
    reasons = {Path(p).name: r for p, r in ds.failed}
    assert list(reasons) == ["cut.jpg", "gone.png", "notes.txt"]
    assert "truncated" in reasons["cut.jpg"] and reasons["gone.png"] == "file not found"
    assert torch.equal(ds[-1][0], expected[5])
    with pytest.raises(IndexError):
        ds[6]


def test_class_with_no_readable_image_names_the_files(tmp_path):
    good = _save_rgb(tmp_path / "good.png")
    ds = data.FileList([tmp_path / "x1.png", tmp_path / "x2.png", good], [0, 0, 1], ["a", "b"])
    with pytest.raises(OSError) as info:
        ds[0]
    message = str(info.value)
    assert "x1.png" in message and "x2.png" in message and "'a'" in message
    _check_item(ds[2])


# --------------------------------------------------------------------------- 2c. orientation, float images, odd names
def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored landscape with EXIF Orientation=6 (turn 90 degrees clockwise to
    show) must come out portrait, with the stored top-left corner at the top right."""
    stored = np.full((20, 40, 3), 255, np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone" / "photo.jpg"
    path.parent.mkdir()
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif)
    assert Image.open(path).size == (40, 20) and Image.open(path).getexif()[0x0112] == 6
    image = data.load_image(path)
    assert image.size == (20, 40) and image.mode == "RGB"
    corner = np.asarray(image)[:6, -6:].reshape(-1, 3).mean(axis=0)
    assert np.allclose(corner, (255, 0, 0), atol=25), corner
    x, _ = _check_item(xl.image_folder(tmp_path)[0], size=(40, 20))


@pytest.mark.parametrize(
    "mode, values, expected",
    [
        ("F", [0.5, 0.5], [128, 128]),  # constant within [0, 1]: grey, not black
        ("F", [0.2, 0.4], [51, 102]),  # within [0, 1]: scaled by 255, not stretched
        ("F", [0.0, 1.0], [0, 255]),
        ("F", [10.0, 20.0], [10, 20]),  # within [0, 255]: as it is
        ("F", [-50.0, 0.0, 205.0], [0, 50, 255]),  # outside: stretched
        ("F", [1000.0, 1000.0], [128, 128]),  # constant outside: mid-grey
        ("F", [np.nan, 0.25, np.inf, -np.inf, 0.5], [64, 64, 128, 64, 128]),
        ("I", [7, 7], [7, 7]),
        ("I", [0, 1], [0, 255]),
        ("I", [0, 204, 1020], [0, 51, 255]),
    ],
)
def test_to_rgb_wide_modes(mode, values, expected):
    arr = np.array([values], dtype=np.float32 if mode == "F" else np.int32)
    image = Image.fromarray(arr, mode) if mode == "F" else Image.fromarray(arr).convert("I")
    assert image.mode == mode
    out = np.asarray(data.to_rgb(image))
    assert out.shape == (1, len(values), 3)
    assert out[0, :, 0].tolist() == expected and np.array_equal(out[..., 0], out[..., 2])


def test_constant_float_tiff_is_not_black(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((5, 7), 0.5, np.float32), "F").save(tmp_path / "a" / "half.tif")
    assert Image.open(tmp_path / "a" / "half.tif").mode == "F"
    x, _ = _check_item(xl.image_folder(tmp_path)[0], size=(5, 7))
    assert torch.allclose(x, torch.full((3, 5, 7), 128 / 255))


def _non_utf8_file(folder: Path, blob: bytes) -> bytes:
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # Latin-1, as an old camera or Windows share writes it
    try:
        with open(raw, "wb") as f:
            f.write(blob)
    except OSError as err:
        pytest.skip(f"this file system refuses names that are not UTF-8 ({err})")
    return raw


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="file names there are always valid Unicode")
def test_non_utf8_file_name_loads_and_fingerprints(tmp_path):
    _save_rgb(tmp_path / "a" / "plain.png")
    raw = _non_utf8_file(tmp_path / "a", _png_bytes(6, 5, 1))
    ds = xl.image_folder(tmp_path)
    assert len(ds) == 2 and ds.skipped == []
    assert os.fsencode(ds.paths[0]) == raw
    _check_item(ds[0], size=(6, 5))
    assert ds.fingerprint() == xl.image_folder(tmp_path).fingerprint()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    feats, labels = xl.extract_features(model, ds, cache=True, progress=False)
    again, _ = xl.extract_features(model, ds, cache=True, progress=False)
    assert feats.shape == (2, 4) and torch.equal(feats, again) and labels.tolist() == [0, 0]


def _edit_in_place(path: Path, seed: int):
    """New pixels, same size on disk (BMP is uncompressed) and the old time stamps put back."""
    st = path.stat()
    Image.fromarray(_noise(6, 5, seed)).save(path, "BMP")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_fingerprint_sees_content_edited_in_place(tmp_path):
    path = tmp_path / "a" / "x.bmp"
    path.parent.mkdir()
    Image.fromarray(_noise(6, 5, 0)).save(path, "BMP")
    ds = xl.image_folder(tmp_path)
    before = ds.fingerprint()
    _edit_in_place(path, seed=1)
    assert ds.fingerprint() != before
    assert ds.fingerprint() == xl.image_folder(tmp_path).fingerprint()


def test_feature_cache_is_not_stale_after_an_edit_in_place(tmp_path):
    root = tmp_path / "images"
    path = root / "a" / "x.bmp"
    path.parent.mkdir(parents=True)
    Image.fromarray(_noise(6, 5, 0)).save(path, "BMP")
    _save_rgb(root / "b" / "y.png")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    old, _ = xl.extract_features(model, xl.image_folder(root), cache=True, progress=False)
    _edit_in_place(path, seed=1)
    new, _ = xl.extract_features(model, xl.image_folder(root), cache=True, progress=False)
    fresh, _ = xl.extract_features(model, xl.image_folder(root), cache=False, progress=False)
    assert torch.equal(new, fresh) and not torch.equal(new[0], old[0])


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


# --------------------------------------------------------------------------- photo_regions
@pytest.mark.parametrize("height, width", [(300, 451), (512, 512), (102, 102), (600, 512)])
def test_photo_regions_splits_never_overlap(height, width):
    boxes = {split: data.region_bounds(split, height, width) for split in ("train", "val", "test")}
    mask = np.zeros((height, width), dtype=int)
    for top, bottom, left, right in boxes.values():
        assert bottom > top and right > left
        mask[top:bottom, left:right] += 1
    assert mask.max() == 1 and mask.min() == 1, "the three regions tile the photo without overlap"
    assert boxes["test"][0] >= boxes["train"][1] and boxes["val"][2] >= boxes["train"][3]


def test_photo_regions_cut_patches_only_from_their_region(monkeypatch):
    """A photo whose rows say which split owns them: every patch shows only its own split's mark."""
    h, w = 120, 160
    marks = {"train": 40, "val": 130, "test": 220}
    photo = np.zeros((h, w), dtype=np.uint8)
    for split, value in marks.items():
        top, bottom, left, right = data.region_bounds(split, h, w)
        photo[top:bottom, left:right] = value
    photo += (np.random.default_rng(0).random(photo.shape) < 0.1).astype(np.uint8)  # a faint texture
    monkeypatch.setattr(data, "_REGION_PHOTOS", ("marked",))
    monkeypatch.setattr(data, "_region_photos", lambda: {"marked": photo})
    for split in marks:
        ds = data.photo_regions(split, n_per_class=20, size=16)
        assert ds.images.shape == (20, 16, 16, 3) and ds.classes == ["marked"]
        # within one region a patch is nearly flat (std about 14 after the contrast step); one that
        # straddled two regions would be stretched to the full std of 48
        assert all(img.std() < 25 for img in ds.images), split


def test_photo_regions_are_grey_balanced_and_repeatable():
    train = data.photo_regions("train", size=32)
    assert len(train.classes) == 19 and np.bincount(train.labels).tolist() == [10] * 19
    assert (train.images[..., 0] == train.images[..., 2]).all(), "greyscale: no colour to use"
    assert abs(train.images.mean() - 128) < 6, "every patch brought to the same brightness"
    assert np.array_equal(data.photo_regions("train", size=32).images, train.images)
    assert not np.array_equal(data.photo_regions("train", size=32, seed=1).images, train.images)
    assert len(data.photo_regions("val", size=32)) == 190 and len(data.photo_regions("test", size=32)) == 570
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        data.photo_regions("validation")


def test_stack_gives_every_item_as_two_tensors():
    data = xl.data.shapes(n_per_class=2, size=16, seed=0).with_transform(lambda im: torch.tensor(np.array(im)).permute(2, 0, 1).float())
    images, labels = xl.data.stack(data)
    assert images.shape == (len(data), 3, 16, 16) and labels.dtype == torch.int64
    assert torch.equal(images[3], data[3][0]) and labels.tolist() == list(data.labels)


def test_package_photos_are_the_photos_behind_photo_patches_as_copies():
    photos = data.package_photos()
    assert list(photos) == data.photo_patches("test", n_per_class=1, size=8).classes
    for name, photo in photos.items():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3 and min(photo.shape[:2]) >= 256, name
    photos["cat"][:] = 0
    assert data.package_photos()["cat"].any(), "a copy: changing it leaves the photos behind photo_patches alone"
