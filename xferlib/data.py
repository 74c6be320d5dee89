"""Datasets and transforms: image folders that never crash mid-epoch, offline target sets
built from photos that ship in packages, a generated family with a controllable domain
shift, and the well-known online sets (fetched and checksummed by torchvision, with clear
errors when offline).
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from .storage import UnkeyableTransform, cache_dir, file_digest, transform_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# --------------------------------------------------------------------------- images to RGB
def to_rgb(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image as 8-bit RGB: greyscale, palette, transparency (composited on
    ``background``), CMYK, 16-bit and float images all come out the same way.

    16-bit images (modes ``I;16*``) use the full 0..65535 range: 65535 is white.

    32-bit integer and float images (modes ``I`` and ``F``: scientific TIFFs, saved masks,
    depth maps) carry no agreed range, so one rule decides, looking at the image's values:

    * all within [0, 1]: scaled by 255 (0.5 becomes 128), not stretched;
    * else all within [0, 255]: used as they are (rounded);
    * else: stretched so that the smallest value is black and the largest white;
    * a constant image outside both ranges has nothing to stretch: it becomes mid-grey (128).

    NaN and -inf count as the smallest finite value, +inf as the largest.
    Trap: each image is judged on its own, so in a folder of float images whose ranges differ
    (one within [0, 255], another reaching 300) the second is stretched and the first is not;
    bring such images to one scale yourself before saving them.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit: scale the full 0..65535 range
        arr = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_wide_to_8bit(np.asarray(image, dtype=np.float64)), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_8bit(arr: np.ndarray) -> np.ndarray:
    """Values of an ``I`` or ``F`` image as uint8, by the rule in :func:`to_rgb`."""
    if arr.size == 0:
        return arr.astype(np.uint8)
    finite = np.isfinite(arr)
    if not finite.all():
        values = arr[finite]
        lo, hi = (values.min(), values.max()) if values.size else (0.0, 0.0)
        arr = np.where(finite, arr, np.where(arr == np.inf, hi, lo))
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 1:
        arr = arr * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif hi > lo:
        arr = (arr - lo) / (hi - lo) * 255.0
    else:
        arr = np.full_like(arr, 128.0)
    return arr.round().astype(np.uint8)


def load_image(path) -> Image.Image:
    """Decode an image file fully (no lazy decoding), turned upright, as RGB.

    Phones store a photo as the sensor saw it and record the turn in the EXIF Orientation
    tag; every photo viewer applies it, so we do too (``ImageOps.exif_transpose``), or a
    portrait photo reaches the network lying on its side. An EXIF block too malformed to
    read leaves the image as stored rather than losing it.
    """
    with Image.open(path) as im:
        im.load()
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception:  # a broken EXIF block: the pixels are still good
            pass
        return to_rgb(im)


def check_image(path) -> str | None:
    """None if ``path`` looks like an image PIL can decode, else the reason it does not.

    Only the header is read (well under a millisecond, where decoding a 3-megapixel photo
    takes 10 to 30 ms): the file must not be empty, its format must be recognised, its size
    known and not zero, and its pixel count within PIL's decompression-bomb limit (a 100 KB
    PNG can claim 30000x30000 pixels and need gigabytes to decode). A file cut short after
    its header passes here; it is caught when it is loaded (see :class:`FileList`).
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as im:
            width, height = im.size
        if width <= 0 or height <= 0:
            return f"no pixels (size {width}x{height})"
        return None
    except Exception as err:  # whatever a damaged file makes a PIL plugin raise, it is this file's fault
        return _reason(err)


def _reason(err: Exception) -> str:
    """Why an image file cannot be used, in words."""
    if isinstance(err, Image.DecompressionBombError):
        return f"too many pixels (decompression bomb?): {err}"
    if isinstance(err, UnidentifiedImageError):
        return "not an image"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    return f"unreadable ({err})"


def _tensor_transform(image: Image.Image) -> torch.Tensor:
    return T.functional.to_tensor(image)


