"""Image corruptions in the style of ImageNet-C (Hendrycks & Dietterich, 2019): an input-level
domain shift you can dial, on real photos.

Six corruptions, each at severities 1 to 5 (0 leaves the image as it is): Gaussian noise,
Gaussian blur, JPEG compression, contrast loss, pixelation and fog. The parameters are the
paper's, with the blur radius scaled to the image's size (the paper's images are 224 px), so
that severity 3 means roughly what it means on ImageNet-C. Every corruption is seeded: the same
image, severity and seed give the same pixels on every machine, and the severities of one
image share one random pattern (noise, fog), so that only the strength changes along a ladder::

    from xferlib import corruptions
    foggy = corruptions.corrupt(photo, "fog", severity=3, seed=0)        # uint8 [H, W, 3]
    ladder = corruptions.corrupt_set(test_set, "gaussian_noise", severity=4)

Used by the lessons on domain shift and robust fine-tuning.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

SEVERITIES = (0, 1, 2, 3, 4, 5)

# The paper's parameters, severity 1 to 5.
_NOISE_SD = (0.08, 0.12, 0.18, 0.26, 0.38)             # on [0, 1] pixels
_BLUR_SIGMA = (1.0, 2.0, 3.0, 4.0, 6.0)                # pixels at 224 px
_JPEG_QUALITY = (25, 18, 15, 10, 7)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)                 # share of the contrast kept
_PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)                 # share of the resolution kept
_FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # (strength, decay of the fractal)


def _as_array(image) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3] (or a PIL image), got {array.dtype} {array.shape}")
    return array


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _plasma(decay: float, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Fractal (diamond-square) noise on a ``size`` x ``size`` torus, in [0, 1]: the texture of
    fog. As in the reference code, the random step starts at 100 x 100 and each level divides
    its scale by ``decay`` (so the amplitude falls by ``decay`` squared): small decays, rough fog."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half:size:step, half:size:step] = wibbled(square)          # centres of the squares
        centres = grid[half:size:step, half:size:step]
        grid[0:size:step, half:size:step] = wibbled(centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        grid[half:size:step, 0:size:step] = wibbled(centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step, wibble = half, wibble / decay
    grid -= grid.min()
    return grid / grid.max()


def corrupt(image, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """``image`` (uint8 ``[H, W, 3]`` or PIL) with corruption ``kind`` at ``severity`` 0 to 5."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 0 to 5, got {severity!r}")
    array = _as_array(image)
    if severity == 0:
        return array.copy()
    # one random pattern per image and kind, whatever the severity: a ladder changes only in strength
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(kind)])
    return CORRUPTIONS[kind](array, severity - 1, rng)


def _gaussian_noise(x, s, rng):
    return _to_uint8(x / 255.0 + rng.normal(0, _NOISE_SD[s], x.shape))


def _gaussian_blur(x, s, rng):
    radius = _BLUR_SIGMA[s] * min(x.shape[:2]) / 224
    return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(radius)))


def _jpeg(x, s, rng):
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=_JPEG_QUALITY[s])
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


def _contrast(x, s, rng):
    x = x / 255.0
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - mean) * _CONTRAST[s] + mean)


def _pixelate(x, s, rng):
    h, w = x.shape[:2]
    small = Image.fromarray(x).resize((max(1, int(w * _PIXELATE[s])), max(1, int(h * _PIXELATE[s]))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST))


def _fog(x, s, rng):
    strength, decay = _FOG[s]
    h, w = x.shape[:2]
    fog = Image.fromarray(_plasma(decay, rng)[:224, :224].astype(np.float32)).resize((w, h), Image.BILINEAR)  # the paper's 224 px view
    x = x / 255.0
    top = x.max()
    x = x + strength * np.asarray(fog)[..., None]
    return _to_uint8(x * top / (top + strength))


CORRUPTIONS = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "jpeg": _jpeg,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "fog": _fog,
}


def corrupt_set(dataset, kind: str, severity: int, seed: int = 0):
    """A copy of an in-memory image set (``xl.data.ArrayImages``) with every image corrupted;
    image ``i`` gets its own seeded noise, so the copy is the same on every run."""
    from .data import ArrayImages

    images = np.stack([corrupt(img, kind, severity, seed=seed * 1_000_003 + i) for i, img in enumerate(dataset.images)])
    return ArrayImages(images, dataset.labels, dataset.classes, dataset.transform, name=f"{dataset.name}/{kind}-{severity}")
