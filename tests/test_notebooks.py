"""Every notebook follows the course conventions and runs end to end in smoke mode.

(The committed outputs are checked separately by nbval: ``pytest --nbval-lax notebooks``.)
"""

import html
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def cells(path):
    return nbformat.read(path, as_version=4).cells


def source(cell):
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_follows_the_conventions(path):
    nb = cells(path)
    intro = source(nb[0])
    assert nb[0].cell_type == "markdown" and intro.startswith("# "), "opens with a title"
    for heading in ("Learning objectives", "Prerequisites", "Estimated time"):
        assert heading in intro, f"the opening cell lacks '{heading}'"
    params = [c for c in nb if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert re.search(r"^SMOKE\s*=\s*False\b", source(params[0]), re.M)
    code = [c for c in nb if c.cell_type == "code" and source(c).strip()]
    assert any("import xferlib as xl" in source(c) for c in code)
    assert all(c.get("execution_count") for c in code), "committed executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == [], "no cell shows an error"
    assert any("# NBVAL_CHECK_OUTPUT" in source(c) for c in code), "key outputs are marked for nbval"
    text = "\n".join(source(c) for c in nb if c.cell_type == "markdown")
    for section in ("Summary", "Exercises", "Further reading"):
        assert re.search(rf"^#+ .*{section}", text, re.M), f"no '{section}' section"
    quiz_cells = [c for c in code if f'xl.quiz("{path.stem}")' in source(c)]
    assert quiz_cells, "ends with its quiz"
    shown = [o.get("data", {}).get("text/html", "") for o in quiz_cells[0].get("outputs", [])]
    assert any('class="xferlib-quiz"' in "".join(h) for h in shown), "the quiz is saved as HTML that works without a kernel"
    assert (REPO / "quizzes" / f"{path.stem}.yml").exists()
    meta = nbformat.read(path, as_version=4).metadata
    assert "widgets" not in meta, "no stored widget state (it bloats the file)"
    assert path.stat().st_size < 1_000_000, f"{path.stat().st_size / 1e6:.1f} MB: keep lessons readable on GitHub (JPEG for photos)"
    for c in code:
        for data in (o.get("data", {}) for o in c.get("outputs", [])):
            assert not any(k.startswith("image/") for k in data), \
                f"a bare image output has no text alternative in JupyterLab: show it with xl.show_figure: {source(c)[:60]!r}"
            for img in re.findall(r"<img [^>]*>", "".join(data.get("text/html", ""))):
                alt = html.unescape((re.search(r'alt="([^"]*)"', img) or [None, ""])[1])
                assert len(alt.split()) >= 12 and not re.match(r"(figure|image|plot)\s*\d*\W*$", alt, re.I), \
                    f"a figure needs a text alternative saying what it shows: {alt!r} in {source(c)[:60]!r}"
    solutions = sum(source(c).count("### BEGIN SOLUTION") for c in code)
    assert solutions == sum(source(c).count("### END SOLUTION") for c in code) and solutions >= 2


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    import papermill as pm

    pm.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters={"SMOKE": True},
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
    )


@pytest.mark.notebook
@pytest.mark.parametrize("name", ["02_feature_extraction", "03_fine_tuning", "04_layer_freezing"])
def test_dataset_switch_runs_the_same_lesson_on_an_online_set(name, tmp_path):
    """DATASET="hymenoptera" runs the lesson's code unchanged, on a fake copy of the set laid out
    where the loader looks (the cache folder), so nothing is downloaded."""
    import os

    import papermill as pm
    from test_downloads import _hymenoptera_layout

    _hymenoptera_layout(Path(os.environ["XFERLIB_CACHE"]) / "data")
    path = REPO / "notebooks" / f"{name}.ipynb"
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters={"SMOKE": True, "DATASET": "hymenoptera"},
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    text = "\n".join(o.get("text", "") for c in cells(out) if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Target('hymenoptera'" in text, "the lesson printed which target it ran on"
    assert "ants" in text and "bees" in text


def _setup_cell(path) -> str:
    code = [c for c in cells(path) if c.cell_type == "code"]
    return source(code[0])


def test_every_lesson_opens_with_the_same_colab_and_kaggle_setup_cell():
    first = {_setup_cell(p) for p in NOTEBOOKS}
    assert len(first) == 1, "one set-up cell, the same in every lesson"
    assert "google.colab" in first.pop()


@pytest.mark.parametrize("where", ["laptop", "colab", "kaggle", "colab, run again"])
def test_the_setup_cell_installs_the_kit_on_colab_and_kaggle_only(where, tmp_path, monkeypatch):
    """The cell runs as IPython would run it (its ``!`` line becomes a shell call), with the shell
    replaced by a recorder that makes the folders a clone would make."""
    import os
    import sys
    import types

    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(_setup_cell(NOTEBOOKS[0]))
    calls = []

    def system(command):
        calls.append(command)
        (tmp_path / "xfer-course" / "notebooks").mkdir(parents=True)
        (tmp_path / "xfer-course" / "xferlib").mkdir()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if "colab" in where:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    if where == "kaggle":
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    shell = types.SimpleNamespace(system=system)
    run = lambda: exec(code, {"get_ipython": lambda: shell})  # noqa: E731
    run()
    if where == "laptop":
        assert calls == [] and Path.cwd() == tmp_path, "nothing happens outside Colab and Kaggle"
        return
    assert len(calls) == 1 and "git clone" in calls[0] and "github.com/xfer-course/xfer-course" in calls[0]
    assert "pip install -q -e ./xfer-course" in calls[0]
    assert Path.cwd() == tmp_path / "xfer-course" / "notebooks", "the lesson runs beside the others, as in the repository"
    assert sys.path[0] == str(tmp_path / "xfer-course"), "xferlib imports without a restart"
    if where == "colab, run again":
        run()
        assert len(calls) == 1 and Path.cwd() == tmp_path / "xfer-course" / "notebooks", "a second run does nothing"
    os.chdir(tmp_path)