# --------------------------------------------------------------------------- datasets
class _LabelledDataset(Dataset):
    """Common parts: ``classes``, integer ``labels``, ``with_transform`` and a fingerprint."""

    classes: list[str]
    labels: np.ndarray
    transform: Callable | None

    def __len__(self):
        return len(self.labels)

    def with_transform(self, transform):
        """A copy that shares the data but applies another transform."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.transform = transform
        return clone

    def _apply(self, image: Image.Image):
        return (self.transform or _tensor_transform)(image)

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(type(self).__name__.encode())
        h.update(repr(self.classes).encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        self._fingerprint_data(h)
        try:
            h.update(transform_key(self.transform).encode())
        except UnkeyableTransform as err:
            raise UnkeyableTransform(
                f"{self!r}: {err}. Its results cannot be cached safely: make the transform a T.Compose of "
                "torchvision transforms or a plain function, or pass cache_key='<a name that changes when it does>'."
            ) from None
        return h.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return dict(zip(self.classes, counts.tolist()))


class FileList(_LabelledDataset):
    """Image files with known labels (what :func:`image_folder` and the online loaders
    return), decoded on access.

    A file that fails to decode when it is needed (cut short by an interrupted copy, deleted
    since, a decompression bomb) does not end the epoch: the next image of the same class
    that decodes stands in for it (the other images with that label after it, in order,
    wrapping round), a warning names the file and the reason, once per file, and
    ``failed`` lists ``(path, reason)``. Only when no image of the class decodes is an
    OSError raised, naming the files. ``skipped`` lists the files left out before any
    loading (by :func:`image_folder`'s header check, or missing from a download).

    Traps: with ``num_workers > 0`` every DataLoader worker loads in a process of its own,
    so the warnings come from the workers and ``failed`` in your process stays empty (one
    pass with ``num_workers=0`` fills it). The stand-in comes from the whole FileList: in a
    :class:`Subset` it may be an image from outside the subset.

    ``fingerprint()`` hashes the bytes of every file (about 0.015 s per 1,000 small JPEGs),
    so an image edited in place is noticed even when its size and time stamp are put back.
    """

    def __init__(self, paths, labels, classes, transform=None, name="files"):
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes, self.transform, self.name = list(classes), transform, name
        self.skipped: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []

    def __getitem__(self, index):
        index = range(len(self.paths))[index]  # negative indices too; IndexError past the end
        try:
            image = load_image(self.paths[index])
        except Exception as err:
            image = self._stand_in(index, err)
        return self._apply(image), int(self.labels[index])

    def _stand_in(self, index: int, err: Exception) -> Image.Image:
        """The first image of the same class after ``index`` (wrapping) that decodes."""
        known_bad = {path for path, _ in self.failed}
        new = [self._record(index, err, known_bad)]
        same = np.flatnonzero(self.labels == self.labels[index])
        at = int(np.searchsorted(same, index))
        for other in np.concatenate([same[at + 1 :], same[:at]]).tolist():
            if str(self.paths[other]) in known_bad:
                continue
            try:
                image = load_image(self.paths[other])
            except Exception as other_err:
                new.append(self._record(other, other_err, known_bad))
                continue
            for path, reason in filter(None, new):
                warnings.warn(
                    f"Cannot read image {path} ({reason}); {self.paths[other].name}, another image of class "
                    f"{self.classes[self.labels[index]]!r}, stands in for it. .failed lists every such file; "
                    "replace or delete it.",
                    stacklevel=3,
                )
            return image
        of_class = {str(self.paths[i]) for i in same}
        bad = [f"  {p}: {r}" for p, r in self.failed if p in of_class]
        raise OSError(
            f"No image of class {self.classes[self.labels[index]]!r} can be read, so none can stand in for "
            f"{self.paths[index]}:\n" + "\n".join(bad)
        ) from err

    def _record(self, index: int, err: Exception, known_bad: set) -> tuple[str, str] | None:
        path = str(self.paths[index])
        if path in known_bad:
            return None
        entry = (path, _reason(err))
        self.failed.append(entry)
        known_bad.add(path)
        return entry

    def _fingerprint_data(self, h):
        h.update(self.name.encode("utf-8", "surrogatepass"))
        for path in self.paths:
            h.update(os.fsencode(path) + b"\0")  # bytes: a file name need not be valid UTF-8
            try:
                h.update(file_digest(path).digest())  # content, not size and mtime: edits in place count
            except OSError:
                h.update(b"missing")

    def __repr__(self):
        return f"FileList({self.name!r}, {len(self)} images, {len(self.classes)} classes)"


class ImageFolder(FileList):
    """Images in ``root/<class>/<file>``. See :func:`image_folder`."""

    def __init__(self, root, transform=None, strict: bool = False, verbose: bool = True):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ValueError(f"{root} has no class sub-folders; expected {root}/<class name>/<image files>")
        skipped: list[tuple[str, str]] = []
        paths, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            found = 0
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                reason = check_image(path)
                if reason is None:
                    paths.append(path)
                    labels.append(label)
                    found += 1
                else:
                    skipped.append((str(path), reason))
            if found == 0:
                skipped.append((str(class_dir), "class folder with no readable image"))
        if strict and skipped:
            listing = "\n".join(f"  {p}: {r}" for p, r in skipped)
            raise ValueError(f"{len(skipped)} unusable file(s) under {root}:\n{listing}")
        empty = [p for p, r in skipped if r.startswith("class folder")]
        if empty:
            raise ValueError(f"No readable image in class folder(s): {', '.join(empty)}")
        if skipped and verbose:
            listing = "\n".join(f"  {p}: {r}" for p, r in skipped)
            warnings.warn(f"Left out {len(skipped)} file(s) under {root}:\n{listing}", stacklevel=3)
        super().__init__(paths, labels, [p.name for p in class_dirs], transform, name=str(root))
        self.root = root
        self.skipped = skipped

    def __repr__(self):
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} classes)"


def image_folder(root, transform=None, strict: bool = False, verbose: bool = True) -> ImageFolder:
    """A dataset of ``(tensor, label)`` from ``root/<class>/<image>`` with ``.classes``.

    Every file's header is checked up front, without decoding (a folder of 100 phone photos
    is indexed in a blink instead of seconds): files that are empty, not images, or claim
    more pixels than PIL will decode (a decompression bomb) are left out and reported by
    name (in ``.skipped``, and as a warning), or, with ``strict=True``, refused together in
    one error. A file whose header is fine but whose data is cut short is found when it is
    loaded: another image of its class stands in, a warning names it, and ``.failed`` lists
    it (see :class:`FileList`). Every image mode comes out as RGB, turned upright as its
    EXIF says. Without a transform the items are tensors in ``[0, 1]``.
    """
    return ImageFolder(root, transform=transform, strict=strict, verbose=verbose)


class ArrayImages(_LabelledDataset):
    """Images held in memory as a uint8 array ``[N, H, W, 3]`` with integer labels."""

    def __init__(self, images: np.ndarray, labels, classes: Sequence[str], transform=None, name: str = "images"):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{name}: expected uint8 images of shape [N, H, W, 3], got {images.dtype} {images.shape}")
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(images):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"{name}: labels must lie in 0..{len(classes) - 1}")
        self.images, self.labels, self.classes = images, labels, list(classes)
        self.transform, self.name = transform, name

    def __getitem__(self, index):
        return self._apply(Image.fromarray(self.images[index])), int(self.labels[index])

    def _fingerprint_data(self, h):
        h.update(self.name.encode())
        h.update(np.ascontiguousarray(self.images).tobytes())

    def __repr__(self):
        size = "x".join(map(str, self.images.shape[1:3]))
        return f"ArrayImages({self.name!r}, {len(self)} images {size}, {len(self.classes)} classes)"


class Subset(_LabelledDataset):
    """Part of a labelled dataset that keeps ``classes``, ``labels`` and ``with_transform``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.classes = dataset.classes
        self.labels = np.asarray(dataset.labels)[self.indices]

    @property
    def transform(self):
        return self.dataset.transform

    def with_transform(self, transform):
        return Subset(self.dataset.with_transform(transform), self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def _fingerprint_data(self, h):
        h.update(self.dataset.fingerprint().encode())
        h.update(self.indices.tobytes())

    def __repr__(self):
        return f"Subset({len(self)} of {self.dataset!r})"


def _labels_of(data) -> np.ndarray:
    labels = getattr(data, "labels", None)
    if labels is None:
        labels = data
    return np.asarray(labels, dtype=np.int64)


def sample_per_class(data, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` examples of every class, drawn at random (a few-shot training set)."""
    labels = _labels_of(data)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise ValueError(f"Class {c} has {len(members)} examples, fewer than the {k} asked for")
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


def stratified_split(data, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with the same class proportions in both."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    labels = _labels_of(data)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, int(round(len(members) * test_fraction)))
        if n_test >= len(members):
            raise ValueError(f"Class {c} has {len(members)} example(s): too few to split")
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of ``dataset`` (transform applied) as one tensor of inputs and one of labels (lessons 03, 04)."""
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return inputs, torch.as_tensor(_labels_of(dataset))


def few_shot(dataset, k: int, seed: int = 0) -> Subset:
    """A :class:`Subset` of ``k`` random examples per class."""
    return Subset(dataset, sample_per_class(dataset, k, seed))


# --------------------------------------------------------------------------- offline sets
@functools.lru_cache(maxsize=1)
def _package_photos() -> dict[str, np.ndarray]:
    """Real photographs that ship inside scikit-image and scikit-learn (no download)."""
    from skimage import data as sk
    from sklearn.datasets import load_sample_image

    def rgb(a):
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]

    return {
        "brick": rgb(sk.brick()),
        "grass": rgb(sk.grass()),
        "gravel": rgb(sk.gravel()),
        "coffee": rgb(sk.coffee()),
        "cat": rgb(sk.chelsea()),
        "astronaut": rgb(sk.astronaut()),
        "rocket": rgb(sk.rocket()),
        "temple": rgb(load_sample_image("china.jpg")),
        "flower": rgb(load_sample_image("flower.jpg")),
        "galaxies": rgb(sk.hubble_deep_field()),
    }


def package_photos() -> dict[str, np.ndarray]:
    """The ten photographs that :func:`photo_patches` cuts from (they ship inside scikit-image
    and scikit-learn), by name, as uint8 ``[H, W, 3]`` copies: whole photos, for asking an
    ImageNet classifier about them (lesson 11)."""
    return {name: photo.copy() for name, photo in _package_photos().items()}


def photo_patches(split: str = "train", n_per_class: int = 60, size: int = 64, seed: int = 0, transform=None) -> ArrayImages:
    """Which photo is this patch from? Ten classes cut from real photographs that ship in
    packages (textures such as brick, grass and gravel; a cat, coffee, a temple, ...).

    Each photo is cut into a 4x4 grid of tiles; train patches come from the "white" tiles of
    the checkerboard and test patches from the "black" ones, so no pixel is shared between
    the splits. ImageNet features help a great deal here: these are natural images.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    photos = _package_photos()
    images, labels = [], []
    for label, (name, photo) in enumerate(photos.items()):
        h, w = photo.shape[:2]
        tile = min(h, w) // 4
        tiles = [
            (r * tile, c * tile)
            for r in range(h // tile)
            for c in range(w // tile)
            if (r + c) % 2 == (0 if split == "train" else 1)
        ]
        for _ in range(n_per_class):
            y0, x0 = tiles[rng.integers(len(tiles))]
            side = int(rng.integers(tile // 2, tile + 1))
            y = y0 + int(rng.integers(0, tile - side + 1))
            x = x0 + int(rng.integers(0, tile - side + 1))
            patch = Image.fromarray(np.ascontiguousarray(photo[y : y + side, x : x + side]))
            patch = patch.resize((size, size), Image.BILINEAR)
            if rng.random() < 0.5:
                patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
            images.append(np.asarray(patch))
            labels.append(label)
    return ArrayImages(np.stack(images), labels, list(photos), transform, name=f"photo_patches/{split}")


# Real photographs that ship inside installed packages, each with a stated licence (provenance in
# xferlib/datasets/README.md). Name -> (package, how to get it).
_REGION_PHOTOS = ("astronaut", "cat", "coffee", "rocket", "galaxies", "retina", "tissue", "temple", "flower",
                  "camera", "coins", "text", "clock", "cell", "vessels", "brick", "grass", "gravel", "hopper")


@functools.lru_cache(maxsize=1)
def _region_photos() -> dict[str, np.ndarray]:
    """The 19 photos of :func:`photo_regions` as 8-bit greyscale, each stretched to 0..255."""
    import matplotlib.cbook as cbook
    from skimage import data as sk
    from sklearn.datasets import load_sample_image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    raw = {
        "astronaut": sk.astronaut(), "cat": sk.chelsea(), "coffee": sk.coffee(), "rocket": sk.rocket(),
        "galaxies": sk.hubble_deep_field(), "retina": sk.retina(), "tissue": sk.immunohistochemistry(),
        "temple": load_sample_image("china.jpg"), "flower": load_sample_image("flower.jpg"),
        "camera": sk.camera(), "coins": sk.coins(), "text": sk.text(), "clock": sk.clock(), "cell": sk.cell(),
        "vessels": sk.microaneurysms(), "brick": sk.brick(), "grass": sk.grass(), "gravel": sk.gravel(), "hopper": hopper,
    }
    photos = {}
    for name in _REGION_PHOTOS:
        a = np.asarray(raw[name], dtype=np.float64)
        if a.ndim == 3:
            a = a[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma: no colour left to use
        a = (a - a.min()) / max(a.max() - a.min(), 1e-9) * 255
        photos[name] = a.round().astype(np.uint8)
    return photos


_REGION_SPLITS = ("train", "val", "test")


def region_bounds(split: str, height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the part of a photo that ``split`` of
    :func:`photo_regions` cuts from: train the left 3/4 of the top two-thirds, val the rest of
    the top two-thirds, test the bottom third. The three never overlap."""
    top = (2 * height) // 3
    return {"train": (0, top, 0, (3 * width) // 4), "val": (0, top, (3 * width) // 4, width), "test": (top, height, 0, width)}[split]


def photo_regions(split: str = "train", n_per_class: int | None = None, size: int = 64, seed: int = 0,
                  transform=None) -> ArrayImages:
    """Which of 19 photographs is this patch from, judged from a part of the photo never seen in
    training. Greyscale, so colour cannot give the answer away.

    Every photo (a cat, coffee, a rocket launch, the Hubble deep field, a retina, coins, brick,
    Grace Hopper, ...: real photos that ship in scikit-image, scikit-learn and matplotlib, see
    ``xferlib/datasets/README.md``) is divided into regions::

        +----------------------+-------+
        |  train (left 3/4)    |  val  |   top two-thirds
        +----------------------+-------+
        |  test (whole width)          |   bottom third
        +------------------------------+

    and patches are cut only from their split's region, at the same scales (a side of 1/6 to 1/4
    of the photo's short side) in every split, each brought to the same mean brightness and
    contrast (so neither tells the photos apart), resized to ``size`` and flipped at random.

    What is held out is a region, not a photograph: the task is to recognise a scene from a part
    of it never seen, like a place from a new viewpoint. ``val`` (default 10 per class) is for
    every choice; ``test`` (default 30 per class) for the final figures; ``train`` defaults to 10
    per class (a few-shot target). Measured over 3 seeds with EfficientNet-Lite0 at 96 px: a
    linear probe on frozen ImageNet features reaches 0.77, the same probe on random weights
    0.19, an intensity histogram 0.37; chance is 0.05. So pretrained features carry most of the
    task, and there is room above them.
    """
    if split not in _REGION_SPLITS:
        raise ValueError(f"split must be one of {', '.join(_REGION_SPLITS)}, got {split!r}")
    n = {"train": 10, "val": 10, "test": 30}[split] if n_per_class is None else n_per_class
    if n < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n}")
    rng = np.random.default_rng([seed, _REGION_SPLITS.index(split)])
    images, labels = [], []
    for label, (name, photo) in enumerate(_region_photos().items()):
        short = min(photo.shape)
        y0, y1, x0, x1 = region_bounds(split, *photo.shape)
        for _ in range(n):
            side = int(rng.integers(short // 6, short // 4 + 1))
            side = min(side, y1 - y0, x1 - x0)
            y = int(rng.integers(y0, y1 - side + 1))
            x = int(rng.integers(x0, x1 - side + 1))
            crop = photo[y : y + side, x : x + side].astype(np.float64)
            crop = (crop - crop.mean()) / max(crop.std(), 1.0) * 48 + 128  # every patch the same brightness and contrast
            crop = np.clip(crop, 0, 255).round().astype(np.uint8)
            patch = Image.fromarray(crop).resize((size, size), Image.BILINEAR)
            if rng.random() < 0.5:
                patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
            images.append(np.asarray(patch.convert("RGB")))
            labels.append(label)
    return ArrayImages(np.stack(images), labels, list(_REGION_PHOTOS), transform, name=f"photo_regions/{split}/seed={seed}")


def digits(split: str = "train", size: int = 32, test_fraction: float = 0.3, transform=None) -> ArrayImages:
    """scikit-learn's 1,797 handwritten digits (8x8, greyscale), upscaled to ``size`` and
    made RGB. Far from ImageNet: pretrained features help little here."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    bunch = load_digits()
    pixels = (bunch.images / 16.0 * 255).round().astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    if split != "all":
        train, test = stratified_split(labels, test_fraction, seed=0)
        keep = train if split == "train" else test
        pixels, labels = pixels[keep], labels[keep]
    images = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR).convert("RGB")) for p in pixels])
    return ArrayImages(images, labels, [str(d) for d in range(10)], transform, name=f"digits/{split}")


SHAPES = ("circle", "square", "triangle", "cross", "ring")


def _shape_mask(kind: str, xx, yy, radius):
    r = np.hypot(xx, yy)
    if kind == "circle":
        return r < radius
    if kind == "square":
        return np.maximum(abs(xx), abs(yy)) < radius * 0.8
    if kind == "triangle":
        ok = yy < radius * 0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):
            ok &= xx * np.cos(angle) - yy * np.sin(angle) < radius * 0.5
        return ok
    if kind == "cross":
        arm = radius * 0.3
        return ((abs(xx) < arm) & (abs(yy) < radius)) | ((abs(yy) < arm) & (abs(xx) < radius))
    if kind == "ring":
        return (r < radius) & (r > radius * 0.55)
    raise ValueError(f"Unknown shape {kind!r}; known: {', '.join(SHAPES)}")


def shapes(n_per_class: int = 100, shift: float = 0.0, size: int = 32, seed: int = 0, classes: Sequence[str] = SHAPES, transform=None) -> ArrayImages:
    """Generated shapes with a domain shift you control.

    ``shift=0`` gives dark shapes on plain, light backgrounds; ``shift=1`` gives bright
    shapes on dark, striped and noisy backgrounds; values between blend the two styles.
    The task (which shape?) never changes, only the domain: ideal for domain adaptation and
    for seeing when a source model stops transferring.
    """
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must lie in [0, 1], got {shift}")
    rng = np.random.default_rng([seed, int(round(shift * 1000))])
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    images, labels = [], []
    for label, kind in enumerate(classes):
        for _ in range(n_per_class):
            cx, cy = rng.uniform(-0.3, 0.3, 2)
            radius = rng.uniform(0.35, 0.6)
            theta = rng.uniform(0, 2 * np.pi)
            xx = (gx - cx) * np.cos(theta) + (gy - cy) * np.sin(theta)
            yy = -(gx - cx) * np.sin(theta) + (gy - cy) * np.cos(theta)
            mask = _shape_mask(kind, xx, yy, radius)[..., None]
            # source style: light plain background, dark shape
            bg_src = rng.uniform(0.75, 0.95) + rng.normal(0, 0.03, (size, size, 1))
            fg_src = rng.uniform(0.0, 0.35, 3)
            # target style: dark background with coloured stripes and noise, bright shape
            freq, phase = rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
            stripes = 0.5 + 0.5 * np.sin(freq * np.pi * (gx * np.cos(theta) + gy * np.sin(theta)) + phase)
            bg_tgt = 0.1 + 0.35 * stripes[..., None] * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 0.08, (size, size, 3))
            fg_tgt = rng.uniform(0.65, 1.0, 3)
            bg = (1 - shift) * bg_src + shift * bg_tgt
            fg = (1 - shift) * fg_src + shift * fg_tgt
            img = np.where(mask, fg + rng.normal(0, 0.03, (size, size, 3)), bg)
            images.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
            labels.append(label)
    return ArrayImages(np.stack(images), labels, list(classes), transform, name=f"shapes/shift={shift:g}/seed={seed}")


# --------------------------------------------------------------------------- online sets
class DownloadError(RuntimeError):
    """A dataset could not be downloaded, or a file did not match its published checksum."""


# The torchvision class that fetches each online set: it downloads, checks the checksums its
# authors publish, and extracts. Names are resolved on first use (torchvision.datasets is slow
# to import); tests put fake classes here.
_TORCHVISION_SETS: dict[str, str | type] = {"flowers102": "Flowers102", "oxford_pets": "OxfordIIITPet",
                                             "imagenette": "Imagenette", "hymenoptera": "Hymenoptera"}
_FOLDERS = {"flowers102": "flowers-102", "oxford_pets": "oxford-iiit-pet",  # what each class creates under root
            "imagenette": "imagenette2-160", "hymenoptera": "hymenoptera_data"}
_OFFLINE_SETS = "xl.data.photo_patches(), xl.data.digits() and xl.data.shapes()"
_SOCKET_TIMEOUT = 60  # seconds without an answer that count as offline (torchvision sets none)


class Hymenoptera:
    """The ants-and-bees set of PyTorch's transfer-learning tutorial, fetched like torchvision's
    own sets (``Hymenoptera(root, split, download)``) with torchvision's download helper.

    No checksum is published for ``hymenoptera_data.zip``, so the check is its content: 124 ants
    and 120 bees for training, 70 ants and 83 bees for validation, as the tutorial states.
    """

    url = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
    counts = {"train": {"ants": 124, "bees": 120}, "val": {"ants": 70, "bees": 83}}
    classes = ["ants", "bees"]

    def __init__(self, root, split: str = "train", download: bool = False):
        from torchvision.datasets.utils import download_and_extract_archive

        folder = Path(root) / "hymenoptera_data"
        if download and not self._complete(folder):
            download_and_extract_archive(self.url, str(root), remove_finished=True)
        if not self._complete(folder):
            raise RuntimeError(f"{folder} is missing or incomplete; delete it and use download=True to fetch it again")

    def _complete(self, folder: Path) -> bool:
        return all(
            len([p for p in (folder / split / name).glob("*") if p.is_file()]) == count
            for split, per_class in self.counts.items() for name, count in per_class.items()
        )


def _fetch(name: str, root, split: str, download: bool, **options):
    """Let torchvision fetch (when ``download``) and verify ``name`` under ``root``; return
    the dataset object it builds and the folder the set lies in."""
    import http.client
    import socket
    import urllib.error

    source = _TORCHVISION_SETS[name]
    if isinstance(source, str):
        import torchvision.datasets

        source = Hymenoptera if source == "Hymenoptera" else getattr(torchvision.datasets, source)
    root = cache_dir() / "data" if root is None else Path(root).expanduser()
    folder = root / _FOLDERS[name]
    timeout = socket.getdefaulttimeout()
    if download and timeout is None:  # process-wide while it lasts: urllib offers no other handle
        socket.setdefaulttimeout(_SOCKET_TIMEOUT)
    try:
        made = source(root, split=split, download=download, **options)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, RuntimeError) as err:
        if not download:
            raise FileNotFoundError(
                f"{name} is not in {folder}, or is incomplete; pass download=True to fetch it "
                "(the internet is needed once)."
            ) from err
        raise DownloadError(
            f"Cannot download {name} into {folder} ({getattr(err, 'reason', None) or err}). Are you offline? "
            f"The offline datasets {_OFFLINE_SETS} need no download. If you are online, a partial or corrupt "
            f"download may be in the way: delete {folder} and try again."
        ) from err
    finally:
        socket.setdefaulttimeout(timeout)
    return made, folder


def _online_files(paths, labels, classes, transform, name: str, folder: Path) -> FileList:
    """A FileList of the files that are there; missing ones are left out, listed in
    ``.skipped`` and named in a warning (an extraction cut short leaves such gaps)."""
    present = [path.is_file() for path in paths]
    ds = FileList([p for p, ok in zip(paths, present) if ok], [y for y, ok in zip(labels, present) if ok], classes, transform, name)
    ds.skipped = [(str(p), "file not found") for p, ok in zip(paths, present) if not ok]
    if ds.skipped:
        listing = "\n".join(f"  {p}" for p, _ in ds.skipped[:10]) + ("\n  ..." if len(ds.skipped) > 10 else "")
        warnings.warn(
            f"Left out {len(ds.skipped)} image(s) of {name} missing from {folder} (an interrupted download or "
            f"extraction?); delete {folder} and load again with download=True to restore them:\n{listing}",
            stacklevel=3,
        )
    return ds


def flowers102(root=None, split: str = "train", transform=None, download: bool = True) -> FileList:
    """Oxford Flowers-102 (102 classes; 1,020 train / 1,020 val / 6,149 test images).

    torchvision's ``Flowers102`` downloads it once (about 330 MB; the internet is needed the
    first time), checks the published checksums and extracts it into
    ``root/flowers-102`` (``root`` defaults to ``$XFERLIB_CACHE/data``); this reads the
    files it leaves (``jpg/image_XXXXX.jpg``, ``imagelabels.mat``, ``setid.mat``).
    Offline, a :class:`DownloadError` says so; with ``download=False`` and nothing there,
    a FileNotFoundError.
    """
    from scipy.io import loadmat

    splits = {"train": "trnid", "val": "valid", "test": "tstid"}
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(splits)}, got {split!r}")
    source, folder = _fetch("flowers102", root, split, download)
    # np.ravel, not .ravel(): squeeze_me turns a one-element array into a plain int
    ids = np.ravel(loadmat(folder / "setid.mat", squeeze_me=True)[splits[split]]).tolist()
    all_labels = np.ravel(loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"]) - 1
    paths = [folder / "jpg" / f"image_{i:05d}.jpg" for i in ids]
    labels = [int(all_labels[i - 1]) for i in ids]
    return _online_files(paths, labels, list(type(source).classes), transform, f"flowers102/{split}", folder)


def oxford_pets(root=None, split: str = "trainval", transform=None, download: bool = True) -> FileList:
    """Oxford-IIIT Pet (37 breeds of cats and dogs; 3,680 trainval / 3,669 test images).

    torchvision's ``OxfordIIITPet`` downloads it once (about 800 MB; the internet is needed
    the first time), checks the published checksums and extracts it into
    ``root/oxford-iiit-pet`` (``root`` defaults to ``$XFERLIB_CACHE/data``); this reads the
    files it leaves (``images/*.jpg``, ``annotations/{trainval,test}.txt``). Breed names
    come from the image names (``american_bulldog_10`` is "American Bulldog"), read from
    both annotation files so that both splits list the same classes.
    """
    if split not in ("trainval", "test"):
        raise ValueError(f"split must be 'trainval' or 'test', got {split!r}")
    _, folder = _fetch("oxford_pets", root, split, download)
    names: dict[int, str] = {}
    paths, labels = [], []
    for part in ("trainval", "test"):
        listing = folder / "annotations" / f"{part}.txt"
        if part != split and not listing.exists():
            continue
        if not listing.exists():
            raise FileNotFoundError(f"{listing} is missing (an interrupted extraction?); delete {folder} and load again with download=True")
        for line in listing.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            image_id, class_id, *_ = line.split()
            label = int(class_id) - 1
            names.setdefault(label, " ".join(word.title() for word in image_id.rsplit("_", 1)[0].split("_")))
            if part == split:
                paths.append(folder / "images" / f"{image_id}.jpg")
                labels.append(label)
    classes = [names.get(i, str(i)) for i in range(max(names) + 1)]
    return _online_files(paths, labels, classes, transform, f"oxford_pets/{split}", folder)


def imagenette(root=None, split: str = "train", transform=None, download: bool = True) -> FileList:
    """Imagenette (fast.ai): ten easy ImageNet classes (tench, English springer, cassette player,
    chain saw, church, French horn, garbage truck, gas pump, golf ball, parachute); 9,469 train /
    3,925 val images, at 160 px on the short side.

    torchvision's ``Imagenette`` downloads it once (about 95 MB), checks the published checksum
    and extracts it into ``root/imagenette2-160``. Its classes are ImageNet classes, so an
    ImageNet backbone has seen them: transfer is close to its best here.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    made, folder = _fetch("imagenette", root, split, download, size="160px")
    wnids = list(made.wnids)
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        files = sorted(p for p in (folder / split / wnid).glob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
        paths += files
        labels += [label] * len(files)
    classes = [names[0] for names in made.classes]
    return _online_files(paths, labels, classes, transform, f"imagenette/{split}", folder)


def hymenoptera(root=None, split: str = "train", transform=None, download: bool = True) -> FileList:
    """Ants against bees: the 397 photos of PyTorch's transfer-learning tutorial (244 train /
    153 val), downloaded once (about 45 MB) and checked by their count per class (no checksum is
    published). Two classes that ImageNet knows (ant, bee), in hard photos: a small real target."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    made, folder = _fetch("hymenoptera", root, split, download)
    paths, labels = [], []
    for label, name in enumerate(made.classes):
        files = sorted(p for p in (folder / split / name).glob("*") if p.is_file())
        paths += files
        labels += [label] * len(files)
    return _online_files(paths, labels, list(made.classes), transform, f"hymenoptera/{split}", folder)


# --------------------------------------------------------------------------- one switch for lessons
TARGETS = ("photo_regions", "flowers102", "oxford_pets", "hymenoptera", "imagenette")


@dataclass(frozen=True)
class Target:
    """A lesson's data: ``train``, ``val`` (for every choice) and ``test`` (final figures only)."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    classes: list

    def __repr__(self):
        return f"Target({self.name!r}: {len(self.train)} train, {len(self.val)} val, {len(self.test)} test, {len(self.classes)} classes)"


def _carve(data, val_fraction: float, seed: int) -> tuple["Subset", "Subset"]:
    train, val = stratified_split(data, val_fraction, seed=seed)
    return Subset(data, train), Subset(data, val)


def load_target(name: str = "photo_regions", n_per_class: int | None = None, seed: int = 0, root=None,
                download: bool = True, val_fraction: float = 0.2, *, val_per_class: int | None = None,
                test_per_class: int | None = None, size: int = 64) -> Target:
    """The same three splits whatever the data, so a lesson's ``DATASET`` parameter can switch
    from the offline default to a real online set with no other change.

    - ``photo_regions`` (offline, the default): its own train / val / test regions, cut to order
      (``size`` is the side of its patches; the online sets keep their own image sizes).
    - ``flowers102``: its published train / val / test splits.
    - ``oxford_pets``, ``hymenoptera``, ``imagenette``: validation is carved from the training
      split (``val_fraction`` of each class, seeded); their published test or val split is the
      test set.

    ``n_per_class``, ``val_per_class`` and ``test_per_class`` keep that many examples per class
    of each split (drawn with ``seed``), for few-shot runs and for a CPU. Images come without a
    transform: add the backbone's with ``.with_transform``.
    """
    if name not in TARGETS:
        raise ValueError(f"Unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    if name == "photo_regions":  # cut to order: as many patches as asked for, none thrown away
        counts = {"train": n_per_class, "val": val_per_class, "test": test_per_class}
        train, val, test = (photo_regions(split, counts[split], size=size, seed=seed) for split in _REGION_SPLITS)
        return Target(name, train, val, test, list(train.classes))
    if name == "flowers102":
        train, val, test = (flowers102(root, split, download=download) for split in ("train", "val", "test"))
    else:
        loader, (fit_split, test_split) = {"oxford_pets": (oxford_pets, ("trainval", "test")),
                                           "hymenoptera": (hymenoptera, ("train", "val")),
                                           "imagenette": (imagenette, ("train", "val"))}[name]
        train, val = _carve(loader(root, fit_split, download=download), val_fraction, seed)
        test = loader(root, test_split, download=download)
    train, val, test = (split if k is None else few_shot(split, k, seed=seed)
                        for split, k in ((train, n_per_class), (val, val_per_class), (test, test_per_class)))
    return Target(name, train, val, test, list(train.classes))
