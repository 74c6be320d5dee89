import nbformat
import pytest
from pathlib import Path

from xferlib import editions as E

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

EXERCISE = """x = 1
### BEGIN SOLUTION
# hint: square it
y = x ** 2
### END SOLUTION
print(y)"""


def test_solution_block_becomes_a_stub_with_the_hint():
    out = E.strip_solutions(EXERCISE)
    assert "x ** 2" not in out and "BEGIN SOLUTION" not in out
    assert out.splitlines()[0] == "x = 1" and out.splitlines()[-1] == "print(y)"
    assert "raise NotImplementedError('Exercise: your code here. Hint: square it')" in out
    with pytest.raises(NotImplementedError, match="square it"):
        exec(out, {})


def test_indented_blocks_keep_their_indentation():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    out = E.strip_solutions(src)
    assert "    raise NotImplementedError(" in out
    ns = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)


@pytest.mark.parametrize("src, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "without ### END"),
    ("x = 1\n### END SOLUTION\n", "without ### BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_markers_are_named(src, message):
    with pytest.raises(ValueError, match=message):
        E.strip_solutions(src, where="cell 7")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_is_valid_and_has_no_solution_left(path, tmp_path):
    original = nbformat.read(path, as_version=4)
    E.make_editions("student", path.parent, tmp_path)
    student = nbformat.read(tmp_path / path.name, as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(original.cells)
    for before, after in zip(original.cells, student.cells):
        if E.has_solution(before):
            body = before.source.split(E.BEGIN, 1)[1].split(E.END, 1)[0]
            solution_lines = [l.strip() for l in body.splitlines() if l.strip() and not l.strip().startswith("#")]
            assert not any(l in after.source.splitlines() for l in solution_lines if len(l) > 12)
            assert "NotImplementedError" in after.source and after.outputs == []
        else:
            assert after.source == before.source and after.get("outputs") == before.get("outputs")


def test_instructor_edition_is_a_copy(tmp_path):
    written = E.make_editions("instructor", REPO / "notebooks", tmp_path)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in NOTEBOOKS]


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_edition_fails_only_at_the_exercises(path, tmp_path):
    """Run each lesson's student edition in smoke mode, going on past errors as a learner
    would: the cells that fail are exactly the exercise stubs."""
    from nbclient import NotebookClient

    E.make_editions("student", path.parent, tmp_path)
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell("SMOKE = True"))
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    failed = [c for c in nb.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)]
    exercises = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert exercises and all(any(c is e for e in exercises) for c in failed), "a cell outside the exercises failed"
    assert all(o["ename"] == "NotImplementedError" for c in failed for o in c.outputs if o.get("output_type") == "error")
    # an exercise that did not raise hands its stub to a code challenge's check(), which says so
    for cell in exercises:
        if not any(c is cell for c in failed):
            printed = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            assert ".check(" in cell.source and "not written yet" in printed, cell.source[:200]


# --- regression tests: refusing instead of leaking solutions or overwriting notebooks ---

def _notebook(*sources, markdown=()):
    """A small valid notebook: code cells with the given sources, then markdown cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources] + [nbformat.v4.new_markdown_cell(m) for m in markdown]
    return nb


def _course(folder, **notebooks):
    """Write ``name=notebook`` pairs as ``folder/name.ipynb``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        if isinstance(nb, str):
            (folder / f"{name}.ipynb").write_text(nb)
        else:
            nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same_folder_spellings(tmp_path):
    src = tmp_path / "nb"
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    return {
        "same": str(src),
        "dotdot": str(src / ".." / "nb"),
        "trailing-slash": str(src) + "/",
        "symlink": str(tmp_path / "link"),
        "inside": str(src / "build"),
        "inside-via-symlink": str(tmp_path / "link" / "student"),
    }


