"""xl.doctor: each rule catches a broken set-up and passes a correct one; the course's own
set-ups get no findings."""

import importlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms as T

import xferlib as xl
from xferlib.training import make_optimizer, param_groups

doctor_module = importlib.import_module("xferlib.diagnostics")


def classifier(classes=3):
    return xl.build_classifier(xl.load_backbone("efficientnet_lite0", pretrained=False, image_size=32), classes)


def frozen_classifier():
    model = classifier()
    xl.freeze(model.backbone)
    return model


def rules(findings):
    return [f.rule for f in findings]


def images(n=12, seed=0, transform=None):
    rng = np.random.default_rng(seed)
    return xl.data.ArrayImages(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 3,
                               ["a", "b", "c"], transform=transform)


# --------------------------------------------------------------------------- no false alarms
def test_the_course_set_ups_get_no_findings():
    backbone = xl.load_backbone("efficientnet_lite0", image_size=32)  # the offline pretrained weights
    target = xl.data.load_target("photo_regions", n_per_class=4, val_per_class=2, test_per_class=1, size=32)
    train = target.train.with_transform(xl.train_transform(backbone))
    val = target.val.with_transform(backbone.transform)

    model = xl.build_classifier(backbone, len(target.classes))
    xl.freeze(model.backbone)  # head only, as in lesson 02
    opt = make_optimizer(param_groups(model, 1e-3))
    assert xl.doctor(model, opt, train, val) == []

    xl.freeze_stages(model, len(model.backbone.stages) - 2)  # the last stages fine-tuned, as in lesson 04
    opt = make_optimizer(param_groups(model, 1e-3, body_lr=1e-4))
    assert xl.doctor(model, opt, DataLoader(train, batch_size=4, shuffle=True), DataLoader(val, batch_size=4)) == []
    opt = make_optimizer(param_groups(model, 1e-3, body_lr=1e-4, stage_decay=0.5))
    assert xl.doctor(model, opt, train, val) == []

    head = nn.Linear(backbone.num_features, 3)  # a head on cached features
    feats = xl.feature_dataset(torch.randn(12, backbone.num_features), np.arange(12) % 3)
    assert xl.doctor(head, torch.optim.AdamW(head.parameters()), feats, xl.feature_dataset(torch.randn(6, 1280), [0, 1, 2] * 2)) == []

    cnn = xl.small_cnn(3)  # from scratch: every layer trains, one learning rate
    assert xl.doctor(cnn, make_optimizer(param_groups(cnn, 1e-3)), images(seed=1), images(seed=2)) == []


def test_report_reads_well_with_and_without_findings():
    empty = xl.doctor(nn.Linear(2, 2))
    assert str(empty).startswith("No findings") and repr(empty) == str(empty) and "No findings" in empty._repr_html_()
    model = classifier()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    found = xl.doctor(model)
    assert isinstance(found[0], xl.Finding) and found[0].rule in str(found)
    assert "<table>" in found._repr_html_() and "fix" in found._repr_html_()


def test_importing_the_module_leaves_xl_doctor_a_function():
    import xferlib.diagnostics  # noqa: F401

    assert callable(xl.doctor) and xl.doctor(nn.Linear(2, 2)) == []


# --------------------------------------------------------------------------- BatchNorm
def test_requires_grad_alone_leaves_batchnorm_to_drift():
    model = classifier()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    model.eval()  # in eval mode now, but model.train() will switch it
    [finding] = xl.doctor(model)
    assert finding.rule == "frozen-batchnorm-train-mode" and "backbone.stages.stem.1" in finding.message
    assert not model.training and not model.backbone.stages.stem[1].training  # modes are left as they were


def test_batchnorm_pinned_by_freeze_passes():
    model = frozen_classifier()
    model.train()
    assert xl.doctor(model) == []
    xl.unfreeze(model.backbone)
    assert xl.doctor(model) == []  # trainable BatchNorm may train


