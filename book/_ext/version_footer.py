"""Sphinx extension: "diffcore <version>" in the footer of every page of the book.

The chapters' numbers are those of the diffcore they executed with, so each page says which
version that was: ``diffcore.__version__`` of the package the build imports (the one the
notebooks' kernel imports too; ``make book`` installs the repository's own, editable).  The
line goes into sphinx-book-theme's ``extra_footer`` theme option, which the theme renders in the
footer of every page, after whatever ``html: extra_footer`` in ``_config.yml`` already holds, as

    <p class="diffcore-version">diffcore 0.1.0</p>
"""

from __future__ import annotations

import html
from typing import Any

VERSION_CLASS = "diffcore-version"


def version_line(version: str) -> str:
    """The footer's HTML for ``version``."""
    return f'<p class="{VERSION_CLASS}">diffcore {html.escape(version)}</p>'


def _add_version(app: Any, config: Any) -> None:
    import diffcore

    options = dict(config.html_theme_options or {})
    options["extra_footer"] = (options.get("extra_footer") or "") + version_line(diffcore.__version__)
    config.html_theme_options = options


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _add_version)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
