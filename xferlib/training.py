"""Training and evaluation that use the hardware well and stay out of the way.

``fit`` trains any module on any dataset of ``(input, label)`` pairs: images through a
whole network, or cached feature vectors through a small head. On CUDA it uses automatic
mixed precision (bfloat16 where the GPU supports it, else float16 with a gradient scaler),
pinned memory and non-blocking copies; convolutional networks run in channels_last memory
format on every device. Frozen parts stay frozen (see :mod:`xferlib.freezing`).

``fit`` is a short loop over named steps that a learner can read one at a time:
:func:`make_optimizer`, :func:`make_scheduler`, :func:`train_one_epoch` and
:func:`evaluate`. Bad labels and a loss that turns NaN stop it with a message that says
where and what to try, instead of weights that quietly become NaN.

Under ``torchrun`` the same calls share the work among the processes (see
:mod:`xferlib.distributed`): ``fit`` trains a DistributedDataParallel copy on each process's part
of every global batch, ``predict`` and ``evaluate`` gather every process's outputs, and every
process returns the same ``History`` and the same metrics.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from . import distributed
from .device import autocast, place, to_device
from .display import progress_bar


# --------------------------------------------------------------------------- models
class Classifier(nn.Module):
    """A backbone followed by a head: ``head(backbone(x))``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        return self.head(self.backbone(x))


def build_classifier(backbone: nn.Module, num_classes: int, dropout: float = 0.0) -> Classifier:
    """The backbone with a new, randomly initialised linear head for ``num_classes``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    num_features = getattr(backbone, "num_features", None)
    if num_features is None:
        raise TypeError("The backbone needs a .num_features attribute (use xl.load_backbone)")
    head = nn.Linear(num_features, num_classes)
    if dropout:
        head = nn.Sequential(nn.Dropout(dropout), head)
    return Classifier(backbone, head)


# --------------------------------------------------------------------------- history
class History(list):
    """One dict per epoch (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``seconds``), with helpers to read and plot it."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    monitor = "val_loss"  # what fit watched: set per run by fit(monitor=...)

    @property
    def best(self) -> dict:
        """The epoch ``fit`` counted best: lowest validation loss, or highest validation accuracy
        with ``monitor="val_accuracy"`` (the earliest on ties); lowest training loss without validation."""
        if not self or self[0].get("val_loss") is None:
            return min(self, key=lambda row: row["train_loss"])
        if self.monitor == "val_accuracy":
            return max(self, key=lambda row: (row["val_accuracy"], -row["epoch"]))
        return min(self, key=lambda row: row["val_loss"])

    @property
    def seconds(self) -> float:
        return float(sum(row["seconds"] for row in self))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self)).set_index("epoch")

    def plot(self, title: str | None = None):
        from .plots import plot_history

        return plot_history(self, title=title)

    def _repr_html_(self):
        return self.to_frame().round(4)._repr_html_() if self else "<i>empty history</i>"


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run ``model`` in eval mode, then give every submodule back its own mode.

    ``model.train(was_training)`` would not do: it sets one mode on every submodule, so a model
    trained with a frozen body in eval mode would come back with that body in train mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


# --------------------------------------------------------------------------- data

