"""Diagnostics: ``xl.doctor`` checks a transfer-learning set-up for known mistakes before training.

    findings = xl.doctor(model, optimizer, train=train_set, val=val_set)
    findings          # a short report in a notebook; empty when nothing is wrong

Each rule is a short function that returns a list of :class:`Finding`. The doctor reads the
model, the optimizer's parameter groups, the datasets' transforms and file lists, and at most
a few items of each dataset: it never runs the model and never iterates a whole dataset.
"""

from __future__ import annotations

import hashlib
import html
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .display import in_kernel
from .freezing import BATCHNORM

# transforms that draw random numbers (torchvision v1 and v2 alike); a name starting with "Random" counts too
AUGMENTATIONS = {"ColorJitter", "RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix", "ElasticTransform"}
HASHED_ITEMS = 256  # at most this many items of each dataset are hashed to look for duplicates


@dataclass(frozen=True)
class Finding:
    """One problem: ``rule`` (a short id), ``message`` (what is wrong, and where), ``fix`` (one line)."""

    rule: str
    message: str
    fix: str

    def __str__(self):
        return f"[{self.rule}] {self.message}\n    fix: {self.fix}"


class Findings(list):
    """What :func:`doctor` found: a list of :class:`Finding`, shown as a short report."""

    def __str__(self):
        if not self:
            return "No findings: nothing known to be wrong with this set-up."
        return f"{len(self)} finding(s):\n" + "\n".join(str(f) for f in self)

    __repr__ = __str__

    def _repr_html_(self):
        if not self:
            return "<p><b>No findings</b>: nothing known to be wrong with this set-up.</p>"
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in (f.rule, f.message, f.fix)) + "</tr>" for f in self)
        return f"<p><b>{len(self)} finding(s)</b></p><table><tr><th>rule</th><th>what is wrong</th><th>fix</th></tr>{rows}</table>"


