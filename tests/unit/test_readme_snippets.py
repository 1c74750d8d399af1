"""Every Python snippet of the README files stands on its own: it compiles, its imports
import, and every name it uses is imported, defined in it, or a builtin. (Running them
needs a system; the client's behaviour is tested in tests/e2e/test_portal_client_round_trip.py.)"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [
    ROOT / "README.md",
    *sorted(ROOT.glob("clients/*/README.md")),
    *sorted(ROOT.glob("services/*/README.md")),
]
FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    found = []
    for readme in READMES:
        for i, match in enumerate(FENCE.finditer(readme.read_text())):
            code = textwrap.dedent(match["code"])
            found.append((f"{readme.relative_to(ROOT)}#{i + 1}", code))
    return found


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the snippet binds anywhere: imports, assignments, parameters, targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def test_the_readmes_have_snippets() -> None:
    assert {name.split("#")[0] for name, _ in snippets()} >= {"README.md", "clients/python/README.md"}


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[name for name, _ in snippets()])
def test_a_snippet_compiles_imports_and_uses_only_names_it_has(where: str, code: str) -> None:
    tree = ast.parse(code, filename=where)
    compile(tree, where, "exec")
    imports = ast.Module(
        body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[]
    )
    exec(compile(imports, where, "exec"), {})  # noqa: S102 - our own README's import lines
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    unknown = used - bound_names(tree) - set(dir(builtins))
    assert not unknown, f"{where} uses names it neither imports nor defines: {sorted(unknown)}"
