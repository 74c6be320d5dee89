"""How xferlib talks to a person: is a notebook watching, and progress bars when someone is.

This module imports neither PyTorch nor widgets, so ``python -m xferlib.quizzes`` stays fast.
Used by training, features, text, data (downloads), quizzes and flashcards.
"""

from __future__ import annotations

import sys
from typing import Iterable


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab): widgets can show."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def interactive() -> bool:
    """True when someone is watching: a Jupyter kernel or a terminal."""
    return in_kernel() or sys.stderr.isatty()


def progress_bar(iterable: Iterable | None = None, enable: bool | None = None, **kwargs):
    """A tqdm.auto progress bar, shown only when someone is watching (``enable=None``), or
    forced on or off."""
    from tqdm.auto import tqdm

    if enable is None:
        enable = interactive()
    return tqdm(iterable, disable=not enable, leave=False, **kwargs)
