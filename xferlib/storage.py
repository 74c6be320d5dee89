"""Files on disk: atomic writes, the on-disk cache, and the keys that say when a cached
result still holds.

Nothing here is half-written: :func:`save_atomic` writes beside the final name and renames
into place. The cache (``$XFERLIB_CACHE``, default ``~/.cache/xferlib``) keeps features and
embeddings so a lesson runs its frozen backbone once; :func:`cached` reads or computes an
entry, warns instead of losing the work when the folder cannot be written, and keeps the
folder under a size limit (``$XFERLIB_CACHE_LIMIT_MB``, default 2048) by removing the
least recently used entries. :func:`clear_cache` empties it. Used by features, text and
checkpoints (writes) and by data (dataset fingerprints). Under torchrun, rank 0 alone reads
and writes cache entries and the other processes wait for it (:mod:`xferlib.distributed`).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import glob
import hashlib
import os
import re
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import distributed

CACHE_ENV = "XFERLIB_CACHE"
LIMIT_ENV = "XFERLIB_CACHE_LIMIT_MB"
DEFAULT_LIMIT_MB = 2048
ENTRY = re.compile(r"^xl-[a-z]+-[0-9a-f]{24}\.pt$")  # names of cache entries: nothing else is ever removed
_STALE_TMP_SECONDS = 24 * 3600


# --------------------------------------------------------------------------- atomic writes
def _tmp_owner_gone(tmp: Path) -> bool:
    """A temporary file left by a writer that no longer runs (named ``<name>.<pid>.<random>.tmp``),
    or one older than a day."""
    try:
        if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
            return True
    except OSError:
        return False
    match = re.search(r"\.(\d+)\.[^.]*\.tmp$", tmp.name)
    if match is None or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive but not ours, or cannot tell
        pass
    return False


@contextlib.contextmanager
def _atomic_file(path: Path):
    """A binary handle on a new temporary file beside ``path``, renamed onto it on success.

    Leftovers of earlier writes to the same name that crashed (their process is gone) are
    removed first; a failure leaves no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        if _tmp_owner_gone(old):
            old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` so that the file appears complete or not at all."""
    path = Path(path)
    with _atomic_file(path) as f:
        torch.save(obj, f)
    return path


def write_atomic(path, data: bytes | str) -> Path:
    """Text (UTF-8) or bytes to ``path``, complete or not at all (editions, benchmark reports)."""
    path = Path(path)
    with _atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def display_path(path) -> str:
    """A path as a person would type it: the home folder shown as ~."""
    path, home = str(path), os.path.expanduser("~")
    return "~" + path[len(home):] if home not in ("", "/") and path.startswith(home + os.sep) else path


# --------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """The cache folder: ``$XFERLIB_CACHE``, else ``~/.cache/xferlib``."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/xferlib")).expanduser()


def _entries(folder: Path | None = None) -> list[Path]:
    root = Path(folder) if folder is not None else cache_dir()
    if not root.is_dir():
        return []
    return [p for p in root.rglob("xl-*.pt") if ENTRY.match(p.name) and p.is_file()]


def cache_size(folder=None) -> int:
    """Bytes held by the cache's entries (in ``folder``, default the cache folder)."""
    return sum(p.stat().st_size for p in _entries(folder))


def clear_cache(folder=None) -> int:
    """Remove every cached entry (features, embeddings) and return how many were removed.
    Only files that xferlib named as cache entries are touched."""
    removed = 0
    for path in _entries(folder):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def cache_limit_bytes() -> int:
    raw = os.environ.get(LIMIT_ENV, str(DEFAULT_LIMIT_MB)).strip()
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{LIMIT_ENV}={raw!r} is not a number of megabytes") from None
    if mb <= 0:
        raise ValueError(f"{LIMIT_ENV}={raw!r} must be a positive number of megabytes")
    return int(mb * 2**20)


def _enforce_limit(folder: Path, keep: Path) -> None:
    """Remove the least recently used entries of ``folder`` (never ``keep``) until it fits the limit."""
    entries = sorted(((p.stat(), p) for p in _entries(folder)), key=lambda e: e[0].st_mtime)
    total, limit = sum(st.st_size for st, _ in entries), cache_limit_bytes()
    for st, old in entries:
        if total <= limit:
            break
        if old != keep:
            total -= st.st_size
            old.unlink(missing_ok=True)


def entry_path(cache, kind: str, key: str) -> Path:
    """Where the cache entry ``kind`` (``features``, ``text``) with ``key`` lives: in the folder
    ``cache``, or in the default one (``$XFERLIB_CACHE/features``) when ``cache`` is True."""
    folder = cache_dir() / "features" if cache is True else Path(cache)
    return folder / f"xl-{kind}-{key[:24]}.pt"


def _load_entry(path: Path, repair: bool = True):
    """The entry at ``path``, or None when there is none or it cannot be read (then removed, with ``repair``)."""
    if not path.exists():
        return None
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign: compute again
        if repair:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves its entries
        os.utime(path)  # recently used: the size limit removes the oldest first
    return value


def _store_entry(path: Path, value: dict) -> None:
    try:
        save_atomic(value, path)
        _enforce_limit(path.parent, keep=path)
    except OSError as err:
        warnings.warn(
            f"Could not write the cache entry {path} ({err.strerror or err}); the result is returned "
            f"but not kept. Set {CACHE_ENV} to a writable folder, or pass cache=False.",
            stacklevel=4,
        )


def cached(path, compute: Callable[[], dict]) -> dict:
    """The dict of tensors stored at ``path``, or ``compute()`` stored there and returned.

    An unreadable entry is computed again. A folder that cannot be written costs the cache,
    not the result: a warning says so and the computed value is returned.

    Under torchrun every process calls this alike: rank 0 decides whether the entry holds; if
    not, every process computes (``compute`` may share the work among them), rank 0 alone writes
    and the others wait until the entry is there. A process that cannot see rank 0's folder
    (another machine) gets the entry from rank 0."""
    path = Path(path)
    if not distributed.setup().active:
        value = _load_entry(path)
        if value is None:
            value = compute()
            _store_entry(path, value)
        return value
    value = _load_entry(path) if distributed.is_main() else None
    if distributed.broadcast_object(value is not None):  # rank 0 found it
        if value is None:
            value = _load_entry(path, repair=False)
        if not distributed.all_true(value is not None):
            sent = distributed.broadcast_object(value if distributed.is_main() else None)
            value = sent if value is None else value
        return value
    value = compute()
    if distributed.is_main():
        _store_entry(path, value)
    distributed.barrier()  # the entry exists for everyone once this returns
    return value


# --------------------------------------------------------------------------- keys
def model_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (and the architecture's text)."""
    h = hashlib.sha1(repr(model).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_digest(path, h=None):
    """Feed the bytes of the file at ``path`` into the hash ``h`` (a new SHA-1 by default)."""
    h = h or hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


class UnkeyableTransform(TypeError):
    """A transform whose behaviour cannot be told from what it holds, so results made with it
    cannot be cached safely."""


def transform_key(transform) -> str:
    """A hash that changes when what ``transform`` computes can change.

    A ``repr`` is not enough: every ``T.Lambda`` prints as ``Lambda()`` and a plain function
    prints its memory address. So functions are keyed by their code, defaults, closure values
    and the globals they read; objects by their attributes; modules by their weights. Anything
    whose content cannot be read raises :class:`UnkeyableTransform`."""
    h = hashlib.sha1(b"xferlib.transform.v1|")
    _feed(h, transform, {}, 0, "the transform")
    return h.hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _text(h, *parts) -> None:
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")


def _feed_code(h, code: types.CodeType, seen, depth, where) -> None:
    _text(h, "code", code.co_name, code.co_argcount, code.co_kwonlyargcount, code.co_names, code.co_varnames)
    h.update(code.co_code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, seen, depth + 1, where)
        else:
            _feed(h, const, seen, depth + 1, where)


def _library_version(module_name: str | None) -> str | None:
    """The installed version of the package that defines ``module_name``; None for user code."""
    module = sys.modules.get(module_name or "")
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if not origin or not any(part in origin for part in ("site-packages", "dist-packages")) and not origin.startswith(sys.base_prefix):
        return None
    top = sys.modules.get(module_name.split(".")[0])
    return str(getattr(top, "__version__", "installed"))


def _feed_function(h, fn: types.FunctionType, seen, depth, where) -> None:
    _text(h, "function", fn.__module__, fn.__qualname__)
    version = _library_version(fn.__module__)
    if version is not None:  # library code: fixed for a given installed version
        _text(h, "library", version)
        return
    _feed_code(h, fn.__code__, seen, depth, where)
    _feed(h, fn.__defaults__, seen, depth + 1, where)
    _feed(h, fn.__kwdefaults__, seen, depth + 1, where)
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            value = None
        _feed(h, value, seen, depth + 1, f"{where} (closure of {fn.__qualname__})")
    names = set(fn.__code__.co_names)
    for const in fn.__code__.co_consts:  # names read by nested functions and comprehensions
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    for name in sorted(names):
        if name in fn.__globals__:
            _text(h, "global", name)
            _feed(h, fn.__globals__[name], seen, depth + 1, f"{where} (global {name!r} of {fn.__qualname__})")


def _feed(h, obj, seen: dict, depth: int, where: str) -> None:
    if depth > 30:
        raise UnkeyableTransform(f"{where}: nested too deeply to key")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, range, slice, type(Ellipsis))):
        _text(h, type(obj).__name__, repr(obj))
        return
    if isinstance(obj, enum.Enum):
        _text(h, "enum", type(obj).__qualname__, obj.name)
        return
    if isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType)):
        _text(h, "named", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
        return
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        _text(h, "tensor", t.dtype, tuple(t.shape))
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return
    if isinstance(obj, np.ndarray):
        _text(h, "array", obj.dtype, obj.shape)
        h.update(np.ascontiguousarray(obj).tobytes())
        return
    if isinstance(obj, np.generic):
        _text(h, "np", obj.dtype, repr(obj.item()))
        return
    if id(obj) in seen:
        _text(h, "seen")
        return
    seen[id(obj)] = obj  # kept alive, so that no later object reuses the id
    if isinstance(obj, (list, tuple)):
        _text(h, type(obj).__name__, len(obj))
        for item in obj:
            _feed(h, item, seen, depth + 1, where)
        return
    if isinstance(obj, (set, frozenset)):
        _text(h, "set", len(obj))
        for text in sorted(transform_key(item) for item in obj):
            _text(h, text)
        return
    if isinstance(obj, dict):
        _text(h, "dict", len(obj))
        for key in sorted(obj, key=repr):
            _feed(h, key, seen, depth + 1, where)
            _feed(h, obj[key], seen, depth + 1, where)
        return
    if isinstance(obj, types.FunctionType):
        _feed_function(h, obj, seen, depth, where)
        return
    if isinstance(obj, types.MethodType):
        _text(h, "method")
        _feed(h, obj.__func__, seen, depth + 1, where)
        _feed(h, obj.__self__, seen, depth + 1, where)
        return
    if isinstance(obj, functools.partial):
        _text(h, "partial")
        for part in (obj.func, obj.args, obj.keywords):
            _feed(h, part, seen, depth + 1, where)
        return
    cls = type(obj)
    _text(h, "object", cls.__module__, cls.__qualname__)
    if isinstance(obj, nn.Module):
        public = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        _feed(h, public, seen, depth + 1, where)
        _feed(h, dict(obj.state_dict()), seen, depth + 1, where)
        for name, child in obj.named_children():
            _text(h, "child", name)
            _feed(h, child, seen, depth + 1, where)
        return
    state = getattr(obj, "__dict__", None)
    if state is not None:
        _feed(h, dict(state), seen, depth + 1, where)
        return
    text = repr(obj)
    if _ADDRESS.search(text):
        raise UnkeyableTransform(
            f"{where}: cannot tell what {text[:80]} computes (its text shows only a memory address)"
        )
    _text(h, text)
