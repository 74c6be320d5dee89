"""What training a model costs, counted rather than guessed (lessons 10 and 14).

``training_memory`` runs one forward and backward pass and reports, in bytes, the four things a
training step holds: the weights, their gradients (trainable weights only), the optimizer's
running statistics, and the activations that autograd keeps for the backward pass. The last one
is measured with ``torch.autograd.graph.saved_tensors_hooks``: every tensor an operation saves
is counted once (by its storage), and the model's own parameters and buffers, which ops save
too, are not counted again. Lesson 10 uses it to show where the memory of full fine-tuning,
LoRA and the other parameter-efficient methods goes.

``flops`` counts the compute of a forward pass, and of the backward pass of a training step, with
PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``: matrix products and convolutions, two
FLOPs per multiply-add. The backward pass computes only the gradients autograd needs, so a frozen
weight costs no weight-gradient FLOPs, and nothing below the lowest trainable layer runs backward
at all. Lesson 14 uses both to compare what feature extraction, partial and full fine-tuning and LoRA cost.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from . import storage


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The bytes of some tensors' elements (a ``state_dict``'s values, a model's parameters); lessons 10, 14."""
    return sum(t.numel() * t.element_size() for t in tensors)


def save_tensors(tensors: dict, path) -> Path:
    """Tensors to a safetensors file, detached and on the CPU (what one task keeps on disk); lesson 10, bench."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return storage.write_atomic(path, save({name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}))


def folder_bytes(folder) -> int:
    """Bytes of every file under ``folder``; lesson 10, bench."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def saved_bytes(save: Callable[[Path], object]) -> int:
    """Bytes that ``save(folder)`` writes into a new, then removed, temporary folder: one task's storage; lesson 10, bench."""
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp))
        return folder_bytes(tmp)


def release_memory() -> bool:
    """Collect garbage and hand freed heap memory back to the operating system (glibc's ``malloc_trim``); lessons 10, 14.

    After a large model is dropped, the C allocator keeps much of its memory for reuse, so the
    process's resident memory stays high; large new tensors are then mapped afresh beside it. A
    lesson that runs several models one after another calls this between them to keep its peak
    down. Returns True where the trim ran (Linux with glibc), False elsewhere (garbage collected only).
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        trim = None
    if trim is None:
        return False
    trim(0)
    return True


@contextlib.contextmanager
def _train_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.train()  # layers pinned by xl.freeze stay in eval mode
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def _logits(out):
    """A model's output as a tensor: a Hugging Face style dict gives its logits."""
    return out.get("logits", next(iter(out.values()))) if isinstance(out, dict) else out


def _loss(out, targets, loss_fn):
    """Cross-entropy (or ``loss_fn``) against ``targets``; without targets, the sum of the outputs."""
    return (loss_fn or nn.functional.cross_entropy)(out, targets) if targets is not None else out.float().sum()


@contextlib.contextmanager
def _grads_set_aside(trainable):
    """Gradients cleared for one measured step and put back afterwards."""
    old = [p.grad for p in trainable]
    for p in trainable:
        p.grad = None
    try:
        yield
    finally:
        for p, g in zip(trainable, old):
            p.grad = g


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding,
                         groups, output_mask, out_shape=None, **_):
    """PyTorch's formula for a convolution's backward pass (used by :func:`flops`), with the weight
    gradient of a grouped convolution counted per group: PyTorch's own counts it as dense, which makes
    a depthwise convolution's weight gradient ``groups`` times too expensive (hundreds of times, in Lite0)."""
    from torch.utils.flop_counter import conv_flop_count

    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    count = 0
    if output_mask[0]:  # the input's gradient: a transposed convolution of grad_out with the weight
        count += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]), not transposed)
    if output_mask[1]:  # the weight's gradient: a convolution of the input with grad_out, one per group
        pair = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        count += conv_flop_count(t(pair[0]), t(pair[1]), t(out_shape[1])) // groups
    return count


def flops(model: nn.Module, inputs, targets=None, loss_fn: Callable | None = None, backward: bool = False) -> dict:
    """FLOPs of a forward pass of ``model`` on ``inputs`` and, with ``backward=True``, of one training step's backward pass; lesson 14.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
    attention, 2 FLOPs per multiply-add; elementwise work, normalisation, pooling and the loss are
    not counted; a grouped convolution's weight gradient is counted per group). Without ``backward``
    the forward pass runs under ``torch.no_grad`` in the model's current mode (inference). With it, one forward and backward pass runs in train mode, as in
    :func:`training_memory`: ``targets`` given, cross-entropy (or ``loss_fn``), else the sum of the
    outputs. The model comes back as it was: each layer's mode, its buffers (BatchNorm statistics),
    its gradients and the random state. Returns a dict of ints: ``forward``, ``backward`` (0 without
    ``backward``) and ``total``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    trainable = [p for p in model.parameters() if p.requires_grad]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})
    try:
        with torch.random.fork_rng(devices=[]), _grads_set_aside(trainable):
            if not backward:
                with torch.no_grad(), counter:
                    model(inputs)
                forward = counter.get_total_flops()
            else:
                with _train_mode(model), torch.enable_grad(), counter:
                    out = _logits(model(inputs))
                    forward = counter.get_total_flops()
                    loss = _loss(out, targets, loss_fn)
                    if loss.requires_grad:
                        loss.backward()
                del out, loss
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    total = counter.get_total_flops()
    return {"forward": int(forward), "backward": int(total - forward), "total": int(total)}


def training_memory(model: nn.Module, inputs, targets=None, loss_fn: Callable | None = None,
                    optimizer_states: int = 2) -> dict:
    """Bytes held by one training step of ``model`` on ``inputs``: parameters, gradients, optimizer state, saved activations; lessons 10, 14.

    One forward and backward pass in train mode (each layer's mode, the gradients and the random
    state are put back afterwards; no weight changes). ``targets`` given: cross-entropy (or
    ``loss_fn``), else the sum of the outputs. ``optimizer_states`` is the number of running
    tensors the optimizer keeps per trainable weight (AdamW and Adam: 2, SGD with momentum: 1).
    Returns a dict of ints: ``parameters``, ``gradients``, ``optimizer``, ``activations``, ``total``
    and ``trainable`` (a count of weights, not bytes). Activations are the tensors saved for the
    backward pass at the end of the forward pass, deduplicated by storage; the temporaries of the
    backward pass itself are not included.
    """
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    owned = {t.untyped_storage().data_ptr() for t in params + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in owned and storage.nbytes() > 0:
            saved[ptr] = max(saved.get(ptr, 0), storage.nbytes())
        # Keep the data, not the tensor: a saved output packed as itself refers back to the graph that
        # holds it, a cycle that would keep the graph (and the model's weights) alive after backward.
        return t.detach()

    with torch.random.fork_rng(devices=[]), _grads_set_aside(trainable), _train_mode(model), torch.enable_grad():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = _logits(model(inputs))
            loss = _loss(out, targets, loss_fn)
        if loss.requires_grad:
            loss.backward()
        grads = tensor_bytes(p.grad for p in trainable if p.grad is not None)
        del out, loss
    n_trainable = sum(p.numel() for p in trainable)
    result = {
        "parameters": tensor_bytes(params),
        "gradients": grads,
        "optimizer": optimizer_states * tensor_bytes(trainable),
        "activations": sum(saved.values()),
        "trainable": n_trainable,
    }
    result["total"] = result["parameters"] + result["gradients"] + result["optimizer"] + result["activations"]
    return result
