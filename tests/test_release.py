"""The release and deployment files agree with the package and with the book's configuration.

CITATION.cff names the version and licence that pyproject.toml declares; the publishing workflow
pushes the book to the branch the Colab links open (``diffcore_site_branch``), with the least
permissions; and the version footer extension puts "diffcore <version>" on every page of a real
Sphinx build with the book's theme.  ``make release-check`` adds what needs the network or a
build: actionlint, the CFF schema, ``python -m build`` and ``twine check``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import diffcore

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"
MAJOR_PIN = re.compile(r"^[\w.-]+/[\w.-]+@v\d+$")

_spec = importlib.util.spec_from_file_location("version_footer", ROOT / "book" / "_ext" / "version_footer.py")
version_footer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(version_footer)


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.fixture(scope="module")
def book_config() -> dict:
    return _yaml(ROOT / "_config.yml")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return _yaml(WORKFLOW)


def test_package_version_is_the_declared_one(project):
    assert diffcore.__version__ == project["version"]


def test_citation_names_the_package_version_and_licence(project, book_config):
    cff = _yaml(ROOT / "CITATION.cff")
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == project["version"], "CITATION.cff's version must follow pyproject.toml's"
    assert cff["license"] == project["license"]
    assert cff["repository-code"] == book_config["repository"]["url"]
    assert cff["title"].startswith("diffcore")
    assert cff["authors"] and all(a.get("name") or a.get("family-names") for a in cff["authors"])


def _steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def test_workflow_builds_on_push_to_main_and_publishes_to_the_site_branch(workflow, book_config):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == [book_config["repository"]["branch"]]
    build = "\n".join(step.get("run", "") for step in _steps(workflow, "build"))
    assert re.search(r"^make book CI=true$", build, re.M) and re.search(r"^make pdf CI=true$", build, re.M)
    uploaded = [s["with"]["path"] for s in _steps(workflow, "build") if s.get("uses", "").startswith("actions/upload")]
    assert uploaded == ["_build/html", "_build/pdf/book.pdf"]  # the site, then the printed book
    publish = workflow["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert publish["env"]["SITE_BRANCH"] == book_config["sphinx"]["config"]["diffcore_site_branch"]
    push = "\n".join(step.get("run", "") for step in publish["steps"])
    assert '--branch "$SITE_BRANCH"' in push and "--push" in push


def test_workflow_permissions_are_minimal(workflow):
    assert workflow["permissions"] == {}, "nothing granted to the workflow as a whole"
    granted = {name: job.get("permissions") for name, job in workflow["jobs"].items()}
    assert granted == {"build": {"contents": "read"}, "publish": {"contents": "write"}}
    checkout = [s for s in _steps(workflow, "build") if s.get("uses", "").startswith("actions/checkout")]
    assert checkout and all(s["with"]["persist-credentials"] is False for s in checkout)


def test_workflow_actions_are_pinned_to_a_major_version(workflow):
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and [u for u in uses if not MAJOR_PIN.match(u)] == []


def test_version_footer_on_every_page_of_a_sphinx_build(tmp_path):
    """A two-page book with the theme and the extension: both pages carry the version once."""
    src, out = tmp_path / "src", tmp_path / "html"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['version_footer']\nhtml_theme = 'sphinx_book_theme'\n"
        "html_theme_options = {'extra_footer': '<p>already here</p>'}\n",
        encoding="utf-8",
    )
    (src / "index.rst").write_text("Home\n====\n\n.. toctree::\n\n   chapter\n", encoding="utf-8")
    (src / "chapter.rst").write_text("Chapter\n=======\n\nText.\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    line = version_footer.version_line(diffcore.__version__)
    assert line == f'<p class="diffcore-version">diffcore {diffcore.__version__}</p>'
    for page in ("index.html", "chapter.html"):
        text = (out / page).read_text(encoding="utf-8")
        assert text.count(line) == 1, page
        assert "<p>already here</p>" in text, "the extension must keep an existing extra_footer"
