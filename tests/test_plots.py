import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

import xferlib as xl


def labelled(fig):
    return [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes]


def test_history_plot_has_labelled_loss_and_accuracy():
    data = torch.utils.data.TensorDataset(torch.randn(20, 2), torch.arange(20) % 2)
    history = xl.fit(nn.Linear(2, 2), data, data, epochs=3, progress=False)
    fig = history.plot(title="demo")
    (loss, acc) = fig.axes[:2]
    assert loss.get_ylabel() == "cross-entropy loss" and acc.get_ylabel() == "accuracy"
    assert len(loss.lines) == 2 and len(loss.lines[0].get_xdata()) == 3


def test_confusion_matrix_counts():
    fig = xl.plot_confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"], normalize=False)
    ax = fig.axes[0]
    cells = np.asarray(ax.images[0].get_array())
    assert cells.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_show_images_marks_right_and_wrong(tiny_images):
    preds = tiny_images.labels.copy()
    preds[1] = (preds[1] + 1) % 3
    fig = xl.show_images(tiny_images, n=4, predictions=preds, cols=4)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    colours = [ax.title.get_color() for ax in fig.axes[:4]]
    assert titles[0] == "red\n→ red" and colours[0] == "green" and colours[1] == "red"


def test_embedding_plot_separates_classes():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 0.1, (20, 8)), rng.normal(5, 0.1, (20, 8))])
    labels = np.repeat([0, 1], 20)
    points = xl.plots.pca_2d(feats)
    assert abs(points[:20, 0].mean() - points[20:, 0].mean()) > 10
    fig = xl.plot_embedding(feats, labels, ["near", "far"])
    assert fig.axes[0].get_xlabel() == "principal component 1"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["near", "far"]
    marks = [c.get_paths()[0].vertices.round(3).tolist() for c in fig.axes[0].collections]
    assert marks[0] != marks[1], "classes differ by marker, not by colour alone"


def test_pca_signs_do_not_depend_on_the_machine():
    """Mirroring the data's features must not mirror the plot: each component is turned so
    that its largest loading is positive, whatever sign the SVD returned."""
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(50, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    points = xl.plots.pca_2d(feats)
    # The first component follows feature 0 (the widest), with a positive loading.
    assert np.corrcoef(points[:, 0], feats[:, 0])[0, 1] > 0.9
    assert np.corrcoef(points[:, 1], feats[:, 1])[0, 1] > 0.9
    flipped = feats * np.array([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    mirrored = xl.plots.pca_2d(flipped)
    assert np.corrcoef(mirrored[:, 0], flipped[:, 0])[0, 1] > 0.9
    # Same variance explained, and wide inputs (F >> N, as with TF-IDF) work too.
    assert np.allclose(np.abs(points), np.abs(mirrored))
    wide = xl.plots.pca_2d(rng.normal(size=(10, 3000)))
    assert wide.shape == (10, 2) and np.isfinite(wide).all()
    assert xl.plots.pca_2d(np.arange(5.0)[:, None]).shape == (5, 2)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((1, 4)), np.zeros((3, 0))])
def test_pca_names_a_bad_shape(bad):
    with pytest.raises(ValueError, match=r"shape \("):
        xl.plots.pca_2d(bad)


def test_filters_and_feature_maps(lite0):
    fig = xl.plot_filters(lite0, n=16)
    assert sum(bool(ax.images) for ax in fig.axes) == 16
    maps = lite0.feature_maps(torch.zeros(1, 3, 64, 64), upto=1)[0]
    fig = xl.plot_feature_maps(maps, n=8)
    assert sum(bool(ax.images) for ax in fig.axes) == 8


def _notebook_shell(monkeypatch, fmt):
    """A stand-in for the kernel's shell: IPython's own display formatter, set to ``fmt`` as
    ``set_matplotlib_formats`` sets it; returns the list that collects what is displayed."""
    from types import SimpleNamespace

    import IPython.display
    from IPython.core.formatters import DisplayFormatter
    from IPython.core.pylabtools import select_figure_formats

    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    select_figure_formats(shell, {fmt})
    shown = []
    monkeypatch.setattr(xl.display, "ipython_shell", lambda: shell)
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    return shown


@pytest.mark.parametrize("fmt, mime, magic", [("png", "image/png", "iVBORw0KGgo"), ("jpeg", "image/jpeg", "/9j/")])
def test_show_figure_sends_an_image_with_its_text_alternative(monkeypatch, fmt, mime, magic):
    import matplotlib.pyplot as plt

    shown = _notebook_shell(monkeypatch, fmt)
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 4], "o-")
    xl.show_figure('A line of circles rising   steeply, "quadratic" <growth> from 0 to 4.')
    (bundle,) = shown
    assert set(bundle) == {"text/html", "text/plain"}, "no bare image: JupyterLab would show it with no alt"
    assert bundle["text/html"].startswith(f'<img src="data:{mime};base64,{magic}')
    assert bundle["text/html"].endswith('alt="A line of circles rising steeply, &quot;quadratic&quot; &lt;growth&gt; from 0 to 4.">')
    assert bundle["text/plain"].startswith("[figure] A line of circles")
    assert not plt.fignum_exists(fig.number), "closed: the inline backend must not show it a second time"


def test_show_figure_asks_for_a_real_description(monkeypatch):
    import matplotlib.pyplot as plt

    shown = _notebook_shell(monkeypatch, "png")
    plt.subplots()
    with pytest.raises(ValueError, match="'Figure 3'"):
        xl.show_figure("Figure 3")
    assert shown == []
    plt.close("all")


def test_show_figure_outside_a_notebook_leaves_it_to_matplotlib(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(xl.display, "ipython_shell", lambda: None)
    called = []
    monkeypatch.setattr(plt, "show", lambda: called.append(True))
    plt.subplots()
    xl.show_figure("A blank set of axes with no data drawn on them at all.")
    assert called == [True]
    plt.close("all")
