import copy

import pytest
import torch
from torch import nn

import xferlib as xl


def small_backbone():
    return xl.load_backbone("efficientnet_lite0", pretrained=False, image_size=32)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def batches(n=4, classes=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n * 8, 3, 32, 32, generator=g) * 2 + 1  # statistics unlike the BN buffers
    y = torch.arange(n * 8) % classes
    return torch.utils.data.TensorDataset(x, y)


def test_frozen_backbone_keeps_every_tensor_while_the_head_trains():
    model = xl.build_classifier(small_backbone(), 3)
    xl.freeze(model.backbone)
    before_backbone, before_head = snapshot(model.backbone), snapshot(model.head)
    model.train()  # what a naive training loop does; frozen BatchNorm must ignore it
    xl.fit(model, batches(), epochs=2, lr=1e-2, batch_size=8, progress=False)
    after = snapshot(model.backbone)
    changed = [k for k in before_backbone if not torch.equal(before_backbone[k], after[k])]
    assert changed == []
    assert any(not torch.equal(before_head[k], v) for k, v in model.head.state_dict().items())


def test_pinning_statistics_only_trains_every_weight_but_no_running_statistic():
    """freeze(weights=False): full fine-tuning with the ImageNet statistics kept."""
    model = xl.build_classifier(small_backbone(), 3)
    xl.freeze(model.backbone, weights=False)
    assert xl.count_parameters(model)[0] == xl.count_parameters(model)[1]
    before = snapshot(model.backbone)
    xl.fit(model, batches(), epochs=1, lr=1e-2, batch_size=8, progress=False)
    after = snapshot(model.backbone)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(not k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in moved)
    assert next(n for n, _ in model.backbone.named_parameters()) in moved  # the stem trains too
    xl.unfreeze(model.backbone)
    model.train()
    assert all(m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))


def test_requires_grad_alone_lets_batchnorm_statistics_drift():
    """The trap in the cheatsheet's recipe, measured: no gradients, yet the buffers move."""
    backbone = small_backbone()
    for p in backbone.parameters():
        p.requires_grad = False
    before = snapshot(backbone)
    backbone.train()
    with torch.no_grad():
        backbone(batches()[:][0])
    drifted = [k for k in before if "running_mean" in k and not torch.equal(before[k], backbone.state_dict()[k])]
    assert len(drifted) > 10


def test_a_frozen_module_with_dropout_is_a_fixed_function_in_train_mode():
    body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 8), nn.Dropout1d(0.3))
    model = nn.Sequential(body, nn.Dropout(0.5), nn.Linear(8, 2))
    xl.freeze(body)
    model.train()
    x = torch.randn(64, 4)
    assert torch.equal(body(x), body(x)), "the frozen body still drops units in train mode"
    assert not torch.equal(model(x), model(x)), "the head's own dropout must stay active"
    xl.unfreeze(body)
    body.train()
    assert not torch.equal(body(x), body(x)), "unfreeze gives Dropout back to train mode"


def test_freeze_and_unfreeze_round_trip():
    backbone = small_backbone()
    xl.freeze(backbone)
    assert xl.is_frozen(backbone) and xl.count_parameters(backbone)[0] == 0
    xl.unfreeze(backbone)
    backbone.train()
    assert not xl.is_frozen(backbone)
    before = snapshot(backbone)
    with torch.no_grad():
        backbone(batches()[:][0])
    assert any(not torch.equal(before[k], backbone.state_dict()[k]) for k in before if "running_mean" in k)


def test_freezing_survives_deepcopy():
    model = xl.freeze(small_backbone())
    clone = copy.deepcopy(model)
    clone.train()
    before = snapshot(clone)
    with torch.no_grad():
        clone(batches()[:][0])
    assert all(torch.equal(before[k], clone.state_dict()[k]) for k in before)


def bn_and_dropout(module):
    return [m for m in module.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout))]


def test_model_train_leaves_frozen_layers_reporting_eval_mode():
    """The flag you read after model.train() is the mode the next forward pass runs in."""
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    model = nn.Sequential(body, nn.BatchNorm2d(4))
    xl.freeze(body)
    model.train()
    assert model.training and body.training, "containers follow model.train() as usual"
    assert [m.training for m in bn_and_dropout(body)] == [False, False]
    assert model[1].training, "an unfrozen BatchNorm outside the frozen part trains"
    model.apply(lambda m: m.train())  # the other way loops switch modes
    assert [m.training for m in bn_and_dropout(body)] == [False, False]
    with pytest.raises(ValueError, match="boolean"):
        body[1].train("yes")
    xl.unfreeze(body)
    model.train()
    assert [m.training for m in bn_and_dropout(body)] == [True, True]
    assert "train" not in body[1].__dict__, "unfreeze gives back nn.Module.train"


@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_a_frozen_copy_pins_its_own_layers(how, tmp_path):
    original = xl.freeze(small_backbone())
    if how == "deepcopy":
        clone = copy.deepcopy(original)
    else:
        torch.save(original, tmp_path / "whole.pt")  # a whole-module pickle, so weights_only=False
        clone = torch.load(tmp_path / "whole.pt", weights_only=False)
    clone.train()
    layers = bn_and_dropout(clone)
    assert layers and not any(m.training for m in layers)
    assert all(m.train.layer() is m for m in layers if "train" in m.__dict__), "a copy must pin itself, not the original"
    xl.unfreeze(clone)
    clone.train()
    assert all(m.training for m in bn_and_dropout(clone))
    original.train()
    assert not any(m.training for m in bn_and_dropout(original)), "unfreezing the copy leaves the original frozen"


def test_freeze_stages_counts_fall_with_depth():
    model = xl.build_classifier(small_backbone(), 5)
    n_stages = len(model.backbone.stages)
    counts = []
    for n in range(n_stages + 1):
        xl.freeze_stages(model, n)
        counts.append(xl.count_parameters(model)[0])
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert counts[-1] == sum(p.numel() for p in model.head.parameters())
    xl.freeze_stages(model, 3)
    for i, stage in enumerate(model.backbone.stages):
        assert xl.is_frozen(stage) == (i < 3)


def test_freeze_stages_rejects_out_of_range():
    model = small_backbone()
    with pytest.raises(ValueError, match="0..9"):
        xl.freeze_stages(model, 10)
    with pytest.raises(TypeError, match="stages"):
        xl.freeze_stages(nn.Linear(2, 2), 1)


def test_trainable_table_adds_up():
    model = xl.build_classifier(small_backbone(), 4)
    xl.freeze_stages(model, 4)
    table = xl.trainable_table(model)
    assert list(table.index[:2]) == ["stem", "block1"] and table.index[-1] == "total"
    trainable, total = xl.count_parameters(model)
    assert table.loc["total", "parameters"] == total
    assert table.loc["total", "trainable"] == trainable
    assert table.loc["stem", "trainable"] == 0 and table.loc["head", "trainable"] > 0
    assert table.loc["stem", "BatchNorm frozen"] == table.loc["stem", "BatchNorm layers"] > 0
    assert table.loc["head", "BatchNorm frozen"] == 0


def test_a_frozen_model_is_freed_when_dropped_without_the_garbage_collector():
    import gc
    import weakref

    model = xl.freeze(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)))
    model.train()
    assert not model[1].training and model[1].train() is model[1]
    gc.disable()
    try:
        ref = weakref.ref(model)
        del model
        assert ref() is None, "no reference cycle keeps a frozen model (and its memory) alive"
    finally:
        gc.enable()