# --------------------------------------------------------------------------- optimizer
def test_head_swapped_in_after_the_optimizer_was_built():
    model = frozen_classifier()
    opt = make_optimizer(param_groups(model, 1e-3))
    model.head = nn.Linear(model.backbone.num_features, 4)
    found = xl.doctor(model, opt)
    assert rules(found) == ["trainable-not-in-optimizer"] and "head.weight" in found[0].message


def test_frozen_parameters_left_in_the_optimizer():
    model = classifier()
    opt = torch.optim.AdamW(model.parameters())
    xl.freeze(model.backbone)
    found = xl.doctor(model, opt)
    assert rules(found) == ["frozen-in-optimizer"] and "backbone.stages" in found[0].message


def test_a_parameter_in_two_groups():
    model = frozen_classifier()
    opt = torch.optim.SGD([{"params": [model.head.weight]}, {"params": [model.head.bias]}], lr=0.1)
    opt.param_groups[1]["params"].append(model.head.weight)  # torch refuses this at construction, not later
    found = xl.doctor(model, opt)
    assert rules(found) == ["parameter-in-two-groups"] and "head.weight" in found[0].message


# --------------------------------------------------------------------------- learning rates
def test_body_at_the_head_learning_rate():
    model = classifier()
    xl.freeze_stages(model, 5)
    found = xl.doctor(model, make_optimizer(param_groups(model, 1e-3)))
    assert rules(found) == ["body-lr-equals-head-lr"]
    assert xl.doctor(model, make_optimizer(param_groups(model, 1e-3, body_lr=1e-4))) == []
    xl.freeze(model.backbone)  # nothing of the body trains: one rate is right
    assert xl.doctor(model, make_optimizer(param_groups(model, 1e-3))) == []


def test_torchvision_style_fc_head():
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=3)
    assert rules(xl.doctor(model, torch.optim.SGD(model.parameters(), lr=0.1))) == ["body-lr-equals-head-lr"]
    body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    opt = torch.optim.SGD([{"params": model.fc.parameters()}, {"params": body, "lr": 0.01}], lr=0.1)
    assert xl.doctor(model, opt) == []


# --------------------------------------------------------------------------- transforms and data
def test_normalisation_that_does_not_match_the_weights():
    model = frozen_classifier()  # EfficientNet-Lite: mean = std = 0.5
    imagenet = T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(),
                          T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    found = xl.doctor(model, train=images(transform=imagenet), val=images(seed=1, transform=T.Compose([T.ToTensor()])))
    assert rules(found) == ["normalization-mismatch"] * 2
    assert "train" in found[0].message and "0.485" in found[0].message and "no Normalize" in found[1].message
    right = xl.doctor(model, train=images(transform=xl.train_transform(model.backbone)),
                      val=images(seed=1, transform=model.backbone.transform))
    assert right == []


def test_augmentation_in_the_validation_transform():
    model = frozen_classifier()
    val = images(transform=T.Compose([T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.2)]), T.ToTensor(),
                                      T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    found = xl.doctor(model, train=images(seed=1), val=DataLoader(val, batch_size=4))
    assert rules(found) == ["augmentation-in-val"] and "RandomHorizontalFlip" in found[0].message
    assert "ColorJitter" in found[0].message


def test_the_same_files_in_train_and_val(tmp_path):
    from PIL import Image

    for c in "ab":
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 20, 200 if c == "a" else 0)).save(tmp_path / c / f"{i}.png")
    data = xl.image_folder(tmp_path, verbose=False)
    train, val = xl.stratified_split(data, 0.25)
    model = nn.Linear(2, 2)
    assert xl.doctor(model, train=xl.data.Subset(data, train), val=xl.data.Subset(data, val)) == []
    found = xl.doctor(model, train=xl.data.Subset(data, np.arange(8)), val=xl.data.Subset(data, val))
    assert rules(found) == ["train-val-overlap"] and "share 2" in found[0].message
    from torchvision.datasets import ImageFolder  # torchvision's own: a list of (path, class) samples

    found = xl.doctor(model, train=ImageFolder(tmp_path), val=torch.utils.data.Subset(ImageFolder(tmp_path), [0, 5]))
    assert rules(found) == ["train-val-overlap"] and "share 2" in found[0].message