def _names(names: list[str], most: int = 3) -> str:
    """'a, b, c and 4 more'."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _dataset(data):
    """The dataset behind a DataLoader (or the data itself)."""
    return data.dataset if isinstance(data, DataLoader) else data


def _transform(data):
    """The transform a dataset applies, looking through loaders and subsets; None if there is none."""
    while data is not None and getattr(data, "transform", None) is None:
        data = getattr(data, "dataset", None)
    return getattr(data, "transform", None)


def _steps(transform):
    """Every step of a transform, looking inside Compose, RandomApply and the like."""
    yield transform
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple, nn.ModuleList)):
        for step in inner:
            yield from _steps(step)


def _keys(data):
    """What each item of ``data`` is made from, without loading it: a file path, or
    (the in-memory array or dataset, index). None when that cannot be told."""
    data = _dataset(data)
    inner, indices = getattr(data, "dataset", None), getattr(data, "indices", None)
    if inner is not None and indices is not None:  # a subset: the keys of its parent, picked
        keys = _keys(inner)
        return None if keys is None else [keys[int(i)] for i in indices]
    files = getattr(data, "paths", None)
    if files is None and getattr(data, "samples", None) is not None:  # torchvision's ImageFolder: (path, class) pairs
        files = [s[0] if isinstance(s, (tuple, list)) else s for s in data.samples]
    if files is not None and len(files) and isinstance(files[0], (str, os.PathLike)):
        return [str(f) for f in files]
    store = getattr(data, "images", None)
    store = store if store is not None else (getattr(data, "tensors", None) or [data])[0]
    try:
        return [(id(store), i) for i in range(len(data))]
    except TypeError:  # no len(): an iterable dataset
        return None


def _item_hashes(data, limit: int = HASHED_ITEMS) -> set:
    """Hashes of the inputs of the first ``limit`` items, without their (random) transform where possible."""
    data = _dataset(data)
    data = data.with_transform(None) if hasattr(data, "with_transform") else data
    hashes = set()
    try:
        for i in range(min(limit, len(data))):
            item = data[i]
            x = item[0] if isinstance(item, (tuple, list)) else item
            x = np.ascontiguousarray(x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x))
            hashes.add(hashlib.sha1(str(x.shape).encode() + x.tobytes()).hexdigest())
    except Exception:  # not indexable, not array-like, on the meta device: nothing to compare
        return set()
    return hashes


# --------------------------------------------------------------------------- rules
def frozen_batchnorm(model, optimizer=None, train=None, val=None):
    """Frozen BatchNorm layers that model.train() puts in train mode: their statistics drift."""
    modes = {m: m.training for m in model.modules()}
    model.train()  # to see what a training loop will do; every layer's own mode comes back below
    will_train = {m for m in model.modules() if m.training}
    for m, mode in modes.items():
        m.training = mode
    bad = [name for name, m in model.named_modules() if isinstance(m, BATCHNORM) and (m.training or m in will_train)
           and list(m.parameters()) and not any(p.requires_grad for p in m.parameters())]
    return [Finding("frozen-batchnorm-train-mode",
                    f"{len(bad)} BatchNorm layer(s) have frozen parameters but run in train mode during training ({_names(bad)}): "
                    "their running statistics drift, so the 'frozen' body changes anyway.",
                    "Freeze with xl.freeze(module): it also pins BatchNorm and Dropout layers to eval mode.")] if bad else []


def optimizer_params(model, optimizer=None, train=None, val=None):
    """Trainable parameters missing from the optimizer, frozen ones in it, one in two groups."""
    if optimizer is None:
        return []
    name = {id(p): n for n, p in model.named_parameters()}
    counts = Counter(id(p) for group in optimizer.param_groups for p in group["params"])
    seen = set(counts)
    twice = sorted(name.get(i, "(not in the model)") for i, n in counts.items() if n > 1)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and id(p) in seen]
    found = [("trainable-not-in-optimizer", missing, "trainable parameter(s) are not in the optimizer",
              "so they never change: was a layer swapped in after the optimizer was built?",
              "Build the optimizer after the last change to the model, e.g. from xl.param_groups(model, lr)."),
             ("frozen-in-optimizer", frozen, "frozen parameter(s) are still in the optimizer",
              "they do not train now, but would if unfrozen later, at a rate nobody chose for them.",
              "Build the optimizer from the trainable parameters only (xl.param_groups leaves frozen ones out)."),
             ("parameter-in-two-groups", twice, "parameter(s) are in more than one parameter group",
              "each step updates them more than once.", "Put each parameter in exactly one group.")]
    return [Finding(rule, f"{len(names)} {what} ({_names(names)}): {why}", fix) for rule, names, what, why, fix in found if names]


def _head_and_body(model):
    """(head, body parameters) for a model with .backbone/.head, or a torchvision-style .fc/.classifier."""
    if isinstance(getattr(model, "backbone", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module):
        return model.head, list(model.backbone.parameters())
    for attr in ("fc", "classifier"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            in_head = {id(p) for p in head.parameters()}
            return head, [p for p in model.parameters() if id(p) not in in_head]
    return None, []


def body_learning_rate(model, optimizer=None, train=None, val=None):
    """A trainable pretrained body at the same learning rate as the new head."""
    head, body = _head_and_body(model)
    if optimizer is None or head is None:
        return []
    lr = {id(p): g.get("initial_lr", g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    head_lrs = [lr[id(p)] for p in head.parameters() if p.requires_grad and id(p) in lr]
    body_lrs = [lr[id(p)] for p in body if p.requires_grad and id(p) in lr]
    if not head_lrs or not body_lrs or max(body_lrs) < max(head_lrs):
        return []
    return [Finding("body-lr-equals-head-lr",
                    f"The pretrained body trains at learning rate {max(body_lrs):g}, no slower than the new head ({max(head_lrs):g}): "
                    "the random head's large early gradients can wreck the pretrained features.",
                    "Give the body a rate about 10x lower: xl.fit(..., body_lr=lr / 10), or xl.param_groups(model, lr, body_lr=lr / 10).")]


def _normalize(transform):
    """(mean, std) of the first Normalize step of a transform, or None."""
    for step in _steps(transform):
        if type(step).__name__ == "Normalize" and hasattr(step, "mean"):
            return tuple(np.ravel(step.mean).tolist()), tuple(np.ravel(step.std).tolist())
    return None


def normalization(model, optimizer=None, train=None, val=None):
    """Input normalisation that differs from the one the backbone's weights were trained with."""
    expected = _normalize(getattr(getattr(model, "backbone", model), "transform", None))
    findings = []
    for split, transform in (("train", _transform(train)), ("val", _transform(val))):
        found = _normalize(transform)
        if expected is None or transform is None or found is None and not hasattr(transform, "transforms"):
            continue  # nothing to compare, or a plain function that may normalise inside where it cannot be read
        if found is None or not all(np.allclose(np.broadcast_to(f, 3), e, atol=1e-3) for f, e in zip(found, expected)):
            what = "has no Normalize step" if found is None else f"normalises with mean={found[0]}, std={found[1]}"
            findings.append(Finding("normalization-mismatch",
                                    f"The {split} transform {what}, but the backbone's weights expect mean={expected[0]}, std={expected[1]}.",
                                    "Use the backbone's own preprocessing: backbone.transform, or xl.train_transform(backbone) for training."))
    return findings


