"""Sphinx extension: each chapter as a downloadable notebook that installs diffcore, and a Colab link to it.

With ``launch_buttons`` configured, sphinx-book-theme copies the executed notebook of every
MyST-notebook page to ``_sources/<page>.ipynb`` (the ".ipynb" download button) and adds a Colab
launch button that points at ``<page>.md`` on GitHub, which Colab cannot open.  Right after the
theme (``priority=502``) this extension

1. inserts a first code cell into the copied notebook that installs ``diffcore`` from the book's
   repository (``repository.url`` in ``_config.yml``) when it is not importable, tagged
   ``remove-cell`` — the HTML never shows it; in Colab it is the first thing that runs; and
2. points the Colab button at that notebook in the published site, i.e. at
   ``_sources/<page>.ipynb`` on the branch ``diffcore_site_branch`` (``gh-pages``: publish
   ``_build/html`` there, e.g. with ``ghp-import -n -p -f _build/html``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

INSTALL_MARKER = "# diffcore-install"


def install_source(repository_url: str) -> str:
    """The first cell of every downloaded chapter notebook."""
    return (
        f"{INSTALL_MARKER}: Colab, or any environment without diffcore, installs it first\n"
        "# (Colab already has torch, tqdm and matplotlib; elsewhere add them, or install\n"
        "# diffcore[torch,book] from a clone as the README says).\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("diffcore") is None:\n'
        f'    %pip install --quiet "diffcore @ git+{repository_url}"\n'
    )


def _add_install_cell(path: Path, repository_url: str) -> None:
    nb = nbformat.read(path, as_version=4)
    if nb.cells and nb.cells[0].cell_type == "code" and nb.cells[0].source.startswith(INSTALL_MARKER):
        return
    cell = nbformat.v4.new_code_cell(install_source(repository_url), metadata={"tags": ["remove-cell"]})
    cell.pop("id", None)  # the notebook may predate cell ids (nbformat 4.4)
    if nb.nbformat_minor >= 5:
        cell["id"] = "diffcore-install"
    nb.cells.insert(0, cell)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def _launch_group(context: dict[str, Any]) -> dict[str, Any] | None:
    for button in context.get("header_buttons", []):
        if button.get("label") == "launch-buttons":
            return button
    return None


def _notebook_links(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    if not context.get("ipynb_source"):
        return
    options = app.config.html_theme_options
    repository_url = options.get("repository_url", "").rstrip("/")
    _add_install_cell(Path(app.outdir) / "_sources" / context["ipynb_source"], repository_url)
    group = _launch_group(context)
    for button in group["buttons"] if group else []:
        if button.get("text") == "Colab":
            prefix = button["url"].split("/blob/")[0]
            button["url"] = f"{prefix}/blob/{app.config.diffcore_site_branch}/_sources/{context['ipynb_source']}"


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("diffcore_site_branch", "gh-pages", "html")
    app.connect("html-page-context", _notebook_links, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
