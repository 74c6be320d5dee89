"""Sphinx settings for the course website: the committed, executed lessons rendered as they are
(nothing re-runs), with Binder and Colab launch buttons on every lesson (each lesson's first cell
installs the kit on Colab). ``make site`` builds it (website/build.py)."""

project = "xfer-course"
author = "the xfer-course authors"
copyright = "xfer-course authors, MIT licence"
html_title = "xfer-course: transfer learning, hands on"

REPOSITORY = "https://github.com/xfer-course/xfer-course"  # also in website/build.py

extensions = ["myst_nb"]
nb_execution_mode = "off"  # the lessons are committed executed: render their outputs, never re-run
nb_output_stderr = "remove"  # progress bars and warnings are noise on a page
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]  # widget views: their state is not stored

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
    "home_page_in_toc": True,
    "show_toc_level": 2,
}
html_last_updated_fmt = None