def _dataset(data):
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        data = TensorDataset(*data)
    if not isinstance(data, Dataset):
        raise TypeError(f"Expected a Dataset, a DataLoader or a (features, labels) pair, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("The dataset is empty")
    return data


def make_loader(data, batch_size: int, device: torch.device, *, shuffle: bool = False, num_workers: int = 0,
                seed: int | None = None, drop_last: bool = False, world: distributed.World | None = None) -> DataLoader:
    """A DataLoader over ``data`` (a Dataset or a ``(features, labels)`` pair; a DataLoader
    is used as it is), with pinned memory on CUDA and a seeded shuffle.

    With a ``world`` of several processes, this process reads only its part of each global batch
    of ``batch_size`` (:class:`xferlib.distributed.GlobalBatchSampler`), in the order one process
    would read them with the same seed."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
    if world is not None and world.active:
        data = _dataset(data)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        sampler = distributed.GlobalBatchSampler(len(data), batch_size, rank=world.rank, world_size=world.size,
                                                 shuffle=shuffle, generator=generator, drop_last=drop_last)
        return DataLoader(data, batch_sampler=sampler, num_workers=num_workers, pin_memory=device.type == "cuda",
                          persistent_workers=num_workers > 0, generator=generator)  # one generator, drawn as one process draws it
    return DataLoader(
        _dataset(data),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed) if seed is not None else None,
        drop_last=drop_last,
    )


def _known_labels(data) -> np.ndarray | None:
    """Every label of ``data`` when it can be had without loading the inputs."""
    data = getattr(data, "dataset", data) if isinstance(data, DataLoader) else data
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[1]):
        return data[1].cpu().numpy()
    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[1].cpu().numpy()
    labels = getattr(data, "labels", None)
    return None if labels is None else np.asarray(labels)


def check_labels(labels, num_classes: int | None = None, where: str = "the training data") -> None:
    """Refuse labels that cross-entropy cannot use: not whole numbers, negative, or (when
    ``num_classes`` is known) not below the number of the model's outputs."""
    labels = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"The labels of {where} are {labels.dtype} (e.g. {labels.ravel()[:5].tolist()}); cross-entropy needs "
            "whole-number class indices 0..C-1. Convert them, e.g. torch.as_tensor(labels).long(), "
            "or pass a loss_fn that takes these targets."
        )
    bad = np.unique(labels[(labels < 0) | ((labels >= num_classes) if num_classes is not None else False)])
    if bad.size:
        classes = f"the model has {num_classes} outputs, so labels must lie in 0..{num_classes - 1}" if num_classes else "labels must be 0 or more"
        raise ValueError(
            f"{where} has label(s) {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}, but {classes}. "
            "Check the labels, or build the head for the right number of classes."
        )


def _single_batch_would_break_batchnorm(model: nn.Module, size: int, batch_size: int, processes: int = 1) -> bool:
    """True when the last training batch would give a process one example (or none, which runs one
    with weight 0) and a BatchNorm1d layer (a BatchNorm head) trains: it cannot normalise one
    vector per channel (PyTorch raises mid-epoch). Convolutional BatchNorm normalises over the
    pixels too, so it copes."""
    if not any(isinstance(m, nn.BatchNorm1d) and m.training for m in model.modules()):
        return False
    if processes > 1 and batch_size == processes:
        raise ValueError(f"batch_size={batch_size} gives each of the {processes} processes one example per batch, which a "
                         "BatchNorm1d layer cannot normalise: use a batch of at least 2 per process")
    return size % batch_size != 0 and (size % batch_size) // processes <= 1


# --------------------------------------------------------------------------- optimizer
def param_groups(model: nn.Module, lr: float, body_lr: float | None = None, stage_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups: the head at ``lr``, the backbone at ``body_lr``.

    With ``stage_decay`` (e.g. 0.5) the backbone's stages get discriminative learning rates:
    the last stage ``body_lr``, the one before ``body_lr * stage_decay``, and so on down to
    the stem. Frozen parameters are left out. A model without ``.backbone``/``.head`` gives
    one group of all its trainable parameters at ``lr``.
    """
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]  # noqa: E731
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if backbone is None or head is None or body_lr is None and stage_decay is None:
        return [{"params": trainable(model), "lr": lr, "name": "all"}]
    body_lr = lr if body_lr is None else body_lr
    groups = [{"params": trainable(head), "lr": lr, "name": "head"}]
    if stage_decay is None or not hasattr(backbone, "stages"):
        groups.append({"params": trainable(backbone), "lr": body_lr, "name": "backbone"})
    else:
        stages = list(backbone.stages.named_children())
        for depth, (name, stage) in enumerate(reversed(stages)):
            groups.append({"params": trainable(stage), "lr": body_lr * stage_decay**depth, "name": name})
    return [g for g in groups if g["params"]]


def make_optimizer(groups: list[dict], name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD (momentum 0.9) over parameter groups (see :func:`param_groups`)."""
    if not any(len(g["params"]) for g in groups):
        raise ValueError("The model has no trainable parameters: everything is frozen")
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}.get(name)
    if cls is None:
        raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {name!r}")
    extra = {"momentum": 0.9} if name == "sgd" else {}
    return cls(groups, lr=lr, weight_decay=weight_decay, **extra)


