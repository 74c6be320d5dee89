"""Student and instructor editions of the course notebooks.

The committed notebooks are the instructor editions: exercise solutions sit between lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``. The student edition replaces each such block
with a stub that raises ``NotImplementedError`` (with the block's ``# hint:`` line, if it has
one) and clears the outputs of those cells; everything else is left as it is.

    python -m xferlib.editions student notebooks build/student
    python -m xferlib.editions instructor notebooks build/instructor
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_HINT = re.compile(r"^\s*#\s*hint:\s*(.+)$", re.I)


def strip_solutions(source: str, where: str = "cell") -> str:
    """The source with every solution block replaced by a stub that raises."""
    out, inside, indent, hint = [], False, "", None
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN} inside another solution block")
            inside, indent, hint = True, line[: len(line) - len(line.lstrip())], None
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without {BEGIN}")
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
        raise ValueError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


def has_solution(cell) -> bool:
    return cell.cell_type == "code" and BEGIN in cell.source


def student_notebook(nb):
    """A copy of ``nb`` with solutions stubbed out and the exercise cells' outputs cleared."""
    nb = nbformat.from_dict(nb)
    for i, cell in enumerate(nb.cells):
        if has_solution(cell):
            cell.source = strip_solutions(cell.source, where=f"cell {i}")
            cell.outputs = []
            cell.execution_count = None
            tags = cell.metadata.setdefault("tags", [])
            if "exercise" not in tags:
                tags.append("exercise")
    return nb


def make_editions(kind: str, src: Path, dst: Path) -> list[Path]:
    """Write the ``student`` or ``instructor`` edition of every notebook in ``src`` to ``dst``."""
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    notebooks = sorted(Path(src).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"No notebooks in {src}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = dst / path.name
        if kind == "instructor":
            shutil.copyfile(path, target)
        else:
            nb = student_notebook(nbformat.read(path, as_version=4))
            nbformat.validate(nb)
            tmp = target.with_suffix(".ipynb.tmp")
            nbformat.write(nb, tmp)
            tmp.replace(target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferlib.editions", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["student", "instructor"])
    parser.add_argument("src", type=Path, help="folder of the committed notebooks")
    parser.add_argument("dst", type=Path, help="folder to write the edition to")
    args = parser.parse_args(argv)
    try:
        written = make_editions(args.kind, args.src, args.dst)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} {args.kind} notebook(s) in {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
