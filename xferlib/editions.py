"""Student and instructor editions of the course notebooks.

The committed notebooks are the instructor editions: exercise solutions sit between lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``. The student edition replaces each such block
with a stub that raises ``NotImplementedError`` (with the block's ``# hint:`` line, if it has
one) and clears the outputs of those cells; everything else is left as it is.

    python -m xferlib.editions student notebooks build/student
    python -m xferlib.editions instructor notebooks build/instructor

A mistake here hands solutions to students or destroys the instructor notebooks, so the
tool refuses rather than guesses: misspelled or unbalanced markers, an unreadable notebook,
or an output folder that is (or lies inside) the input folder stop it before anything is
written. Cells and lines in error messages are counted from 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbformat.reader import reads as _read_any_version

from .storage import write_atomic

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_HINT = re.compile(r"^\s*#\s*hint:\s*(.+)$", re.I)
# Anything that looks like a marker. Only the exact spellings above are acted on; a near miss
# ("###BEGIN SOLUTION", "## end solution", "#### END SOLUTIONS") would otherwise be copied to
# the students as an ordinary comment, with the solution under it.
_MARKER_LIKE = re.compile(r"#+\s*(begin|end)\s*solution", re.I)


class EditionError(ValueError):
    """A notebook or folder the editions refuse to work with; main() reports it without a traceback."""


def strip_solutions(source: str, where: str = "cell") -> str:
    """The source with every solution block replaced by a stub that raises."""
    out, inside, indent, hint, opened = [], False, "", None, 0
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise EditionError(f"{where}, line {number}: {BEGIN} inside another solution block")
            inside, indent, hint, opened = True, line[: len(line) - len(line.lstrip())], None, number
        elif stripped == END:
            if not inside:
                raise EditionError(f"{where}, line {number}: {END} without {BEGIN}")
            message = f"Exercise: your code here. Hint: {hint}" if hint else "Exercise: your code here (see the exercise above)."
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError({message!r})")
            inside = False
        elif inside:
            match = _HINT.match(line)
            if match and hint is None:
                hint = match.group(1).strip()
        else:
            out.append(line)
    if inside:
        raise EditionError(f"{where}, line {opened}: {BEGIN} without {END}")
    return "\n".join(out)


def has_solution(cell) -> bool:
    return cell.cell_type == "code" and BEGIN in cell.source


def _check_markers(cell, where: str) -> bool:
    """Whether the cell has solution markers to strip; raise on any marker that would leak.

    Markers count only in code cells and only spelled exactly, alone on their line. A marker in
    a markdown or raw cell, or a misspelled one anywhere, is refused: it means an author meant
    to hide something the student edition would show.
    """
    found = False
    for number, line in enumerate(cell.source.splitlines(), 1):
        if not _MARKER_LIKE.search(line):
            continue
        if cell.cell_type != "code":
            raise EditionError(f"{where}, line {number}: solution marker in a {cell.cell_type} cell: {line.strip()!r}")
        if line.strip() not in (BEGIN, END):
            raise EditionError(f"{where}, line {number}: misspelled solution marker {line.strip()!r} "
                               f"(write exactly {BEGIN!r} or {END!r} on a line of its own)")
        found = True
    return found


def student_notebook(nb, name: str = "notebook"):
    """A copy of ``nb`` with solutions stubbed out and the exercise cells' outputs cleared.

    ``name`` (the notebook's file name) goes into error messages, so an author knows where to look.
    """
    nb = nbformat.from_dict(nb)
    for i, cell in enumerate(nb.cells, 1):
        where = f"{name}, cell {i}"
        # a cell with only an END marker goes through strip_solutions too, which refuses it
        if _check_markers(cell, where):
            cell.source = strip_solutions(cell.source, where=where)
            cell.outputs = []
            cell.execution_count = None
            tags = cell.metadata.setdefault("tags", [])
            if "exercise" not in tags:
                tags.append("exercise")
    return nb


def _read_notebook(path: Path):
    """The notebook at ``path`` as version 4, validated; an EditionError naming the file if it isn't one.

    nbformat.read only logs validation errors; a malformed notebook must stop the build instead.
    """
    try:
        nb = nbformat.convert(_read_any_version(path.read_text(encoding="utf-8")), 4)
        nbformat.validate(nb)
    except (ValueError, KeyError, TypeError, AttributeError, nbformat.ValidationError) as err:
        raise EditionError(f"{path}: not a valid notebook: {getattr(err, 'message', err)}") from err
    return nb


def _check_folders(src: Path, dst: Path) -> None:
    """Refuse an output folder that is the input folder or lies inside it, however it is spelled.

    Writing there would overwrite the instructor notebooks (the only copy of the solutions) or
    mix editions into the committed folder. Paths are compared resolved, so ``nb/../nb``, a
    trailing slash or a symlink to the folder are caught too.
    """
    source, target = src.resolve(), dst.resolve()
    if target == source or source in target.parents:
        raise EditionError(f"output folder {dst} ({target}) is the input folder {src} ({source}) "
                           "or inside it; choose a folder outside it")


def make_editions(kind: str, src: Path, dst: Path) -> list[Path]:
    """Write the ``student`` or ``instructor`` edition of every notebook in ``src`` to ``dst``.

    Every notebook is read, checked and transformed before the first is written, so an error in
    one leaves ``dst`` as it was rather than half updated. Only ``dst/<name>.ipynb`` for the
    notebooks in ``src`` are written; nothing else in ``dst`` is touched.
    """
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    src, dst = Path(src), Path(dst)
    _check_folders(src, dst)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"No notebooks in {src}")

    outputs = []
    for path in notebooks:
        nb = _read_notebook(path)
        if kind == "instructor":
            data = path.read_bytes()  # validated above, copied byte for byte
        else:
            student = student_notebook(nb, name=path.name)
            try:
                nbformat.validate(student)
            except nbformat.ValidationError as err:
                raise EditionError(f"{path}: student edition is not a valid notebook: {err.message}") from err
            text = nbformat.writes(student)
            data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
        target = dst / path.name
        if target.exists() and not target.is_file():
            raise EditionError(f"{target} exists and is not a file; not replacing it")
        outputs.append((target, data))

    dst.mkdir(parents=True, exist_ok=True)
    for target, data in outputs:
        write_atomic(target, data)
    return [target for target, _ in outputs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferlib.editions", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["student", "instructor"])
    parser.add_argument("src", type=Path, help="folder of the committed notebooks")
    parser.add_argument("dst", type=Path, help="folder to write the edition to (not inside src)")
    args = parser.parse_args(argv)
    try:
        written = make_editions(args.kind, args.src, args.dst)
    except (ValueError, OSError) as err:  # EditionError, no notebooks, unreadable or unwritable files
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} {args.kind} notebook(s) in {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
