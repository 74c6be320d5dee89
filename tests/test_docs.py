"""The instructors' guide stays true to the repository it describes."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDE = (REPO / "docs" / "INSTRUCTORS.md").read_text()
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))


def test_every_lesson_has_a_timing_a_learning_outcome_and_an_agenda_slot():
    timings = GUIDE.split("## How long things take")[1].split("\n## ")[0]
    outcomes = GUIDE.split("## Learning outcomes")[1].split("\n## ")[0]
    full_day = GUIDE.split("### Full day")[1].split("\n## ")[0]
    for stem in NOTEBOOKS:
        row = next((line for line in timings.splitlines() if line.startswith(f"| `{stem}`")), None)
        assert row, f"{stem} has no row in the timings table"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+", c) for c in cells[1:4]), f"{stem}: measured seconds and MiB expected, got {cells}"
        assert int(cells[3]) < 1536, f"{stem}: peak {cells[3]} MiB is over the 1.5 GiB budget"
        assert f"| `{stem}` |" in outcomes, f"{stem} has no learning outcomes"
        assert stem in full_day, f"{stem} is not on the full-day agenda"
    assert "estimate" in timings.lower(), "GPU times must be marked as estimates"


def test_the_guide_names_only_files_and_make_targets_that_exist():
    makefile = (REPO / "Makefile").read_text()
    for target in set(re.findall(r"`make (\w+)", GUIDE)):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is not a Makefile target"
    for path in set(re.findall(r"(?:binder|docs|bench)/[\w./-]+\.(?:py|txt|md)", GUIDE)):
        assert (REPO / path).exists(), f"{path} does not exist"
    stamp = re.search(r"^STAMP\s*:=\s*\$\(VENV\)/(\S+)", makefile, re.M).group(1)
    assert f".venv/{stamp}" in GUIDE, "the offline install must touch the Makefile's set-up stamp"


def test_the_wheelhouse_installs_what_the_kit_needs():
    download = GUIDE.split("pip download")[1].split("```")[0]
    assert "-r binder/requirements.txt" in download and "download.pytorch.org/whl/cpu" in download
    for tool in ("pytest", "nbval", "papermill", "setuptools"):
        assert tool in download, f"the wheelhouse lacks {tool}"
    assert GUIDE.count("--no-index --find-links wheelhouse") >= 3


def test_every_section_the_coverage_map_cites_exists():
    import nbformat

    coverage = (REPO / "docs" / "COVERAGE.md").read_text()
    headings = {}
    for stem in NOTEBOOKS:
        cells = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4).cells
        headings[stem[:2]] = [line for c in cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("## ")]
    refs = re.findall(r"`(\d\d)` (§|Q)(\d+)", coverage)
    assert len(refs) > 30
    for lesson, kind, number in refs:
        assert lesson in headings, f"no notebook {lesson}"
        pattern = rf"## {number}( ·|\.)" if kind == "§" else rf"## Q{number}\."
        assert any(re.match(pattern, h) for h in headings[lesson]), f"`{lesson}` {kind}{number} is not a section"
    for stem in NOTEBOOKS:
        assert f"`{stem[:2]}`" in coverage, f"{stem} is not in the coverage map"
