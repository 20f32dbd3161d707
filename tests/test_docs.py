"""The repository documents itself: nothing in it points outside it, the docs' relative
links resolve, and the API reference (docs/api.md) lists every public name.

Skipped outside a source checkout (installed tests have no docs/ and no git metadata).
"""

from __future__ import annotations

import importlib
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Names of files and folders that exist only outside the repository (the team's notes,
# sibling checkouts).  Split so that this file does not match itself.
OUTSIDE = [
    ("a design document outside the repository", re.compile(r"\bDESIGN" r"\b")),
    ("a parent folder's shared files", re.compile(re.escape("../" "shared"))),
    ("a shared folder outside the repository", re.compile(r"(?<![\w.-])shared" r"/")),
    ("a layout sketch outside the repository", re.compile("LAYOUT" "-SKETCH")),
    ("a style guide outside the repository", re.compile(re.escape("STYLE" ".md"))),
    ("a seeds folder outside the repository", re.compile(r"(?<![\w.-])seeds" r"/")),
]

# [text](target) and ![alt](target); reference definitions "[id]: target"
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


def outside_references(path: pathlib.Path, text: str) -> list[str]:
    """The places in ``text`` (the content of ``path``) that name something outside the
    repository, as "path:line: what (the match)"."""
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in OUTSIDE:
            m = pattern.search(line)
            if m:
                problems.append(f"{path}:{lineno}: {what} ({m.group(0)!r})")
    return problems


def broken_links(md: pathlib.Path, root: pathlib.Path) -> list[str]:
    """Relative links of the Markdown file ``md`` that do not resolve to a file or folder
    inside ``root`` (web links and in-page anchors are not checked here; mkdocs' strict
    build checks anchors)."""
    text = CODE_SPAN.sub("", FENCE.sub("", md.read_text(encoding="utf-8")))
    problems = []
    for target in INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, ... or an anchor on this page
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (md.parent / file_part).resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{md}: link {target!r} leaves the repository")
        elif not resolved.exists():
            problems.append(f"{md}: link {target!r} does not resolve ({resolved.relative_to(root.resolve())} is missing)")
    return problems


def _tracked_files() -> list[pathlib.Path]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (installed tests)")
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"git ls-files failed: {exc}")
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_no_file_points_outside_the_repository():
    problems = []
    this = pathlib.Path(__file__).resolve()
    for path in _tracked_files():
        if path.resolve() == this or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images)
        problems += outside_references(path.relative_to(ROOT), data.decode("utf-8", errors="replace"))
    assert not problems, "files point outside the repository:\n" + "\n".join(problems)


def test_relative_links_in_docs_resolve():
    if not DOCS.is_dir():
        pytest.skip("docs/ is not next to tests/ (installed tests)")
    pages = sorted(DOCS.glob("**/*.md")) + [ROOT / "README.md"]
    problems = [p for md in pages if md.exists() for p in broken_links(md, ROOT)]
    assert not problems, "\n".join(problems)


def test_the_checkers_find_what_they_look_for(tmp_path):
    """The two checkers above report a fake file's outside references and broken links
    (and accept what is allowed), so their passing means something."""
    bad = "\n".join([
        "see " + "DESIGN" + ".md section 3",
        "as " + "DESIGN" + " 2b says",
        "cp .." + "/shared/" + "notes.txt",
        "/work/" + "shared/" + "x",
        "LAYOUT" + "-SKETCH" + ".md",
        "STYLE" + ".md",
        "data in " + "seeds/" + "run1",
    ])
    found = outside_references(pathlib.Path("fake.py"), bad)
    assert {int(f.split(":")[1]) for f in found} == set(range(1, 8)), found  # every line flagged
    fine = "docs/design.md section 3; shared=dict(...); the shared_digest; reseeds/ no; a DESIGNER"
    assert outside_references(pathlib.Path("fake.py"), fine) == []

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# There\n")
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    page = tmp_path / "docs" / "page.md"
    page.write_text("\n".join([
        "[ok](there.md) [ok too](there.md#there) ![image](../img.png) [web](https://example.org)",
        "[anchor](#here) `[in code](missing1.md)`",
        "```", "[in a fence](missing2.md)", "```",
        "[gone](missing.md) [up](../../outside.md)",
        "[ref]: nowhere.md",
    ]))
    problems = broken_links(page, tmp_path)
    assert len(problems) == 3, problems
    assert any("missing.md" in p for p in problems) and any("leaves the repository" in p for p in problems)
    assert any("nowhere.md" in p for p in problems)


# --------------------------------------------------------------------- API reference

PUBLIC_MODULES = ["bigstep", "bigstep.fgt", "bigstep.rf", "bigstep.theory", "bigstep.sweeps", "bigstep.training",
                  "bigstep.nets", "bigstep.scores", "bigstep.reproduce"]
OPTIONAL_MODULES = ["bigstep.local"]  # documented once they exist
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)


def _resolve(path: str):
    """The object a ``::: path`` directive names, imported as Python would import it
    (a module, or an attribute of the longest importable prefix)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def test_api_reference_lists_every_public_name():
    api = DOCS / "api.md"
    if not api.exists():
        pytest.skip("docs/ is not next to tests/ (installed tests)")
    directives = DIRECTIVE.findall(api.read_text(encoding="utf-8"))
    documented_ids = {id(_resolve(p)) for p in directives}
    documented_paths = set(directives)
    modules = list(PUBLIC_MODULES)
    for name in OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        modules.append(name)
    missing = []
    for mod_name in modules:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:  # an optional dependency (scipy, pandas, torch) is missing
            pytest.skip(f"{mod_name} does not import here: {exc}")
        for name in getattr(mod, "__all__", []):
            if name.startswith("__"):
                continue  # __version__: stated in the text
            obj = getattr(mod, name)
            if isinstance(obj, type(pathlib)):
                continue  # a subpackage: it has its own section
            named = f"{mod_name}.{name}" in documented_paths
            same = id(obj) in documented_ids and (callable(obj) or isinstance(obj, type))
            if not (named or same):
                missing.append(f"{mod_name}.{name}")
    assert not missing, "public names missing from docs/api.md: " + ", ".join(missing)


def test_design_stream_map_lists_every_stream():
    """docs/design.md section 3 maps every Philox stream of bigstep._streams, and no other."""
    design = DOCS / "design.md"
    if not design.exists():
        pytest.skip("docs/ is not next to tests/ (installed tests)")
    from bigstep import _streams

    rows = re.findall(r"^\|\s*([\d,\s]+?)\s*\|", design.read_text(encoding="utf-8"), flags=re.M)
    listed = [int(v) for row in rows for v in row.split(",")]
    assert sorted(listed) == sorted(_streams.ALL.values()), (listed, _streams.ALL)
