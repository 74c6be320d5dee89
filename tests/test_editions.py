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
