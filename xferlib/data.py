"""Datasets and transforms: image folders that never crash mid-epoch, offline target sets
built from photos that ship in packages, a generated family with a controllable domain
shift, and loaders for well-known online sets (real download code, checksums, clear
errors when offline).
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from .storage import UnkeyableTransform, transform_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# --------------------------------------------------------------------------- images to RGB
def to_rgb(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image as 8-bit RGB: greyscale, palette, transparency (composited on
    ``background``), CMYK, 16-bit and float images all come out the same way."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit: scale the full 0..65535 range
        arr = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path) -> Image.Image:
    """Open an image file fully (no lazy decoding) and return it as RGB."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def check_image(path) -> str | None:
    """None if ``path`` decodes as an image, else the reason it does not."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as im:
            im.load()
        return None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError) as err:
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
    """Image files with known labels (what the online loaders return), decoded on access."""

    def __init__(self, paths, labels, classes, transform=None, name="files"):
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes, self.transform, self.name = list(classes), transform, name

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            image = load_image(path)
        except Exception as err:
            raise OSError(f"Cannot read image {path}: {err}") from err
        return self._apply(image), int(self.labels[index])

    def _fingerprint_data(self, h):
        h.update(self.name.encode())
        for path in self.paths:
            try:
                st = os.stat(path)
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{path}|missing".encode())

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
        self.root = root
        self.name = str(root)
        self.transform = transform
        self.classes = [p.name for p in class_dirs]
        self.skipped: list[tuple[str, str]] = []
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
                    self.skipped.append((str(path), reason))
            if found == 0:
                self.skipped.append((str(class_dir), "class folder with no readable image"))
        if strict and self.skipped:
            listing = "\n".join(f"  {p}: {r}" for p, r in self.skipped)
            raise ValueError(f"{len(self.skipped)} unusable file(s) under {root}:\n{listing}")
        empty = [p for p, r in self.skipped if r.startswith("class folder")]
        if empty:
            raise ValueError(f"No readable image in class folder(s): {', '.join(empty)}")
        if self.skipped and verbose:
            listing = "\n".join(f"  {p}: {r}" for p, r in self.skipped)
            warnings.warn(f"Left out {len(self.skipped)} file(s) under {root}:\n{listing}", stacklevel=3)
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)

    def __repr__(self):
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} classes)"


def image_folder(root, transform=None, strict: bool = False, verbose: bool = True) -> ImageFolder:
    """A dataset of ``(tensor, label)`` from ``root/<class>/<image>`` with ``.classes``.

    Every file is decoded once up front: files that are empty, corrupt or not images are
    left out and reported by name (in ``.skipped``, and as a warning), or, with
    ``strict=True``, refused together in one error. Every image mode comes out as RGB.
    Without a transform the items are tensors in ``[0, 1]``.
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
    """A file could not be downloaded, or did not match its checksum."""


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_url(url: str, folder, md5: str | None, filename: str | None = None, timeout: float = 30, progress: bool | None = None) -> Path:
    """Download ``url`` into ``folder`` (atomically) and check its MD5; return the path.

    A file already there with the right checksum is not fetched again. A partial download
    never takes the final name; a checksum mismatch deletes the download and says so.
    """
    import http.client
    import urllib.error
    import urllib.request

    from .training import progress_bar

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (filename or url.rstrip("/").rsplit("/", 1)[-1])
    if target.exists() and (md5 is None or md5sum(target) == md5):
        return target
    partial = target.with_name(target.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            written = 0
            with progress_bar(total=total, unit="B", unit_scale=True, desc=target.name, enable=progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
            if total is not None and written < total:
                raise OSError(f"connection closed after {written} of {total} bytes")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"Cannot download {url} ({getattr(err, 'reason', err)}). Are you offline? "
            "The offline datasets xl.data.photo_patches(), xl.data.digits() and xl.data.shapes() need no download."
        ) from err
    if md5 is not None:
        got = md5sum(partial)
        if got != md5:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{url}: checksum mismatch (MD5 {got}, expected {md5}); the download was deleted")
    os.replace(partial, target)
    return target


def _extract(archive: Path, folder: Path) -> None:
    import tarfile

    with tarfile.open(archive) as tar:
        try:
            tar.extractall(folder, filter="data")  # refuses absolute paths and links out of folder
        except TypeError:  # Python without extraction filters
            tar.extractall(folder)


# Files and checksums as published by the datasets' authors (the same ones torchvision uses).
ONLINE_SOURCES = {
    "flowers102": {
        "base_url": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        "files": {
            "102flowers.tgz": "52808999861908f626f3c1f4e79d11fa",
            "imagelabels.mat": "e0620be6f572b9609742df49c70aed4d",
            "setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c",
        },
    },
    "oxford_pets": {
        "base_url": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/",
        "files": {
            "images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
            "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f",
        },
    },
}


def _fetch_all(name: str, root, download: bool) -> Path:
    source = ONLINE_SOURCES[name]
    folder = Path(root).expanduser() / name
    marker = folder / ".complete"
    if marker.exists():
        return folder
    if not download:
        raise FileNotFoundError(f"{name} is not in {folder}; pass download=True to fetch it")
    for filename, md5 in source["files"].items():
        path = download_url(source["base_url"] + filename, folder, md5)
        if filename.endswith((".tgz", ".tar.gz")):
            _extract(path, folder)
    marker.touch()
    return folder


def flowers102(root="~/.cache/xferlib/data", split: str = "train", transform=None, download: bool = True) -> FileList:
    """Oxford Flowers-102 (102 classes; 1,020 train / 1,020 val / 6,149 test images), downloaded
    once into ``root`` with checksums. Needs the internet the first time."""
    from scipy.io import loadmat

    splits = {"train": "trnid", "val": "valid", "test": "tstid"}
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(splits)}, got {split!r}")
    folder = _fetch_all("flowers102", root, download)
    # np.ravel, not .ravel(): squeeze_me turns a one-element array into a plain int
    ids = np.ravel(loadmat(folder / "setid.mat", squeeze_me=True)[splits[split]]).tolist()
    all_labels = np.ravel(loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"]) - 1
    paths = [folder / "jpg" / f"image_{i:05d}.jpg" for i in ids]
    labels = [int(all_labels[i - 1]) for i in ids]
    from torchvision.datasets import Flowers102

    return FileList(paths, labels, Flowers102.classes, transform, name=f"flowers102/{split}")


def oxford_pets(root="~/.cache/xferlib/data", split: str = "trainval", transform=None, download: bool = True) -> FileList:
    """Oxford-IIIT Pet (37 breeds of cats and dogs; 3,680 trainval / 3,669 test images),
    downloaded once into ``root`` with checksums. Needs the internet the first time."""
    if split not in ("trainval", "test"):
        raise ValueError(f"split must be 'trainval' or 'test', got {split!r}")
    folder = _fetch_all("oxford_pets", root, download)
    paths, labels, names = [], [], {}
    for line in (folder / "annotations" / f"{split}.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        image_id, class_id, *_ = line.split()
        label = int(class_id) - 1
        names.setdefault(label, " ".join(part.title() for part in image_id.rsplit("_", 1)[0].split("_")))
        paths.append(folder / "images" / f"{image_id}.jpg")
        labels.append(label)
    classes = [names.get(i, str(i)) for i in range(max(names) + 1)]
    return FileList(paths, labels, classes, transform, name=f"oxford_pets/{split}")
