"""Several processes, one result: xferlib under ``torchrun`` (PyTorch's DistributedDataParallel).

``torchrun --nproc_per_node=N script.py`` starts N copies of a script and tells each one, in
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
who it is and where the others are; ``accelerate launch`` and Slurm jobs that run torchrun set the
same. ``xl.fit``, ``xl.evaluate``, ``xl.predict`` and ``xl.extract_features`` read them, so the
same script runs unchanged on one process or many:

- :func:`setup` joins the process group once (gloo for CPU tensors, NCCL for CUDA tensors, with a
  timeout: ``$XFERLIB_DIST_TIMEOUT`` seconds, default 600), unless the script already did.
- ``fit`` wraps the model in DistributedDataParallel, which averages the gradients, and each
  process reads only its contiguous part of every global batch (:class:`GlobalBatchSampler`).
  ``batch_size`` stays the global batch: it must divide by the number of processes, and a run
  on N processes takes the same steps, on the same batches in the same order, as one process
  with the same seed (see :class:`GlobalBatchSampler` for the last, short batch).
- ``predict`` and ``evaluate`` give each process a contiguous range of the data, then gather the
  outputs, so that every process returns the whole result, in order, each item counted once.
  Metrics and the ``History`` are the same on every process.
- Rank 0 alone shows progress bars and writes files (cache entries, checkpoints); the others
  wait for it where they need the result (:func:`on_main`, :func:`main_first`).

Without those variables (a notebook, ``python script.py``) nothing here does anything: no process
group, no wrapper, the same results as before. Used by storage, training and checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from typing import Callable, Iterator, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, RandomSampler, Sampler, SequentialSampler

TIMEOUT_ENV = "XFERLIB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class World(NamedTuple):
    """This process's place among all of them: ``rank`` (0 .. size-1), ``size`` (the number of
    processes) and ``local_rank`` (its number on this machine: which GPU it takes)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process works together."""
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"The environment variable {name}={raw!r} must be a whole number") from None


def launched() -> bool:
    """True when a launcher (torchrun, accelerate, Slurm with torchrun) set the variables that say
    who this process is and where to meet the others."""
    return all(os.environ.get(name) for name in LAUNCH_VARS)


def world() -> World:
    """This process's :class:`World`: from the process group when there is one, else from the
    launcher's variables, else a single process (rank 0 of 1)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    if launched():
        return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    return World()


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} must be a positive number of seconds")
    return seconds


def setup(timeout: float | None = None) -> World:
    """Join the process group the launcher described, once, and return this process's :class:`World`.

    Nothing happens for a single process, or when the script made the group itself. The group uses
    gloo for CPU tensors and, where CUDA and NCCL are available, NCCL for CUDA tensors, each
    process on the GPU of its ``LOCAL_RANK``. A collective that waits longer than ``timeout``
    seconds (default ``$XFERLIB_DIST_TIMEOUT``, else 600) raises instead of hanging, so a process
    that died or went astray stops the run.
    """
    if dist.is_available() and dist.is_initialized():
        return world()
    here = world()
    if not here.active:
        return here
    if not dist.is_available():
        raise RuntimeError(f"This PyTorch ({torch.__version__}) has no torch.distributed, so {here.size} processes cannot work together")
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if cuda:
        torch.cuda.set_device(here.local_rank % torch.cuda.device_count())
    seconds = timeout_seconds() if timeout is None else float(timeout)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=seconds))
    atexit.register(shutdown)
    return world()


def shutdown() -> None:
    """Leave the process group (at exit, for a group :func:`setup` made)."""
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()  # wrappers left in reference cycles let go of the group first
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that prints and writes files."""
    return world().is_main


# --------------------------------------------------------------------------- collectives
def _tensor_device() -> torch.device:
    """Where collective tensors go: the CPU, unless the group speaks NCCL alone."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if active():
        dist.barrier()


def _reduce(values, op) -> list[float]:
    values = [float(v) for v in values]
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t, op=op)
    return t.cpu().tolist()


def all_reduce_sum(values) -> list[float]:
    """Each value summed over the processes (metric sums: losses, counts), the same on every one."""
    return _reduce(values, dist.ReduceOp.SUM)


def all_reduce_max(values) -> list[float]:
    """Each value's largest over the processes (the seconds an epoch took: the slowest)."""
    return _reduce(values, dist.ReduceOp.MAX)


def all_true(flag: bool) -> bool:
    """True when ``flag`` is true on every process."""
    return bool(_reduce([1.0 if flag else 0.0], dist.ReduceOp.MIN)[0]) if active() else bool(flag)


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (any picklable value) on every process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shared_seed(seed: int | None) -> int | None:
    """``seed``, or where it is None and several processes run, one seed drawn by rank 0 for all
    of them: every process must shuffle the data in the same order."""
    if seed is not None or not active():
        return seed
    return int(broadcast_object(int(torch.randint(0, 2**62, ()).item()) if is_main() else None))