def val_augmentation(model, optimizer=None, train=None, val=None):
    """Random augmentation in the validation transform: the scores become noisy and pessimistic."""
    names = [type(step).__name__ for step in _steps(_transform(val))]
    random = [name for name in names if name.startswith("Random") or name in AUGMENTATIONS]
    return [Finding("augmentation-in-val",
                    f"The validation transform augments at random ({_names(random)}): every evaluation sees different images, "
                    "so scores are noisy and not comparable.",
                    "Validate with the deterministic transform: backbone.transform or xl.eval_transform(backbone).")] if random else []


def train_val_overlap(model, optimizer=None, train=None, val=None):
    """The same files, array rows or identical tensors in both training and validation data."""
    if train is None or val is None:
        return []
    train_keys, val_keys = _keys(train), _keys(val)
    shared = len(set(train_keys) & set(val_keys)) if train_keys is not None and val_keys is not None else 0
    where = "items (the same files or array rows)"
    both_files = train_keys and val_keys and isinstance(train_keys[0], str) and isinstance(val_keys[0], str)
    if not shared and not both_files:  # different storage: compare the contents of the first items
        shared, where = len(_item_hashes(train) & _item_hashes(val)), f"identical inputs among the first {HASHED_ITEMS} items"
    return [Finding("train-val-overlap", f"Training and validation data share {shared} {where}: validation scores will be too good.",
                    "Split once, without overlap: e.g. xl.stratified_split(data) and one xl.data.Subset per side.")] if shared else []


def device_mismatch(model, optimizer=None, train=None, val=None):
    """Tensor data on an accelerator that the model is not on (CPU data is moved per batch, which is fine)."""
    params = {p.device for p in model.parameters()}
    findings = []
    for split, data in (("train", train), ("val", val)):
        data = _dataset(data)
        tensors = getattr(data, "tensors", None) or (data if isinstance(data, (tuple, list)) else [])
        devices = {t.device for t in tensors if torch.is_tensor(t)}
        far = [d for d in devices if d.type != "cpu" and d not in params]
        if params and far:
            findings.append(Finding("device-mismatch", f"The {split} tensors are on {far[0]}, the model's parameters on "
                                    f"{_names(sorted(map(str, params)))}: the first forward pass will fail.",
                                    f"Move the model to the data (model.to('{far[0]}')), or keep the data on the CPU and move each batch."))
    return findings


def start_method(loader: DataLoader) -> str:
    """How the loader's worker processes would start: 'fork', 'spawn' or 'forkserver'."""
    context = loader.multiprocessing_context
    if context is not None:
        return context if isinstance(context, str) else context.get_start_method()
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


def notebook_workers(model, optimizer=None, train=None, val=None):
    """num_workers > 0 in a notebook where workers are spawned: they cannot import the notebook's code."""
    if not in_kernel():
        return []
    loaders = [(split, d, start_method(d)) for split, d in (("train", train), ("val", val))
               if isinstance(d, DataLoader) and d.num_workers > 0]
    return [Finding("notebook-num-workers",
                    f"The {split} loader has num_workers={d.num_workers} in a notebook with the '{method}' start method "
                    "(the default on Windows and macOS): workers cannot import functions defined in the notebook, "
                    "so loading fails or hangs.",
                    "Use num_workers=0 in the notebook, or move the dataset and transform code into a .py file and import it.")
            for split, d, method in loaders if method != "fork"]


RULES = [frozen_batchnorm, optimizer_params, body_learning_rate, normalization, val_augmentation,
         train_val_overlap, device_mismatch, notebook_workers]
RULE_NAMES = {"frozen-batchnorm-train-mode", "trainable-not-in-optimizer", "frozen-in-optimizer", "parameter-in-two-groups",
              "body-lr-equals-head-lr", "normalization-mismatch", "augmentation-in-val", "train-val-overlap",
              "device-mismatch", "notebook-num-workers"}


def doctor(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, train=None, val=None,
           ignore=()) -> Findings:
    """Check a set-up before training; returns the :class:`Findings` (empty when nothing is wrong).
    ``train`` and ``val`` may be Datasets or DataLoaders; rules that need what is not given are skipped.
    ``ignore`` names rules a set-up breaks on purpose (say why beside the call), like a linter's noqa."""
    ignored = {ignore} if isinstance(ignore, str) else set(ignore)
    unknown = sorted(ignored - RULE_NAMES)
    if unknown:
        raise ValueError(f"ignore={unknown}: no such rule; the rules are {', '.join(sorted(RULE_NAMES))}")
    return Findings(f for rule in RULES for f in rule(model, optimizer, train, val) if f.rule not in ignored)
