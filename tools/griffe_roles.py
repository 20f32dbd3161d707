"""Griffe extension for the API reference (mkdocs.yml): Sphinx roles become links.

bigstep's docstrings are numpydoc, with Sphinx cross-reference roles such as
``:func:`optimal_score``` or ``:class:`~bigstep.training.TrainResult```.  mkdocstrings
renders docstrings as Markdown, where a role would print as ":func:" plus code.  When
the package is loaded, this extension rewrites each role in every docstring:

- a name that resolves to an object the reference documents (a ``::: identifier`` of
  a page under docs/, or a documented member of such a class) becomes a Markdown
  cross-reference ``[`name`][canonical.path]`` (mkdocs-autorefs links it);
- a name that resolves to an object the reference does not show (a private helper, a
  submodule) becomes plain code;
- a name that does not resolve is a broken reference: a warning, which fails the
  strict build.

Names resolve as Sphinx resolves them: relative to the docstring's class, module and
parent packages, then to ``bigstep``; names re-exported lazily by ``bigstep`` (its
``_LAZY`` table) resolve to their subpackage.
"""

from __future__ import annotations

import ast
import pathlib
import re

import griffe

ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|obj|exc):`(~?)([\w.]+?)(\(\))?`")
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)
DOCS = pathlib.Path("docs")


def _lazy_table(pkg) -> dict[str, str]:
    """bigstep._LAZY (name -> subpackage), read from the package's source."""
    tree = ast.parse(pathlib.Path(pkg.filepath).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


class RolesToLinks(griffe.Extension):
    """Rewrite Sphinx roles in the docstrings of the loaded package (module docstring)."""

    def on_package(self, *, pkg, **kwargs) -> None:  # griffe >= 1.0 (2.x name)
        self._rewrite(pkg)

    def on_package_loaded(self, *, pkg, **kwargs) -> None:  # griffe 0.4x / 1.x name
        self._rewrite(pkg)

    # -------------------------------------------------------------------- resolution

    def _get(self, path: str):
        """The object at ``path`` (aliases followed), or None."""
        try:
            obj = self._collection[path]
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            head, _, tail = path.partition(".")
            rest = tail.partition(".")
            if head == self._pkg.name and rest[0] in self._lazy:  # bigstep.train_sgd -> bigstep.training.train_sgd
                return self._get(f"{head}.{self._lazy[rest[0]]}.{tail}")
            return None
        try:
            return obj.final_target if obj.is_alias else obj
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _resolve(self, role: str, name: str, where):
        scopes = []
        scope = where
        while scope is not None:
            if scope.is_class or scope.is_module:
                scopes.append(scope.path)
            scope = scope.parent
        scopes.append(self._pkg.name)
        for candidate in [f"{s}.{name}" for s in scopes] + [name]:
            obj = self._get(candidate)
            if obj is None:
                continue
            # `bigstep.optimal_score` is the function at run time (the package imports it
            # over the submodule's name); statically it is the module: take its member.
            if role != "mod" and obj.is_module and name.rpartition(".")[2] in obj.members:
                obj = self._get(f"{obj.path}.{name.rpartition('.')[2]}") or obj
            return obj
        return None

    # ------------------------------------------------------------------ documented set

    def _documented(self) -> set[str]:
        paths: set[str] = set()
        for page in sorted(DOCS.glob("**/*.md")):
            for ident in DIRECTIVE.findall(page.read_text()):
                obj = self._get(ident)
                if obj is None:
                    continue
                paths.add(obj.path)
                if obj.is_class:
                    for name, member in obj.members.items():
                        if not name.startswith("_") and not member.is_alias and member.docstring:
                            paths.add(member.path)
        return paths

    # ------------------------------------------------------------------------ rewrite

    def _rewrite(self, pkg) -> None:
        self._pkg = pkg
        self._collection = pkg.modules_collection
        self._lazy = _lazy_table(pkg)
        documented = self._documented()

        def visit(obj, seen):
            if obj.path in seen:
                return
            seen.add(obj.path)
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(lambda m: self._link(m, obj, documented), obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member, seen)

        visit(pkg, set())

    def _link(self, match, where, documented) -> str:
        role, tilde, name, parens = match.groups()
        text = f"`{(name.rpartition('.')[2] if tilde else name)}{parens or ''}`"
        obj = self._resolve(role, name, where)
        if obj is None:
            griffe.logger.warning(f"{where.relative_filepath}:{where.lineno}: unresolved reference :{role}:`{name}`")
            return text
        return f"[{text}][{obj.path}]" if obj.path in documented else text
