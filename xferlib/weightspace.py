"""The pretrained weights as a point to measure from, mix with, and stay near.

Three tools for robust fine-tuning, all about the distance between a network's starting
weights ``w0`` and its fine-tuned weights ``w``:

* :func:`weight_distance`: how far each layer moved, ``||w - w0|| / ||w0||``;
* :func:`interpolate_weights`: the network halfway (or any fraction) between two networks of
  the same architecture, as in WiSE-FT (Wortsman et al., 2022)::

      for alpha in (0, 0.25, 0.5, 0.75, 1):
          mixed = xl.interpolate_weights(probed, finetuned, alpha)   # a new model
          print(alpha, xl.evaluate(mixed, test)["accuracy"])

* :func:`l2sp_penalty`: the L2-SP regulariser (Li et al., 2018), added to the loss to pull
  the shared weights towards ``w0`` rather than towards zero::

      start = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith("backbone.")}
      loss = cross_entropy(model(x), y) + xl.l2sp_penalty(model, start, alpha=0.01, beta=0.01)
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["interpolate_weights", "l2sp_penalty", "weight_distance"]


def _paired(a: dict, b: dict, what: str) -> None:
    """Raise a ValueError naming the first key or shape on which two state dicts differ."""
    for key in a:
        if key not in b:
            raise ValueError(f"model_b has no {what} {key!r}, which model_a has: the architectures differ")
        if a[key].shape != b[key].shape:
            raise ValueError(f"{what} {key!r} has shape {tuple(a[key].shape)} in model_a but "
                             f"{tuple(b[key].shape)} in model_b")
    for key in b:
        if key not in a:
            raise ValueError(f"model_a has no {what} {key!r}, which model_b has: the architectures differ")


def weight_distance(model_a: nn.Module, model_b: nn.Module, level: int | None = None) -> dict[str, float]:
    """The relative distance ``||b - a|| / ||a||`` of each parameter tensor, in model order.
    Used in lesson 11.

    ``level=k`` pools the tensors whose names share their first ``k`` parts instead (for a
    classifier from :func:`xferlib.build_classifier`, ``level=3`` gives one number per
    backbone stage, such as ``backbone.stages.block1``). Buffers (BatchNorm statistics) are
    left out. A tensor that is zero in ``model_a`` gives ``inf`` if it moved at all.
    """
    a, b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    _paired(a, b, "parameter")
    if level is not None and (not isinstance(level, int) or level < 1):
        raise ValueError(f"level must be a whole number of at least 1 (name parts to group by), got {level!r}")
    moved, size = OrderedDict(), OrderedDict()   # squared norms per group
    for name, weight in a.items():
        group = name if level is None else ".".join(name.split(".")[:level])
        w0, w1 = weight.detach().double(), b[name].detach().to(weight.device).double()
        moved[group] = moved.get(group, 0.0) + float((w1 - w0).square().sum())
        size[group] = size.get(group, 0.0) + float(w0.square().sum())
    return {g: (math.sqrt(moved[g] / size[g]) if size[g] else (0.0 if moved[g] == 0 else math.inf)) for g in moved}


def interpolate_weights(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A new model (a deep copy of ``model_b``) with weights ``(1 - alpha) * a + alpha * b``.
    Used in lesson 11.

    Floating-point parameters and buffers are mixed; integer buffers (such as BatchNorm's
    ``num_batches_tracked``) are taken from ``model_b``. ``alpha=0`` gives ``model_a``'s
    weights exactly, ``alpha=1`` those of ``model_b``; values outside [0, 1] extrapolate.
    Refuses two models whose state dicts differ in a key or a shape, naming it.
    """
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    a, b = model_a.state_dict(), model_b.state_dict()
    _paired(a, b, "state_dict entry")
    mixed = {}
    for key, theirs in b.items():
        if theirs.is_floating_point():
            ours = a[key].to(theirs.device, torch.float64)
            mixed[key] = ((1 - alpha) * ours + alpha * theirs.double()).to(theirs.dtype)
        else:
            mixed[key] = theirs.clone()
    model = copy.deepcopy(model_b)
    model.load_state_dict(mixed)
    return model


def l2sp_penalty(model: nn.Module, reference_state: dict, alpha: float = 0.01, beta: float = 0.01) -> torch.Tensor:
    """The L2-SP penalty ``alpha/2 ||w - w0||² + beta/2 ||w_new||²``, to add to the loss.
    Used in lesson 11.

    ``w`` are the trainable parameters of ``model`` found in ``reference_state`` (same name
    and shape; ``w0`` their values there, for example the pretrained backbone's); ``w_new``
    are the other trainable parameters, such as a new head, which get plain weight decay.
    Keep ``reference_state`` on the model's device: it is read at every step.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be at least 0, got alpha={alpha}, beta={beta}")
    names = [name for name, _ in model.named_parameters()]
    if reference_state and not set(names) & set(reference_state):
        raise ValueError(f"no parameter of the model is in reference_state: its keys look like "
                         f"{next(iter(reference_state))!r}, the model's like {names[0] if names else None!r}. "
                         "Build it from the same model before fine-tuning, e.g. "
                         "{name: p.detach().clone() for name, p in model.named_parameters()}.")
    start, new = 0.0, 0.0
    for name, weight in model.named_parameters():
        if not weight.requires_grad:   # frozen: the penalty could not move it
            continue
        w0 = reference_state.get(name)
        if w0 is not None and w0.shape == weight.shape:
            start = start + (weight - w0.detach().to(weight.device, weight.dtype)).square().sum()
        else:
            new = new + weight.square().sum()
    penalty = alpha / 2 * start + beta / 2 * new
    return penalty if isinstance(penalty, torch.Tensor) else torch.zeros(())
