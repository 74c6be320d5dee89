"""Freezing done properly.

Setting ``requires_grad = False`` stops the optimizer from changing weights, but a
BatchNorm layer in train mode still rewrites its running mean and variance on every
forward pass: a "frozen" backbone drifts anyway, and its Dropout layers keep dropping, so
its features change from one pass to the next. ``freeze`` does both halves: it turns off
gradients and pins every BatchNorm and Dropout layer inside the module to inference mode,
whatever ``model.train()`` says later. ``unfreeze`` undoes both.

The pin is one mechanism: each pinned layer gets its own ``train`` (a small callable that
holds the layer by a weak reference, so a frozen model is freed as soon as it is dropped, and
still pickles and deep-copies) that keeps it in eval mode. ``model.train()`` calls it, so the
layer's ``training`` flag stays False and what you read is what runs.
(Setting ``layer.training = True`` by hand goes around any method; don't.)
"""

from __future__ import annotations

import weakref

from torch import nn

# layers whose forward pass depends on train/eval mode: a frozen module keeps them in eval mode
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
MODE_DEPENDENT = BATCHNORM + (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class _PinnedTrain:
    """``train`` of a pinned layer: whatever ``mode`` asks, the layer stays in eval mode. It holds
    the layer weakly (a strong reference would make every frozen model a reference cycle, kept
    in memory until the garbage collector happens to run)."""

    __slots__ = ("layer",)

    def __init__(self, layer: nn.Module):
        self.layer = weakref.ref(layer)

    def __call__(self, mode: bool = True) -> nn.Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        layer = self.layer()
        layer.training = False
        return layer

    def __deepcopy__(self, memo):  # the copy of a layer pins the copy, not the original
        layer = self.layer()
        return _PinnedTrain(memo.get(id(layer), layer))

    def __reduce__(self):
        return _PinnedTrain, (self.layer(),)


def is_pinned(module: nn.Module) -> bool:
    """True for a BatchNorm or Dropout layer that :func:`freeze` keeps in inference mode."""
    return isinstance(vars(module).get("train"), _PinnedTrain)


def freeze(module: nn.Module, weights: bool = True) -> nn.Module:
    """Freeze every parameter and BatchNorm statistic in ``module``, and keep its BatchNorm and
    Dropout layers in inference mode from now on; returns it. ``weights=False`` pins only the
    layers' mode and leaves every weight trainable: fine-tuning that keeps the ImageNet statistics
    (lessons 03, 10, 11)."""
    for p in module.parameters():
        p.requires_grad_(not weights)
    for m in module.modules():
        if isinstance(m, MODE_DEPENDENT):
            m.eval()
            m.train = _PinnedTrain(m)  # model.train() now leaves this layer in eval mode
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Make ``module`` trainable again, BatchNorm statistics and Dropout included; returns it."""
    for p in module.parameters():
        p.requires_grad_(True)
    for m in module.modules():
        if is_pinned(m):
            del m.train  # back to nn.Module.train
            m.train(module.training)
    return module


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of ``module`` is trainable."""
    return not any(p.requires_grad for p in module.parameters())


def _backbone_of(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "stages"):
        raise TypeError(f"{type(model).__name__} has no .stages (expected an xferlib Backbone or Classifier)")
    return backbone


def freeze_stages(model: nn.Module, n: int) -> nn.Module:
    """Freeze the first ``n`` stages of a backbone (or of a classifier's backbone) and make
    the rest trainable. ``n=0`` unfreezes everything; ``n=len(stages)`` freezes it all."""
    stages = list(_backbone_of(model).stages)
    if not 0 <= n <= len(stages):
        raise ValueError(f"n must lie in 0..{len(stages)} (the backbone has {len(stages)} stages), got {n}")
    for i, stage in enumerate(stages):
        (freeze if i < n else unfreeze)(stage)
    return model


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def trainable_table(model: nn.Module):
    """A table (pandas DataFrame) of trainable and frozen parameters per stage, plus the
    head for a classifier, and how many BatchNorm layers are pinned to inference mode."""
    import pandas as pd

    backbone = _backbone_of(model)
    parts = list(backbone.stages.named_children())
    head = getattr(model, "head", None)
    if head is not None and head is not backbone:
        parts.append(("head", head))
    rows = []
    for name, part in parts:
        trainable, total = count_parameters(part)
        bns = [m for m in part.modules() if isinstance(m, BATCHNORM)]
        rows.append(
            {
                "stage": name,
                "parameters": total,
                "trainable": trainable,
                "frozen": total - trainable,
                "BatchNorm layers": len(bns),
                "BatchNorm frozen": sum(is_pinned(m) for m in bns),
            }
        )
    table = pd.DataFrame(rows).set_index("stage")
    table.loc["total"] = table.sum()
    return table