@pytest.mark.parametrize("kind", ["student", "instructor"])
@pytest.mark.parametrize("spelling", ["same", "dotdot", "trailing-slash", "symlink", "inside", "inside-via-symlink"])
def test_output_folder_in_the_input_folder_is_refused(kind, spelling, tmp_path, capsys):
    src = _course(tmp_path / "nb", a=_notebook(EXERCISE))
    before = _snapshot(src)
    dst = _same_folder_spellings(tmp_path)[spelling]
    assert E.main([kind, str(src), dst]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(src) in err and str(Path(dst)) in err  # both folders named (Path drops a trailing slash)
    assert _snapshot(src) == before  # nothing overwritten, no build folder created inside
    with pytest.raises(ValueError, match="input folder"):
        E.make_editions(kind, src, Path(dst))


def test_output_folder_next_to_the_input_folder_is_fine(tmp_path):
    src = _course(tmp_path / "nb", a=_notebook(EXERCISE))
    assert E.main(["student", str(src), str(tmp_path / "nb-student")]) == 0
    assert "NotImplementedError" in (tmp_path / "nb-student" / "a.ipynb").read_text()


def test_end_marker_without_begin_is_refused_not_copied(tmp_path, capsys):
    src = _course(tmp_path / "nb", lesson=_notebook("x = 1", "y = 42\n### END SOLUTION\nprint(y)"))
    dst = tmp_path / "out"
    assert E.main(["student", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "lesson.ipynb" in err and "cell 2" in err and "line 2" in err and "without ### BEGIN" in err
    assert not dst.exists()


@pytest.mark.parametrize("line", [
    "###BEGIN SOLUTION",
    "### begin solution",
    "## BEGIN SOLUTION",
    "#### END SOLUTION",
    "### END SOLUTION here",
    "### BEGIN SOLUTION (part 1)",
    "### END SOLUTIONS",
    "y = 1  ### END SOLUTION",
])
def test_misspelled_markers_are_refused(line, tmp_path, capsys):
    cell = f"x = 1\nsecret = 42\n{line}\nprint(x)"
    src = _course(tmp_path / "nb", ok=_notebook(EXERCISE), lesson=_notebook("import os", cell))
    dst = tmp_path / "out"
    assert E.main(["student", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert "lesson.ipynb" in err and "cell 2" in err and "line 3" in err and "misspelled" in err
    assert not dst.exists()


def test_misspelled_marker_next_to_a_good_block_is_refused(tmp_path):
    nb = _notebook("### BEGIN SOLUTION\nsecret = 42\n### END SOLUTION\n### begin solution\nmore = 43\n### END SOLUTION")
    with pytest.raises(ValueError, match=r"lesson\.ipynb, cell 1, line 4: misspelled"):
        E.student_notebook(nb, name="lesson.ipynb")


@pytest.mark.parametrize("text", ["### BEGIN SOLUTION\nThe answer is 42.\n### END SOLUTION", "## end solution"])
def test_marker_in_a_markdown_cell_is_refused(text, tmp_path, capsys):
    src = _course(tmp_path / "nb", lesson=_notebook("x = 1", markdown=["# Intro", text]))
    assert E.main(["student", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "lesson.ipynb, cell 3, line 1" in err and "markdown" in err
    assert not (tmp_path / "out").exists()


def test_ordinary_comments_and_text_are_not_markers():
    nb = _notebook("# the solution begins below\nresolution = 224  # end, solution\n", markdown=["Begin the solution here."])
    assert E.student_notebook(nb).cells[0].source == nb.cells[0].source


@pytest.mark.parametrize("kind", ["student", "instructor"])
@pytest.mark.parametrize("broken, message", [
    ('{"cells": [', "not a valid notebook"),  # not JSON
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}', "not a valid notebook"),
])
def test_a_broken_notebook_stops_everything_before_writing(kind, broken, message, tmp_path, capsys):
    # "a" and "b" sort before the broken "c": they must not be written either
    src = _course(tmp_path / "nb", a=_notebook(EXERCISE), b=_notebook("x = 1"), c=broken)
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "a.ipynb").write_text("previous build")
    assert E.main([kind, str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "c.ipynb" in err and message in err and "Traceback" not in err
    assert _snapshot(dst) == {Path("a.ipynb"): b"previous build"}


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    src = _course(tmp_path / "nb", a=_notebook(EXERCISE))
    dst = tmp_path / "out"

    def failing_replace(a, b):
        raise OSError("disk full")

    monkeypatch.setattr("xferlib.storage.os.replace", failing_replace)  # the one atomic writer
    assert E.main(["student", str(src), str(dst)]) == 2
    assert list(dst.iterdir()) == []


@pytest.mark.parametrize("kind", ["student", "instructor"])
def test_other_files_in_the_output_folder_are_left_alone(kind, tmp_path):
    src = _course(tmp_path / "nb", a=_notebook(EXERCISE))
    dst = tmp_path / "out"
    dst.mkdir()
    keep = {"notes.txt": b"mine", "a.ipynb.tmp": b"also mine", "z.ipynb": b"not from src"}
    for name, data in keep.items():
        (dst / name).write_bytes(data)
    written = E.make_editions(kind, src, dst)
    assert written == [dst / "a.ipynb"]
    assert {name: (dst / name).read_bytes() for name in keep} == keep
    assert sorted(p.name for p in dst.iterdir()) == sorted([*keep, "a.ipynb"])