def split(n: int, parts: int) -> list[int]:
    """How many of ``n`` items each of ``parts`` processes gets: contiguous parts as equal as they
    can be, the first ones taking one more (``split(7, 2) == [4, 3]``)."""
    q, r = divmod(n, parts)
    return [q + (i < r) for i in range(parts)]


def gather_rows(rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every process's ``rows`` (``counts[rank]`` of them, same trailing shape and dtype
    everywhere), concatenated in rank order, on every process; on the CPU."""
    if not active():
        return rows
    size, rank = dist.get_world_size(), dist.get_rank()
    if rows.shape[0] != counts[rank]:
        raise ValueError(f"rank {rank} holds {rows.shape[0]} rows, but counts says {counts[rank]}")
    device = _tensor_device()
    padded = torch.zeros((max(counts), *rows.shape[1:]), dtype=rows.dtype, device=device)
    padded[: rows.shape[0]] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts)]).cpu()  # padding dropped: each item once


# --------------------------------------------------------------------------- rank 0 writes
def on_main(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by rank 0 alone; the others wait for it and get its result.

    Rank 0's error is raised on every process (rank 0's own, the others a RuntimeError that
    names it), so no process waits for one that failed. Every process must call this."""
    if not active():
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # every process learns of it, then raises
            error = err
    outcome = broadcast_object((result, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if outcome[1] is not None:
        raise RuntimeError(f"rank 0 failed, so this process stops too: {outcome[1]}")
    return outcome[0]


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (a download, a cache to fill), the others once it is done,
    so they find its files instead of making their own::

        with xl.distributed.main_first():
            train = xl.data.flowers102("data", "train")
    """
    if not active():
        yield
        return
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


# --------------------------------------------------------------------------- the model
def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes work together (it copies rank
    0's weights to all, then averages the gradients in every backward pass); else ``model``."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type != "cuda" and any(isinstance(m, nn.SyncBatchNorm) and m.training for m in model.modules()):
        raise ValueError("SyncBatchNorm trains on CUDA only (PyTorch has no CPU version); on the CPU keep plain BatchNorm")
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer made a SyncBatchNorm, which normalises over the global
    batch (all processes) instead of each process's part: with it, a BatchNorm network trains
    on N GPUs as on one. CUDA only; the layers keep their weights, statistics and modes."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


# --------------------------------------------------------------------------- the data
class GlobalBatchSampler(Sampler[list[int]]):
    """This process's part of each global batch, in the order one process would see them.

    The global batches are those of ``DataLoader(shuffle=True, generator=g)`` (PyTorch's own
    RandomSampler and BatchSampler inside, so the same draws from ``g``); each global batch is cut into
    ``world_size`` contiguous parts, and this process takes part ``rank``. Full batches split
    into equal parts, so DistributedDataParallel's average of the processes' mean gradients is
    the mean gradient over the global batch. The last, short batch (``b`` items) splits as
    evenly as it can (:func:`split`), and :meth:`share` gives each process the weight
    ``world_size * count / b`` for its mean loss, so that the average is again the mean over the
    ``b`` items. A process whose part is empty (``b`` below the number of processes) runs one item
    with weight 0: it must still take part in the backward pass.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int, world_size: int, shuffle: bool = True,
                 generator: torch.Generator | None = None, drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        check_batch_size(batch_size, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in 0..{world_size - 1}, got {rank}")
        if shuffle and generator is None and world_size > 1:
            raise ValueError("Several processes must shuffle alike: pass a seeded generator")
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        order = RandomSampler(range(size), generator=generator) if shuffle else SequentialSampler(range(size))
        self.global_batches = BatchSampler(order, batch_size, drop_last)  # one epoch's global batches, as one process has them

    def __len__(self) -> int:
        return len(self.global_batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches:
            counts = split(len(batch), self.world_size)
            start = sum(counts[: self.rank])
            yield batch[start:start + counts[self.rank]] or batch[:1]

    def share(self, step: int) -> tuple[int, float]:
        """``(count, weight)`` of this process at batch ``step`` (0-based): how many of the items it
        reads count, and the factor for its mean loss."""
        b = min(self.batch_size, self.size - step * self.batch_size)
        count = split(b, self.world_size)[self.rank]
        return count, self.world_size * count / b


def check_batch_size(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that does not split into equal parts, one per process."""
    if world_size > 1 and batch_size % world_size:
        lower, upper = batch_size - batch_size % world_size, batch_size + world_size - batch_size % world_size
        options = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"batch_size={batch_size} is the global batch, split among {world_size} processes, so it must be a "
            f"multiple of {world_size}: use {options}. Equal parts make the averaged gradient the global batch's mean."
        )