def make_scheduler(scheduler, optimizer, epochs: int, steps_per_epoch: int):
    """``(scheduler, per_batch)``: None, ``"cosine"`` and ``"onecycle"`` (stepped every batch)
    or a callable(optimizer) whose scheduler is stepped once per epoch."""
    if scheduler is None:
        return None, False
    if scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch)), True
    if scheduler == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(1, epochs * steps_per_epoch)), True
    if callable(scheduler):
        return scheduler(optimizer), False
    raise ValueError(f"scheduler must be None, 'cosine', 'onecycle' or a callable(optimizer), got {scheduler!r}")


# --------------------------------------------------------------------------- one epoch
class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite: the weights can no longer be trusted."""


def train_one_epoch(model, loader, optimizer, loss_fn, device, *, channels_last=False, amp=False, scaler=None,
                    scheduler=None, check_targets=True, epoch: int = 1, progress=None) -> dict:
    """One pass over ``loader``: forward, loss, backward, step. Returns the mean training
    loss and accuracy. ``scheduler`` (if given) is stepped after every batch.

    A loader that gives this process its part of each global batch (under torchrun, see
    :class:`xferlib.distributed.GlobalBatchSampler`) also says how much each part weighs; the loss
    and accuracy returned are then those over all processes, the same on each."""
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)
    share = getattr(getattr(loader, "batch_sampler", None), "share", None)  # several processes: (count, weight) per batch
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for batch, (x, y) in enumerate(progress_bar(loader, enable=progress, desc=f"epoch {epoch}", total=len(loader)), 1):
        x, y = to_device(x, device, channels_last), y.to(device, non_blocking=device.type == "cuda")
        with autocast(device, amp):
            out = model(x)                                   # [B, C]
            if check_targets and (y.is_floating_point() or bool(((y < 0) | (y >= out.shape[-1])).any())):
                check_labels(y, out.shape[-1], where=f"batch {batch} of epoch {epoch}")  # names what is wrong
            loss = loss_fn(out, y)
        value = loss.item()  # one synchronisation per batch, for the check and the running mean
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"The loss became {value} at epoch {epoch}, batch {batch} of {len(loader)}, so the weights "
                "would turn into NaN. Try a lower learning rate (e.g. lr / 10), and check the inputs for NaN or "
                "infinite values (torch.isfinite(x).all())."
            )
        n, weight = share(batch - 1) if share is not None else (y.shape[0], 1.0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss if weight == 1.0 else loss * weight).backward()  # a short last batch: parts weighed by size
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        total_loss += value * n
        correct += (out[:n].argmax(1) == y[:n]).sum().item() if out.dim() == 2 and y.dim() == 1 else 0
        seen += n
    if share is not None:  # the sums over every process's part
        total_loss, correct, seen = distributed.all_reduce_sum([total_loss, correct, seen])
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}


# --------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train,
    val=None,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 32,
    *,
    body_lr: float | None = None,
    stage_decay: float | None = None,
    groups: list[dict] | None = None,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    scheduler=None,
    early_stopping: int | None = None,
    restore_best: bool | None = None,
    monitor: str = "val_loss",
    loss_fn: Callable | None = None,
    device=None,
    amp: bool = True,
    channels_last: bool | None = None,
    num_workers: int = 0,
    seed: int | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` on ``train`` and return a :class:`History`, one row per epoch.

    - ``lr`` for the head (or the whole model); ``body_lr`` and ``stage_decay`` set the
      backbone's rates (see :func:`param_groups`); ``groups`` gives the groups outright.
    - ``scheduler``: None, ``"cosine"``, ``"onecycle"`` (stepped per batch) or a callable
      that takes the optimizer and returns a scheduler stepped once per epoch.
    - ``early_stopping=k``: stop when the validation loss has not improved for ``k`` epochs.
    - ``restore_best``: put back the weights of the epoch with the lowest validation loss.
      By default (None) this happens when early stopping is on; True does it after any run
      with validation data; False never does.
    - ``monitor="val_accuracy"`` makes both watch the validation accuracy instead (for a
      network from scratch, whose validation loss can rise while its accuracy still climbs).
    - ``loss_fn`` (default cross-entropy) is used for training and for the validation loss.
    - ``amp`` uses mixed precision on CUDA only; ``channels_last`` defaults to on for
      convolutional networks; ``progress`` shows tqdm bars (default: when interactive).

    Under ``torchrun`` (see :mod:`xferlib.distributed`) every process calls ``fit`` alike: the
    model trains wrapped in DistributedDataParallel, ``batch_size`` is the global batch (a
    multiple of the number of processes), each process reads its part of it, and the weights
    end as one process with the same ``seed`` would leave them (up to rounding; BatchNorm and
    dropout aside). Every process returns the same History; rank 0 alone shows progress.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping needs validation data (val=...)")
    if restore_best and val is None:
        raise ValueError("restore_best needs validation data (val=...) to tell which epoch was best")
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
    restore = early_stopping is not None if restore_best is None else restore_best
    world = distributed.setup()  # several processes under torchrun; nothing in a single one
    if world.active:
        if isinstance(train, DataLoader):
            raise ValueError(f"Under torchrun, {world.size} processes share the training data: pass the Dataset (or a "
                             "(features, labels) pair), not a DataLoader, so that each process can read its part")
        distributed.check_batch_size(batch_size, world.size)
        progress = progress if world.is_main else False
    device, channels_last = place(model, device, channels_last)
    opt = make_optimizer(groups or param_groups(model, lr, body_lr, stage_decay), optimizer, lr, weight_decay)
    check_targets = loss_fn is None  # a custom loss may take other targets (soft labels, floats)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    if check_targets and (labels := _known_labels(train)) is not None:
        check_labels(labels)  # whole numbers, not negative: before any work
    model.train()
    if not isinstance(train, DataLoader):
        train = _dataset(train)  # a (features, labels) pair becomes a dataset once, here
    size = len(train.dataset if isinstance(train, DataLoader) else train)
    drop_last = not isinstance(train, DataLoader) and _single_batch_would_break_batchnorm(model, size, batch_size, world.size)
    if drop_last and size < batch_size:  # the only batch would be dropped
        raise ValueError("One training example cannot train a model with BatchNorm layers (a batch of one has no variance)"
                         if size == 1 else f"{size} training examples among {world.size} processes leave one or none each, "
                         "which a BatchNorm1d layer cannot normalise")
    loader = make_loader(train, batch_size, device, shuffle=True, num_workers=num_workers, seed=distributed.shared_seed(seed),
                         drop_last=drop_last, world=world)
    net = distributed.wrap(model, device)  # DistributedDataParallel under torchrun, else the model itself
    sched, per_batch = make_scheduler(scheduler, opt, epochs, len(loader))
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())

    history, best_score, best_state, stale = History(), -math.inf, None, 0
    history.monitor = monitor
    sign = -1.0 if monitor == "val_loss" else 1.0  # a higher score is better
    epoch_bar = progress_bar(range(1, epochs + 1), enable=progress, desc="epochs")
    for epoch in epoch_bar:
        start = time.perf_counter()
        row = {"epoch": epoch}
        row.update(train_one_epoch(net, loader, opt, loss_fn, device, channels_last=channels_last, amp=use_amp, scaler=scaler,
                                   scheduler=sched if per_batch else None, check_targets=check_targets, epoch=epoch, progress=progress))
        if sched is not None and not per_batch:
            sched.step()
        row.update(val_loss=None, val_accuracy=None, lr=opt.param_groups[0]["lr"])
        if val is not None:
            metrics = evaluate(model, val, batch_size=batch_size, device=device, channels_last=channels_last, amp=amp, loss_fn=loss_fn)
            row.update(val_loss=metrics["loss"], val_accuracy=metrics["accuracy"])
            epoch_bar.set_postfix(val_acc=f"{metrics['accuracy']:.3f}")
        row["seconds"] = distributed.all_reduce_max([time.perf_counter() - start])[0]  # the slowest process's
        history.append(row)
        if val is None:
            continue
        if sign * row[monitor] > best_score + 1e-6:
            best_score, stale = sign * row[monitor], 0
            if restore:
                best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if early_stopping is not None and stale >= early_stopping:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


# --------------------------------------------------------------------------- evaluate
def predict(model: nn.Module, data, batch_size: int = 64, device=None, channels_last: bool | None = None, amp: bool = True,
            progress: bool | None = False, *, num_workers: int = 0, desc: str = "predict"):
    """``(outputs [N, ...], labels [N])`` of ``model`` over a dataset, on the CPU, in eval mode
    (every submodule's mode restored afterwards) and inference mode; float32 outputs.

    Under ``torchrun`` each process runs a contiguous part of the dataset (in batches of its
    share of ``batch_size``), and every process returns all the outputs, in order, each once
    (a DataLoader is not split: each process runs all of it)."""
    world = distributed.setup()
    device, channels_last = place(model, device, channels_last)  # outside inference mode: the weights stay normal tensors
    counts = None
    if world.active and not isinstance(data, DataLoader):
        data = _dataset(data)
        counts = distributed.split(len(data), world.size)
        start = sum(counts[: world.rank])
        # a process with nothing to do runs one item and keeps none: the gathering needs every process
        data = Subset(data, range(start, start + counts[world.rank]) if counts[world.rank] else range(1))
        batch_size = math.ceil(batch_size / world.size) if isinstance(batch_size, int) and batch_size > 0 else batch_size
    if not world.is_main:
        progress = False
    loader = make_loader(data, batch_size, device, num_workers=num_workers)
    outputs, labels = [], []
    with eval_mode(model), torch.inference_mode():
        for x, y in progress_bar(loader, enable=progress, desc=desc, total=len(loader)):
            with autocast(device, amp):
                out = model(to_device(x, device, channels_last))     # [B, C] or [B, F]
            outputs.append(out.float().cpu())
            labels.append(torch.as_tensor(y).cpu())
    outputs, labels = torch.cat(outputs), torch.cat(labels)
    if counts is not None:  # every process's part, in order
        mine = counts[world.rank]
        outputs, labels = distributed.gather_rows(outputs[:mine], counts), distributed.gather_rows(labels[:mine], counts)
    return outputs, labels


def evaluate(model: nn.Module, data, batch_size: int = 64, device=None, channels_last: bool | None = None, amp: bool = True,
             loss_fn: Callable | None = None) -> dict:
    """Accuracy, mean loss (``loss_fn``, default cross-entropy) and size of ``data`` under ``model``
    (under torchrun: over all of ``data``, the same on every process)."""
    logits, labels = predict(model, data, batch_size, device, channels_last, amp)
    loss = (loss_fn or nn.functional.cross_entropy)(logits, labels)
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item(), "loss": float(loss), "n": len(labels)}


def accuracy_spread(values) -> str:
    """'mean ± std' of a list of accuracies, as text (for tables in lessons)."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"