def test_identical_tensors_in_train_and_val():
    x, y = torch.randn(40, 5), torch.arange(40) % 2
    model = nn.Linear(5, 2)
    found = xl.doctor(model, train=TensorDataset(x, y), val=TensorDataset(x[30:].clone(), y[30:]))
    assert rules(found) == ["train-val-overlap"] and "share 10" in found[0].message
    assert xl.doctor(model, train=TensorDataset(x[:30], y[:30]), val=TensorDataset(x[30:], y[30:])) == []
    augmented = T.Compose([T.RandomHorizontalFlip(), T.ToTensor()])  # the random transform is ignored
    assert rules(xl.doctor(model, train=images(transform=augmented), val=images())) == ["train-val-overlap"]
    train = images(transform=augmented)  # validating on the training set with another transform
    found = xl.doctor(model, train=train, val=train.with_transform(T.ToTensor()))
    assert rules(found) == ["train-val-overlap"] and "share 12" in found[0].message


def test_model_and_data_on_different_devices():
    model = nn.Linear(3, 2)
    far = TensorDataset(torch.empty(4, 3, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"))
    found = xl.doctor(model, train=DataLoader(far, batch_size=2))
    assert rules(found) == ["device-mismatch"] and "meta" in found[0].message
    near = TensorDataset(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    assert xl.doctor(model.to("meta"), train=near) == []  # CPU data moved per batch: the usual loop


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_features_on_the_gpu_and_the_model_on_the_cpu():
    data = TensorDataset(torch.randn(4, 3, device="cuda"), torch.zeros(4, dtype=torch.long, device="cuda"))
    assert rules(xl.doctor(nn.Linear(3, 2), train=data)) == ["device-mismatch"]
    assert xl.doctor(nn.Linear(3, 2).cuda(), train=data) == []


@pytest.mark.parametrize("method, expected", [("spawn", ["notebook-num-workers"]), ("forkserver", ["notebook-num-workers"]),
                                              ("fork", [])])
def test_workers_in_a_notebook(monkeypatch, method, expected):
    monkeypatch.setattr(doctor_module, "in_kernel", lambda: True)
    monkeypatch.setattr(doctor_module, "start_method", lambda loader: method)
    data = TensorDataset(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    model = nn.Linear(3, 2)
    assert rules(xl.doctor(model, train=DataLoader(data, batch_size=2, num_workers=2))) == expected
    assert xl.doctor(model, train=DataLoader(data, batch_size=2)) == []


def test_workers_outside_a_notebook_and_the_start_method(monkeypatch):
    monkeypatch.setattr(doctor_module, "in_kernel", lambda: False)
    data = TensorDataset(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    assert xl.doctor(nn.Linear(3, 2), train=DataLoader(data, batch_size=2, num_workers=2)) == []
    spawned = DataLoader(data, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    assert doctor_module.start_method(spawned) == "spawn"
    assert doctor_module.start_method(DataLoader(data, num_workers=2)) in ("fork", "spawn", "forkserver")


def test_a_rule_broken_on_purpose_can_be_ignored_by_name():
    model = frozen_classifier()
    xl.unfreeze(model.backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # one rate for body and head, on purpose
    assert rules(xl.doctor(model, opt)) == ["body-lr-equals-head-lr"]
    assert xl.doctor(model, opt, ignore=["body-lr-equals-head-lr"]) == []
    assert xl.doctor(model, opt, ignore="body-lr-equals-head-lr") == []
    with pytest.raises(ValueError, match=r"ignore=\['body-lr'\]: no such rule; the rules are augmentation-in-val"):
        xl.doctor(model, opt, ignore=["body-lr"])


def test_every_rule_name_the_doctor_can_report_is_known():
    import inspect
    import re

    source = inspect.getsource(doctor_module)
    reported = set(re.findall(r'Finding\("([a-z-]+)"', source)) | set(re.findall(r'\("([a-z-]+)", (?:missing|frozen|twice)', source))
    assert reported == doctor_module.RULE_NAMES
