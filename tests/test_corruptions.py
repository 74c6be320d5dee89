"""The corruption ladder: every kind and severity keeps the image's shape, is repeatable, and
moves the image further from the original as the severity rises."""

import numpy as np
import pytest
from PIL import Image

import xferlib as xl
from xferlib import corruptions as C


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.asarray(Image.fromarray(data.chelsea()).resize((96, 72)))


def similarity(a, b) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


@pytest.mark.parametrize("kind", list(C.CORRUPTIONS))
def test_each_kind_keeps_the_shape_is_repeatable_and_worsens_with_severity(photo, kind):
    ladder = [C.corrupt(photo, kind, s, seed=3) for s in C.SEVERITIES]
    assert all(x.shape == photo.shape and x.dtype == np.uint8 for x in ladder)
    assert np.array_equal(ladder[0], photo)
    assert np.array_equal(C.corrupt(photo, kind, 3, seed=3), ladder[3]), "same seed, same pixels"
    scores = [similarity(x, photo) for x in ladder]
    assert not np.array_equal(ladder[1], photo), f"{kind} at severity 1 changes the image"
    # each step is no better than the one before (fog's severities 3 and 4 differ only in texture, as in the paper)
    assert all(later <= earlier + 0.02 for earlier, later in zip(scores, scores[1:])), scores
    assert scores[5] < scores[1] - 0.005, scores


def test_noise_depends_on_the_seed_and_pil_images_are_accepted(photo):
    a = C.corrupt(photo, "gaussian_noise", 2, seed=0)
    b = C.corrupt(photo, "gaussian_noise", 2, seed=1)
    assert not np.array_equal(a, b)
    assert np.array_equal(C.corrupt(Image.fromarray(photo), "gaussian_noise", 2, seed=0), a)


@pytest.mark.parametrize("kind, severity, message", [
    ("snow", 1, "Unknown corruption 'snow'.*fog"),
    ("fog", 6, "severity must be one of 0 to 5, got 6"),
    ("fog", True, "severity"),
])
def test_bad_arguments_are_named(photo, kind, severity, message):
    with pytest.raises(ValueError, match=message):
        C.corrupt(photo, kind, severity)


def test_a_grey_image_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"uint8 RGB.*\(8, 8\)"):
        C.corrupt(np.zeros((8, 8), dtype=np.uint8), "fog", 1)


def test_corrupt_set_makes_a_labelled_copy(photo):
    data = xl.data.ArrayImages(np.stack([photo, photo[::-1]]), [0, 1], ["up", "down"], name="two")
    foggy = C.corrupt_set(data, "fog", 2, seed=0)
    assert foggy.images.shape == data.images.shape and foggy.labels.tolist() == [0, 1]
    assert foggy.name == "two/fog-2" and foggy.fingerprint() != data.fingerprint()
    assert np.array_equal(C.corrupt_set(data, "fog", 2, seed=0).images, foggy.images)
