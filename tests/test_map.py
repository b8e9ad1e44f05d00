"""The literature map (book/map.md) covers the seed list, cites every paper and links to what exists.

Parses ``../shared/seed-papers.md`` (the seed list, one ``- title`` per paper under ``##`` groups) and
the chapter's ``### title`` entries, and checks: the two title sets are equal after normalisation; each
entry has a ``{cite}`` whose keys are in ``book/references.bib``; each entry has at least one link
target and every target resolves (``{doc}`` to a ``book/*.md``, ``{ref}`` to a label ``(name)=`` of a
chapter, a backticked ``diffcore.x.y`` to an importable attribute); and the figure's ``PAPERS`` table
agrees with the entries' view and component lines.
"""

from __future__ import annotations

import ast
import importlib
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTER = BOOK / "map.md"
SEEDS = ROOT.parent / "shared" / "seed-papers.md"


def normalise(title: str) -> str:
    """Lower case, ASCII letters and digits only: 'Itô' == 'Ito', 'ODE-SDE' == 'ode sde'."""
    title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", title.lower()))


def seed_titles(text: str) -> list[str]:
    """Titles of the seed list: '- title' lines, a parenthesised remark at the end dropped."""
    titles = []
    for line in text.splitlines():
        if line.startswith("- "):
            titles.append(re.sub(r"\s*\([^()]*\)\s*$", "", line[2:]).strip())
    return titles


def entries(text: str) -> dict[str, str]:
    """``### title`` -> the entry's text up to the next heading."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    out = {}
    for head, body in zip(parts[1::2], parts[2::2]):
        if head.startswith("### "):
            out[head[4:].strip()] = body
    return out


def labels() -> set[str]:
    return {m for f in BOOK.glob("*.md") for m in re.findall(r"^\(([\w-]+)\)=\s*$", f.read_text(), flags=re.M)}


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (BOOK / "references.bib").read_text(), flags=re.M))


def resolve_diffcore(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def targets(body: str) -> list[tuple[str, str]]:
    """The link targets of an entry's metadata line (its first line)."""
    line = body.strip().splitlines()[0]
    found = [("doc", m) for m in re.findall(r"\{doc\}`(?:[^`<]*<)?([\w/-]+)>?`", line)]
    found += [("ref", m) for m in re.findall(r"\{ref\}`(?:[^`<]*<)?([\w-]+)>?`", line)]
    found += [("diffcore", m) for m in re.findall(r"(?<![}\w])`(diffcore(?:\.\w+)+)`", line)]
    return found


def unresolved(body: str, known_labels: set[str]) -> list[str]:
    bad = []
    for kind, name in targets(body):
        ok = {
            "doc": lambda n: (BOOK / f"{n}.md").exists(),
            "ref": lambda n: n in known_labels,
            "diffcore": resolve_diffcore,
        }[kind](name)
        if not ok:
            bad.append(f"{kind}:{name}")
    return bad


@pytest.fixture(scope="module")
def chapter_entries() -> dict[str, str]:
    return entries(CHAPTER.read_text())


def test_normalise_and_parsers():
    assert normalise("The Superposition … Itô Density") == normalise("the superposition ... Ito density")
    assert seed_titles("## g\n- A Title (a remark)\n- B: c\ntext") == ["A Title", "B: c"]
    assert list(entries("## G\n### One\nx\n### Two\ny\n## H\nz")) == ["One", "Two"]
    body = "**In the book:** {doc}`nochapter`, {ref}`refinements-cheap`, `diffcore.nothing_here`, `diffcore.VPSDE`\n"
    assert unresolved(body, labels()) == ["doc:nochapter", "diffcore:diffcore.nothing_here"]


@pytest.mark.skipif(not SEEDS.exists(), reason="the seed list lives in the steering repository's shared/")
def test_every_seed_has_one_entry(chapter_entries):
    seeds = seed_titles(SEEDS.read_text())
    assert len(seeds) == 47
    missing = {normalise(s) for s in seeds} - {normalise(e) for e in chapter_entries}
    extra = {normalise(e) for e in chapter_entries} - {normalise(s) for s in seeds}
    assert not missing and not extra, (missing, extra)
    assert len(chapter_entries) == len(seeds)


def test_every_entry_cites_a_known_key(chapter_entries):
    keys = bib_keys()
    for title, body in chapter_entries.items():
        cited = [k.strip() for group in re.findall(r"\{cite:?\w*\}`([^`]+)`", body) for k in group.split(",")]
        assert cited, f"{title!r} cites nothing"
        assert set(cited) <= keys, (title, set(cited) - keys)


def test_every_entry_links_somewhere_that_exists(chapter_entries):
    known = labels()
    for title, body in chapter_entries.items():
        assert targets(body), f"{title!r} has no link target"
        assert not unresolved(body, known), (title, unresolved(body, known))


def test_figure_table_matches_entries(chapter_entries):
    """The PAPERS table of the figure has one row per entry, in order, with the entry's view and component."""
    source = CHAPTER.read_text()
    tree = ast.parse(re.search(r"^PAPERS = \[.*?^\]", source, flags=re.M | re.S).group(0))
    table = ast.literal_eval(tree.body[0].value)
    assert len(table) == len(chapter_entries)
    for (label, view, component), (title, body) in zip(table, chapter_entries.items()):
        meta = body.strip().splitlines()[0]
        assert re.search(rf"\*\*View:\*\* {re.escape(view)}\b", meta), (label, title, meta)
        assert f"**Component:** {component} " in meta, (label, title, meta)


def test_the_lcm_lora_seed_states_the_mismatch(chapter_entries):
    body = next(b for t, b in chapter_entries.items() if "LCM-LORA" in t)
    assert "does not match the title" in body and "neutron transport" in body
