"""Build the course website into build/site/ from the committed, executed lessons (``make site``).

The sources are assembled in build/site-src/ with the repository's layout (so that each page's
Binder and Colab buttons open the same file in the repository): the lessons from notebooks/, the
guides from docs/, and a home page whose course map is read from README.md. Exercise solutions are
folded (click to reveal). Sphinx then renders it with warnings as errors, so a broken internal link
fails the build. Usage: ``python website/build.py [--out build/site]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "website"
GUIDES = ["INSTRUCTORS.md", "COVERAGE.md", "ASSESSMENT.md", "ACCESSIBILITY.md", "SCALING.md", "benchmarks.md", "benchmarks_cache.md",
          "benchmarks_peft.md"]
SOLUTION = "### BEGIN SOLUTION"


def lesson_title(path: Path) -> str:
    """The lesson's title: its opening heading without the '#'."""
    first = nbformat.read(path, as_version=4).cells[0].source
    return first.splitlines()[0].lstrip("#").strip()


def course_map(readme: str, lessons: list[Path]) -> str:
    """README's course-map table, each `NN_name.ipynb` turned into a link to its page."""
    block = readme.split("## Course map", 1)[1].split("\n## ", 1)[0]
    table = [line for line in block.splitlines() if line.startswith("|")]
    names = {p.name for p in lessons}
    missing = names - {m for line in table for m in re.findall(r"`(\d\d_\w+\.ipynb)`", line)}
    if missing:
        raise SystemExit(f"README.md's course map lacks {sorted(missing)}: add a row for each lesson")
    return "\n".join(re.sub(r"`(\d\d_\w+\.ipynb)`", lambda m: f"[{m.group(1)[:-6]}](notebooks/{m.group(1)})", line)
                     for line in table)


def fold_solutions(nb) -> int:
    """Tag every cell that holds an exercise solution so that the page folds it; return how many."""
    folded = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and SOLUTION in cell.source:
            tags = cell.metadata.setdefault("tags", [])
            if "hide-cell" not in tags:
                tags.append("hide-cell")
            cell.metadata.setdefault("mystnb", {}).update(code_prompt_show="Show the solution", code_prompt_hide="Hide the solution")
            folded += 1
    return folded


def described_figures(nb) -> int:
    """How many figures carry a text alternative: xl.show_figure saves each as ``<img alt>`` HTML,
    which the website shows as it is."""
    return sum(len(re.findall(r'<img [^>]*alt="[^"]+', "".join(o.get("data", {}).get("text/html", ""))))
               for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))


def assemble(src: Path) -> dict:
    """Write the website's sources into ``src`` (emptied first); return what went in."""
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    folded = described = 0
    for path in lessons:
        nb = nbformat.read(path, as_version=4)
        folded += fold_solutions(nb)
        described += described_figures(nb)
        nbformat.write(nb, src / "notebooks" / path.name)
    (src / "docs").mkdir()
    for name in GUIDES + [p.name for p in (ROOT / "docs").glob("*.png")]:
        shutil.copy2(ROOT / "docs" / name, src / "docs" / name)
    home = (HERE / "index.md").read_text(encoding="utf-8")
    home = home.replace("{{ course_map }}", course_map((ROOT / "README.md").read_text(encoding="utf-8"), lessons))
    home = home.replace("{{ lessons }}", "\n".join(f"notebooks/{p.stem}" for p in lessons))
    home = home.replace("{{ guides }}", "\n".join(f"docs/{Path(n).stem}" for n in GUIDES))
    (src / "index.md").write_text(home, encoding="utf-8")
    return {"lessons": len(lessons), "solutions folded": folded, "figures described": described, "guides": len(GUIDES)}


def build(out: Path, src: Path | None = None, quiet: bool = True) -> dict:
    """Assemble the sources and run Sphinx (warnings are errors); return counts, seconds and MiB."""
    from xferlib.costs import folder_bytes

    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"the website needs the kit's dev extra ({err.name} is missing): pip install -e '.[dev]'") from None
    src = src or out.parent / "site-src"
    start = time.perf_counter()
    facts = assemble(src)
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-c", str(HERE),
               str(src), str(out), "-d", str(out.parent / "site-doctrees")] + (["-q"] if quiet else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the website did not build (sphinx exit {done.returncode}):\n{done.stderr[-4000:]}")
    facts.update({"seconds": round(time.perf_counter() - start, 1), "MiB": round(folder_bytes(out) / 2**20, 1),
                  "pages": len(list(out.rglob("*.html")))})
    return facts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the website goes")
    args = parser.parse_args(argv)
    facts = build(args.out.resolve(), quiet=False)
    print(f"website: {args.out}/index.html ({', '.join(f'{k} {v}' for k, v in facts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
