"""The pictures a transfer-learning lesson needs, each labelled and returned as a figure."""

from __future__ import annotations

import numpy as np
import torch

from . import display


def _plt():
    import matplotlib.pyplot as plt

    return plt


def show_figure(alt: str, fig=None) -> None:
    """Show ``fig`` (the current figure) with ``alt`` as its text alternative, then close it.

    JupyterLab draws a plain image output with no alt attribute whatever the notebook holds, so a
    screen reader finds nothing there: in a notebook the figure goes out as an HTML ``<img alt>``
    in the image format the inline backend is set to (PNG or JPEG). Used by every lesson's figures.
    """
    plt = _plt()
    alt = " ".join(str(alt).split())
    if len(alt.split()) < 5:
        raise ValueError(f"a figure's text alternative says what the figure shows, in a sentence or more: {alt!r}")
    fig = plt.gcf() if fig is None else fig
    shell = display.ipython_shell()
    bundle, meta = shell.display_formatter.format(fig) if shell is not None else ({}, {})
    mime = next((m for m in ("image/png", "image/jpeg") if m in bundle), None)
    if mime is None:  # a script or a terminal: matplotlib's own way
        plt.show()
        return
    import base64

    data = bundle[mime] if isinstance(bundle[mime], str) else base64.b64encode(bundle[mime]).decode()
    size = "".join(f' {k}="{int(v)}"' for k, v in meta.get(mime, {}).items() if k in ("width", "height"))
    display.show_html(f'<img src="data:{mime};base64,{data}"{size} alt="{display.html_text(alt)}">', f"[figure] {alt}")
    plt.close(fig)


def plot_history(history, title: str | None = None):
    """Loss and accuracy per epoch, training against validation."""
    plt = _plt()
    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
    ax_acc.plot(epochs, history["train_accuracy"], "o-", label="train")
    if any(v is not None for v in history["val_loss"]):
        ax_loss.plot(epochs, history["val_loss"], "s-", label="validation")
        ax_acc.plot(epochs, history["val_accuracy"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true, y_pred, classes, title: str = "confusion matrix", normalize: bool = True):
    """Rows are true classes, columns predictions; cells show counts or row fractions."""
    plt = _plt()
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(classes)
    cm = np.zeros((k, k), dtype=float)
    np.add.at(cm, (y_true, y_pred), 1)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 0.8 + 0.5 * k))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if shown[i, j] > 0.5 * shown.max() else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the row" if normalize else "count")
    fig.tight_layout()
    return fig


def _as_image(x, mean=None, std=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float()
        if mean is not None:
            x = x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        x = x.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.asarray(x)


def show_images(dataset, n: int = 16, predictions=None, classes=None, mean=None, std=None, cols: int = 8, title: str | None = None, indices=None):
    """A grid of images from a dataset, titled with the label (and prediction, green when
    right, red when wrong). Pass the backbone's ``mean``/``std`` to undo normalization."""
    plt = _plt()
    classes = classes if classes is not None else getattr(dataset, "classes", None)
    indices = list(indices) if indices is not None else list(range(min(n, len(dataset))))
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), indices):
        image, label = dataset[i]
        ax.imshow(_as_image(image, mean, std))
        name = classes[label] if classes is not None else str(label)
        if predictions is not None:
            pred = int(predictions[i])
            pname = classes[pred] if classes is not None else str(pred)
            ax.set_title(f"{name}\n→ {pname}", fontsize=7, color="green" if pred == label else "red")
        else:
            ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pca_2d(features) -> np.ndarray:
    """Project feature vectors [N, F] onto their first two principal components.

    The sign of a principal component is arbitrary, and LAPACK builds disagree on it, so the
    same data could come out mirrored on another machine. scikit-learn's ``svd_flip`` turns
    each component so that its largest loading is positive: a plot in a lesson looks the same
    on every learner's machine.
    """
    from sklearn.utils.extmath import svd_flip

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"pca_2d needs a [N, F] array with N >= 2 rows, got shape {x.shape}")
    # The thin SVD costs O(N F min(N, F)): the smaller side sets the price.
    u, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    u, _ = svd_flip(u, vt, u_based_decision=False)
    points = u[:, :2] * s[:2]
    if points.shape[1] < 2:  # one feature: a flat second axis rather than a crash in the plot
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    return points


# Okabe & Ito's colour-blind-safe palette (black last), and markers so that no class is told by colour alone.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def plot_embedding(features, labels, classes=None, title: str = "2-D embedding (PCA)", ax=None):
    """Feature vectors projected to 2-D with PCA, one colour-blind-safe colour and one marker per class (lesson 05)."""
    plt = _plt()
    points = pca_2d(features)
    labels = np.asarray(labels)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
    else:
        fig = ax.figure
    for i, c in enumerate(np.unique(labels)):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=14, alpha=0.75, color=OKABE_ITO[i % len(OKABE_ITO)],
                   marker=MARKERS[i % len(MARKERS)], label=classes[c] if classes is not None else str(c))
    ax.set(xlabel="principal component 1", ylabel="principal component 2", title=title)
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncol=2)
    return fig


def first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3:
            return m
    raise ValueError("No convolution over 3 input channels found")


def plot_filters(module: torch.nn.Module, n: int = 32, cols: int = 8, title: str = "first-layer filters"):
    """The first convolution's filters as small RGB images (each rescaled to [0, 1])."""
    plt = _plt()
    weight = first_conv(module).weight.detach().cpu().float()[:n]
    rows = int(np.ceil(len(weight) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.0 * cols, 1.0 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, w in zip(axes.ravel(), weight):
        w = (w - w.min()) / (w.max() - w.min() + 1e-8)
        ax.imshow(w.permute(1, 2, 0).numpy(), interpolation="nearest")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_feature_maps(maps: torch.Tensor, n: int = 16, cols: int = 8, title: str = "feature maps"):
    """The first ``n`` channels of one activation map ``[C, H, W]`` (or ``[1, C, H, W]``)."""
    plt = _plt()
    maps = maps.detach().cpu().float()
    if maps.dim() == 4:
        maps = maps[0]
    maps = maps[:n]
    rows = int(np.ceil(len(maps) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), maps):
        ax.imshow(m.numpy(), cmap="viridis")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
