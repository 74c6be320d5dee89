"""Training and evaluation that use the hardware well and stay out of the way.

``fit`` trains any module on any dataset of ``(input, label)`` pairs: images through a
whole network, or cached feature vectors through a small head. On CUDA it uses automatic
mixed precision (bfloat16 where the GPU supports it, else float16 with a gradient scaler),
pinned memory and non-blocking copies; convolutional networks run in channels_last memory
format on every device. Frozen parts stay frozen (see :mod:`xferlib.freezing`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .device import pick_device


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


# --------------------------------------------------------------------------- progress
def _interactive() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
            return True
    except ImportError:
        pass
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable | None = None, enable: bool | None = None, **kwargs):
    """A tqdm.auto progress bar, shown only when someone is watching (``enable=None``), or
    forced on or off."""
    from tqdm.auto import tqdm

    if enable is None:
        enable = _interactive()
    return tqdm(iterable, disable=not enable, leave=False, **kwargs)


# --------------------------------------------------------------------------- history
class History(list):
    """One dict per epoch (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``seconds``), with helpers to read and plot it."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    @property
    def best(self) -> dict:
        """The epoch with the lowest validation loss (or training loss without validation)."""
        key = "val_loss" if self and self[0].get("val_loss") is not None else "train_loss"
        return min(self, key=lambda row: row[key])

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


# --------------------------------------------------------------------------- plumbing
def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _loader(data, batch_size: int, shuffle: bool, device: torch.device, num_workers: int = 0, seed: int | None = None):
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        data = torch.utils.data.TensorDataset(*data)
    if not isinstance(data, Dataset):
        raise TypeError(f"Expected a Dataset, a DataLoader or a (features, labels) pair, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("The dataset is empty")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=generator,
    )


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


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


def _prepare(model: nn.Module, device, channels_last: bool | None):
    device = pick_device(device) if not isinstance(device, torch.device) else device
    if channels_last is None:
        channels_last = _has_conv(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


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


def _make_scheduler(scheduler, optimizer, epochs: int, steps_per_epoch: int):
    if scheduler is None:
        return None, False
    if scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch)), True
    if scheduler == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(1, epochs * steps_per_epoch)), True
    if callable(scheduler):
        return scheduler(optimizer), False  # stepped once per epoch
    raise ValueError(f"scheduler must be None, 'cosine', 'onecycle' or a callable(optimizer), got {scheduler!r}")


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
    restore_best: bool = True,
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
    - ``early_stopping=k``: stop when the validation loss has not improved for ``k``
      epochs; with ``restore_best`` the weights of the best epoch are put back.
    - ``amp`` uses mixed precision on CUDA only; ``channels_last`` defaults to on for
      convolutional networks; ``progress`` shows tqdm bars (default: when interactive).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if early_stopping is not None and val is None:
        raise ValueError("early_stopping needs validation data (val=...)")
    device, channels_last = _prepare(model, device, channels_last)
    if groups is None:
        groups = param_groups(model, lr, body_lr, stage_decay)
    if not any(len(g["params"]) for g in groups):
        raise ValueError("The model has no trainable parameters: everything is frozen")
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}.get(optimizer)
    if opt_cls is None:
        raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {optimizer!r}")
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = opt_cls(groups, lr=lr, weight_decay=weight_decay, **extra)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    train_loader = _loader(train, batch_size, True, device, num_workers, seed)
    sched, per_batch = _make_scheduler(scheduler, opt, epochs, len(train_loader))
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())

    history = History()
    best_loss, best_state, stale = math.inf, None, 0
    epoch_bar = progress_bar(range(1, epochs + 1), enable=progress, desc="epochs")
    for epoch in epoch_bar:
        start = time.perf_counter()
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in progress_bar(train_loader, enable=progress, desc=f"epoch {epoch}", total=len(train_loader)):
            x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=device.type == "cuda")
            with _autocast(device, use_amp):
                out = model(x)
                loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if sched is not None and per_batch:
                sched.step()
            n = y.shape[0]
            total_loss += loss.item() * n
            correct += (out.argmax(1) == y).sum().item()
            seen += n
        if sched is not None and not per_batch:
            sched.step()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "val_loss": None,
            "val_accuracy": None,
            "lr": opt.param_groups[0]["lr"],
        }
        if val is not None:
            metrics = evaluate(model, val, batch_size=batch_size, device=device, channels_last=channels_last, amp=amp)
            row["val_loss"], row["val_accuracy"] = metrics["loss"], metrics["accuracy"]
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if val is not None:
            epoch_bar.set_postfix(val_acc=f"{row['val_accuracy']:.3f}")
            if row["val_loss"] < best_loss - 1e-6:
                best_loss, stale = row["val_loss"], 0
                if restore_best and early_stopping is not None:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if early_stopping is not None and stale >= early_stopping:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


# --------------------------------------------------------------------------- evaluate
@torch.inference_mode()
def predict(model: nn.Module, data, batch_size: int = 64, device=None, channels_last: bool | None = None, amp: bool = True, progress: bool | None = False):
    """``(logits [N, C], labels [N])`` for a dataset, on the CPU, in inference mode."""
    device, channels_last = _prepare(model, device, channels_last)
    logits, labels = [], []
    with eval_mode(model):
        for x, y in progress_bar(_loader(data, batch_size, False, device), enable=progress, desc="predict"):
            with _autocast(device, amp):
                out = model(_to_device(x, device, channels_last))
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, data, batch_size: int = 64, device=None, channels_last: bool | None = None, amp: bool = True) -> dict:
    """Accuracy, mean cross-entropy loss and size of ``data`` under ``model``."""
    logits, labels = predict(model, data, batch_size, device, channels_last, amp)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item(), "loss": loss, "n": len(labels)}


def accuracy_spread(values) -> str:
    """'mean ± std' of a list of accuracies, as text (for tables in lessons)."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"
