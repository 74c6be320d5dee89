"""Where the tensors live, and how to make a run repeatable.

``pick_device`` chooses CUDA, then Apple's MPS, then the CPU. The ``XFERLIB_DEVICE``
environment variable overrides the choice (``cpu``, ``cuda``, ``cuda:1``, ``mps``), so a
workshop can pin every participant to the CPU without editing a notebook. ``place``,
``to_device`` and ``autocast`` put a model and its batches there, in the memory format and
precision that run fastest (used by training and features).
"""

from __future__ import annotations

import contextlib
import os
import platform
import random

import numpy as np
import torch
from torch import nn

ENV_VAR = "XFERLIB_DEVICE"
COMPUTE_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_available(device: torch.device) -> torch.device:
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"Device {str(device)!r} was asked for, but PyTorch sees no CUDA GPU here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                "Use 'cpu', or unset XFERLIB_DEVICE to let xferlib choose."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"Device {str(device)!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible."
            )
    elif device.type == "mps" and not _mps_available():
        raise RuntimeError("Device 'mps' was asked for, but Apple's MPS backend is not available here.")
    return device


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    Order of precedence: the ``prefer`` argument, then the ``XFERLIB_DEVICE`` environment
    variable, then the best available of cuda, mps and cpu. Asking for a device that is not
    there raises a ``RuntimeError`` that says so, rather than failing later inside a kernel.
    """
    wanted = prefer if prefer is not None else os.environ.get(ENV_VAR, "").strip() or None
    if wanted is not None:
        source = "argument" if prefer is not None else f"{ENV_VAR} variable"
        try:
            device = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(
                f"{wanted!r} (from the {source}) is not a device name; use cpu, cuda, cuda:N or mps"
            ) from err
        if device.type not in COMPUTE_TYPES:
            raise ValueError(
                f"{wanted!r} (from the {source}) is not a device xferlib computes on; use cpu, cuda, cuda:N or mps"
            )
        return _check_available(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_conv(model: nn.Module) -> bool:
    """True when ``model`` holds a 2-d convolution (and so runs faster in channels_last)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def place(model: nn.Module, device=None, channels_last: bool | None = None) -> tuple[torch.device, bool]:
    """Move ``model`` to ``device`` (see :func:`pick_device`), in channels_last memory format
    for convolutional networks unless told otherwise; returns ``(device, channels_last)``."""
    device = device if isinstance(device, torch.device) else pick_device(device)
    if channels_last is None:
        channels_last = has_conv(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch on ``device`` (copied asynchronously to a GPU), image batches in channels_last."""
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bfloat16 where supported, else float16); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy and PyTorch (every device), and return the seed.

    With ``deterministic=True`` PyTorch is asked to use deterministic algorithms only
    (slower on a GPU, and some operations then raise an error instead of running).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        # cuBLAS needs this to be deterministic; it is read when the first handle is created.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


def _total_memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return pages * page_size / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def environment_report() -> dict:
    """A dictionary describing this machine: versions, device, threads, memory, GPU, and the
    feature cache (folder and size; ``xl.clear_cache()`` empties it)."""
    import torchvision

    from .storage import cache_dir, cache_size, display_path

    device = pick_device()
    memory = _total_memory_gib()
    report = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(memory, 1) if memory else None,
        "gpu": None,
        "gpu_memory_gib": None,
        "cache_dir": display_path(cache_dir()),
        "cache_mib": round(cache_size() / 2**20, 1),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report["gpu"] = props.name
        report["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    elif device.type == "mps":
        report["gpu"] = "Apple MPS"
    return report
