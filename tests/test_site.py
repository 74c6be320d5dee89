"""The course website (``make site``): every lesson and guide becomes a page with its outputs,
launch buttons open the same file on Binder and Colab, solutions are folded, internal links
resolve and the search index knows the course's words. The browser half is in test_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPOSITORY = "github.com/xfer-course/xfer-course"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            (self.images if tag == "img" else self.links).append(attrs["src"] if tag == "script" else attrs)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_every_lesson_and_guide_is_a_page_with_its_outputs(website):
    _, site, facts = website
    assert facts["lessons"] == len(LESSONS) and facts["guides"] >= 5
    for path in LESSONS:
        page = (site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        title = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
        assert title.split(":")[0] in page, f"{path.stem}: its title"
        assert 'class="xferlib-quiz"' in page and "<script>" in page, f"{path.stem}: the quiz, interactive without a kernel"
    for guide in ("INSTRUCTORS", "COVERAGE", "benchmarks", "SCALING", "ASSESSMENT"):
        assert (site / "docs" / f"{guide}.html").exists()
    home = (site / "index.html").read_text(encoding="utf-8")
    for path in LESSONS:
        assert f'href="notebooks/{path.stem}.html"' in home, f"the home page's course map links {path.stem}"


def test_each_lesson_page_launches_the_same_notebook_on_binder_and_colab(website):
    _, site, _ = website
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in LESSONS:
        links = _parse(site / "notebooks" / f"{path.stem}.html").links
        colab = f"https://colab.research.google.com/github/xfer-course/xfer-course/blob/main/notebooks/{path.name}"
        assert f"https://mybinder.org/v2/gh/xfer-course/xfer-course/main?urlpath=lab/tree/notebooks/{path.name}" in links
        assert colab in links and colab in readme, f"{path.stem}: Colab from the website and from the README"


def test_solutions_are_folded_and_nothing_else(website):
    build, site, facts = website
    expected = sum(c.source.count("### BEGIN SOLUTION") > 0 for p in LESSONS
                   for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
    assert facts["solutions folded"] == expected >= 2 * len(LESSONS)
    page = (site / "notebooks" / "03_fine_tuning.html").read_text(encoding="utf-8")
    folded = re.findall(r'<details class="[^"]*hide[^"]*"[^>]*>\s*<summary[^>]*>.*?Show the solution', page, re.S)
    assert folded and page.count("Show the solution") == sum(
        "### BEGIN SOLUTION" in c.source for c in nbformat.read(REPO / "notebooks" / "03_fine_tuning.ipynb", as_version=4).cells)


def test_every_internal_link_and_image_resolves(website):
    _, site, _ = website
    checked = 0
    for page in site.rglob("*.html"):
        if page.parent.name == "_static":
            continue  # the theme's template fragments
        parsed = _parse(page)
        targets = parsed.links + [img["src"] for img in parsed.images]
        for target in targets:
            url = urlparse(target)
            if url.scheme or url.netloc or not url.path or target.startswith(("mailto:", "javascript:")):
                continue
            assert (page.parent / unquote(url.path)).resolve().exists(), f"{page.relative_to(site)} links to a missing {target}"
            checked += 1
    assert checked > 500


def test_figures_have_a_text_alternative_other_than_a_file_name(website):
    _, site, facts = website
    figures = 0
    for page in (site / "notebooks").glob("*.html"):
        for img in _parse(page).images:
            if "_images/" in img["src"] or img["src"].startswith("data:image/"):
                alt = img.get("alt", "")
                assert len(alt.split()) >= 12 and "_images" not in alt, f"{page.name}: {img['src'][:40]} has alt {alt!r}"
                figures += 1
    assert figures == facts["figures described"] > 50, (figures, facts)


def test_search_knows_the_course_words(website):
    _, site, _ = website
    index = (site / "searchindex.js").read_text(encoding="utf-8").lower()
    for word in ("lora", "batchnorm", "peft", "fine", "torchrun"):
        assert f'"{word}"' in index, word
    assert (site / "search.html").exists()


def test_the_site_names_no_machine_path(website):
    _, site, _ = website
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "/work/" not in text and "/tmp/" not in text and "/root/" not in text, page.relative_to(site)


def test_a_lesson_missing_from_the_course_map_is_named(website, tmp_path):
    build, _, _ = website
    readme = "# x\n\n## Course map\n\n| notebook | what |\n| --- | --- |\n| `00_setup.ipynb` | set up |\n\n## Next\n"
    assert "[00_setup](notebooks/00_setup.ipynb)" in build.course_map(readme, [Path("00_setup.ipynb")])
    with pytest.raises(SystemExit, match="01_key_concepts.ipynb"):
        build.course_map(readme, [Path("00_setup.ipynb"), Path("01_key_concepts.ipynb")])


def test_folding_tags_solution_cells_only(website):
    build, _, _ = website
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("### BEGIN SOLUTION\ny = 2\n### END SOLUTION")])
    assert build.fold_solutions(nb) == 1
    assert "hide-cell" in nb.cells[1].metadata["tags"] and "tags" not in nb.cells[0].metadata
    assert nb.cells[1].metadata["mystnb"]["code_prompt_show"] == "Show the solution", "folding kept"
