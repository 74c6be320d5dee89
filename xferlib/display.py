"""How xferlib talks to a person: is a notebook watching, and progress bars when someone is.

This module imports neither PyTorch nor widgets, so ``python -m xferlib.quizzes`` stays fast.
Used by training, features, text, data (downloads), quizzes and flashcards (HTML output), and plots (figures).
"""

from __future__ import annotations

import hashlib
import html
import sys
from collections import Counter
from typing import Iterable


def ipython_shell():
    """The running IPython shell, or None (a plain script, or no IPython installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab): widgets can show."""
    shell = ipython_shell()
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


_renders: Counter = Counter()  # renders per content in this process: ids unique, and stable across runs


def html_id(prefix: str, *parts: str) -> str:
    """An element id from ``parts`` and how often they were rendered here: unique on a page,
    the same when a notebook is executed again (no churn in saved outputs)."""
    key = "\0".join(parts)
    _renders[key] += 1
    return f"{prefix}-" + hashlib.sha256(f"{key}\0{_renders[key]}".encode()).hexdigest()[:12]


def html_text(text: str) -> str:
    """``text`` escaped for HTML, line breaks kept."""
    return html.escape(text).replace("\n", "<br>")


def show_html(markup: str, text: str) -> None:
    """Display ``markup`` in a notebook, with ``text`` as the plain-text form of the same output."""
    from IPython.display import display

    display({"text/html": markup, "text/plain": text}, raw=True)
