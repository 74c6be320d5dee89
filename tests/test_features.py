import pytest
import torch

import xferlib as xl
from xferlib import features as F


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

    def boom(*args, **kwargs):
        raise AssertionError("the backbone ran although the features were cached")

    monkeypatch.setattr(F, "_run", boom)
    again, labels = xl.extract_features(lite0, data, cache=tmp_path, progress=False)
    assert torch.equal(first, again) and len(labels) == 24
    monkeypatch.undo()
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
